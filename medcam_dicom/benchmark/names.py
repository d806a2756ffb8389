"""The benchmark's methods, classifier groups and splits by name (and the datasets, from
:mod:`medcam_dicom.data.names`).

Kept free of heavy imports: the command line builds its ``--methods`` / ``--classifiers`` choices from
these without loading torch.
"""

from medcam_dicom.data.names import DATASETS, DATASETS_2D, DATASETS_3D, VARIANTS, ZOO_DATASETS, ZOO_ONLY_DATASETS

__all__ = ["DATASETS", "DATASETS_2D", "DATASETS_3D", "VARIANTS", "ZOO_DATASETS", "ZOO_ONLY_DATASETS",
           "METHODS", "DEFAULT_METHODS", "RANKING_METHODS",
           "MEDCAM_METHODS", "ORACLE_METHODS", "CLASSIFIER_GROUPS", "SPLITS", "ZOO_ARCHS"]

METHODS = ("medcam", "gradcam", "gradcam++", "occlusion", "rise", "amortized", "amortized+refine", "lesion")
DEFAULT_METHODS = ("medcam", "gradcam", "gradcam++", "occlusion", "rise")
#: the methods that rank voxels and are thresholded (to Med-CAM's area, and for minimality)
RANKING_METHODS = ("gradcam", "gradcam++", "occlusion", "rise")
#: the Med-CAM methods: their own masks are measured, and one of them sets the area the ranking methods are cut to
MEDCAM_METHODS = ("medcam", "amortized", "amortized+refine")
#: the ground truth as a mask, on the lesion decisions (not a method: how much of the decision a mask entirely
#: on the finding holds - on classifiers that also read the context, less than the full image)
ORACLE_METHODS = ("lesion",)

#: which classifiers a benchmark run explains: ``demo`` = the shipped demo classifier of each dataset
#: (by ``--arch``); the others are groups of the classifier zoo (see ``medcam_dicom.benchmark.zoo``)
CLASSIFIER_GROUPS = ("demo", "plain", "masking", "all")
#: the classifier zoo's split: defaults are chosen on ``tuning``, everything else is ``held-out``
SPLITS = ("tuning", "held-out", "all")
#: the classifier zoo's architectures (``medcam_dicom.models.architectures`` builds them)
ZOO_ARCHS = ("cnn", "resnet18-small", "densenet121-small", "vit-convstem-small")
