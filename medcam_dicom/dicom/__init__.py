"""DICOM in, DICOM out: read files and series, preprocess for a model (with the inverse for masks), and
write the evidence as SEG, Secondary Capture and SR.

``explain_series`` explains one series (what the network service calls); ``explain_paths`` explains every
series under files and folders (what ``medcam-dicom explain`` calls).
"""

from medcam_dicom.dicom.errors import DicomInputError, NotAnImageError
from medcam_dicom.dicom.pipeline import explain_paths, explain_series
from medcam_dicom.dicom.results import EvidenceMask, SeriesResult
from medcam_dicom.dicom.settings import OutputSettings

__all__ = ["DicomInputError", "EvidenceMask", "NotAnImageError", "OutputSettings", "SeriesResult", "explain_paths",
           "explain_series"]
