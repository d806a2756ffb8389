"""Data the project generates itself: synthetic lesions on real anatomy backgrounds, with ground truth.

Shared by the benchmark (test sets, classifier training), the demo, the DICOM examples and the MONAI
bundle; it depends on nothing else in the package.
"""
