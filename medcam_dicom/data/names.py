"""The generated datasets and their variants, by name.

Kept free of heavy imports: the command line builds its ``--datasets`` / ``--variant`` choices from these
without loading torch.
"""

DATASETS_2D = ("ct", "mr", "fundus", "histology")
DATASETS_3D = ("ct3d",)
DATASETS = DATASETS_2D + DATASETS_3D
#: generated for the classifier zoo only (no demo classifier): the tuning side's datasets for every
#: architecture, so defaults can be checked on DenseNets and transformers without touching held-out ones
ZOO_ONLY_DATASETS = ("abdomen",)
ZOO_DATASETS = DATASETS_2D + ZOO_ONLY_DATASETS
#: every dataset :func:`medcam_dicom.data.synthetic.generate` makes, in the order that seeds them (new ones
#: are appended, so the others' images stay the same)
GENERATED_DATASETS = DATASETS + ZOO_ONLY_DATASETS

VARIANTS = ("standard", "heldout")
