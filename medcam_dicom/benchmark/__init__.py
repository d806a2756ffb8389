"""The ground-truth benchmark: synthetic lesions on real anatomy, metrics, tables and galleries."""
