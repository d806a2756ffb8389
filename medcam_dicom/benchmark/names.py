"""The benchmark's datasets, dataset variants and methods, by name.

Kept free of heavy imports: the command line builds its ``--datasets`` / ``--variant`` / ``--methods``
choices from these without loading torch.
"""

DATASETS_2D = ("ct", "mr", "fundus", "histology")
DATASETS_3D = ("ct3d",)
DATASETS = DATASETS_2D + DATASETS_3D

VARIANTS = ("standard", "heldout")

METHODS = ("medcam", "gradcam", "gradcam++", "occlusion", "rise", "amortized", "amortized+refine")
DEFAULT_METHODS = ("medcam", "gradcam", "gradcam++", "occlusion", "rise")
#: the methods that rank voxels and are thresholded (to Med-CAM's area, and for minimality)
RANKING_METHODS = ("gradcam", "gradcam++", "occlusion", "rise")

#: which classifiers a benchmark run explains: ``demo`` = the shipped demo classifier of each dataset
#: (by ``--arch``); the others are groups of the classifier zoo (see ``medcam_dicom.benchmark.zoo``)
CLASSIFIER_GROUPS = ("demo", "plain", "masking", "all")
#: the classifier zoo's split: defaults are chosen on ``tuning``, everything else is ``held-out``
SPLITS = ("tuning", "held-out", "all")
