"""The generated datasets and their variants, by name.

Kept free of heavy imports: the command line builds its ``--datasets`` / ``--variant`` choices from these
without loading torch.
"""

DATASETS_2D = ("ct", "mr", "fundus", "histology")
DATASETS_3D = ("ct3d",)
DATASETS = DATASETS_2D + DATASETS_3D

VARIANTS = ("standard", "heldout")
