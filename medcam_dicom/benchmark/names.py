"""The benchmark's datasets, dataset variants and methods, by name.

Kept free of heavy imports: the command line builds its ``--datasets`` / ``--variant`` / ``--methods``
choices from these without loading torch.
"""

DATASETS_2D = ("ct", "mr", "fundus", "histology")
DATASETS_3D = ("ct3d",)
DATASETS = DATASETS_2D + DATASETS_3D

VARIANTS = ("standard", "heldout")

METHODS = ("medcam", "gradcam", "occlusion", "amortized", "amortized+refine")
DEFAULT_METHODS = ("medcam", "gradcam", "occlusion")
