"""Checks of the patient geometry a source image declares, before anything is computed from it.

Invalid geometry is not copied into our results: an image whose position, orientation, pixel spacing or
slice thickness is unusable is treated as an image without patient geometry (its SEG gets the image's
own pixel grid, see ``write_seg.py``), the invalid attributes are dropped, and the result says what was
wrong, naming the attribute and its tag.
"""

from __future__ import annotations

import math

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

#: Attribute -> (tag, number of values, what a valid value is).
GEOMETRY_ATTRIBUTES = {
    "ImagePositionPatient": ("(0020,0032)", 3, "finite numbers"),
    "ImageOrientationPatient": ("(0020,0037)", 6, "two orthogonal unit vectors"),
    "PixelSpacing": ("(0028,0030)", 2, "positive numbers"),
    "ImagerPixelSpacing": ("(0018,1164)", 2, "positive numbers"),
    "SliceThickness": ("(0018,0050)", 1, "a positive number"),
    "SpacingBetweenSlices": ("(0018,0088)", 1, "a positive number"),
}
#: Removing either of these leaves the image without a patient coordinate system: both go together.
POSITION_AND_ORIENTATION = ("ImagePositionPatient", "ImageOrientationPatient")
#: A patient coordinate system needs these too (highdicom builds the SEG's Pixel Measures from them).
PATIENT_GRID = (*POSITION_AND_ORIENTATION, "PixelSpacing", "SliceThickness")


def _numbers(dataset: Dataset, keyword: str) -> list[float] | None:
    """The attribute's values as floats; ``None`` when absent or empty; raises ``ValueError`` when a value
    is not a number."""
    try:
        value = dataset.get(keyword)
    except (TypeError, ValueError) as error:  # pydicom converts raw values on access
        raise ValueError(f"is not a number ({error})") from error
    if value is None or value == "":
        return None
    values = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError) as error:
        raise ValueError(f"is not a number ({error})") from error


def _problem(keyword: str, values: list[float]) -> str | None:
    tag, count, valid = GEOMETRY_ATTRIBUTES[keyword]
    if len(values) != count:
        return f"{keyword} {tag} has {len(values)} value(s), expected {count}"
    if not all(math.isfinite(v) for v in values):
        return f"{keyword} {tag} is not {valid}: {values}"
    if keyword == "ImageOrientationPatient":
        row, column = values[:3], values[3:]
        norms = [math.sqrt(sum(v * v for v in vector)) for vector in (row, column)]
        dot = sum(a * b for a, b in zip(row, column))
        if any(abs(norm - 1.0) > 1e-2 for norm in norms) or abs(dot) > 1e-2:
            return f"{keyword} {tag} is not {valid}: {values}"
    elif keyword != "ImagePositionPatient" and any(v <= 0 for v in values):
        return f"{keyword} {tag} is not {valid}: {values}"
    return None


def geometry_problems(dataset: Dataset) -> dict[str, str]:
    """The invalid geometry attributes of ``dataset`` (top level), each with a message naming its tag."""
    problems = {}
    for keyword in GEOMETRY_ATTRIBUTES:
        try:
            values = _numbers(dataset, keyword)
        except ValueError as error:
            problems[keyword] = f"{keyword} {GEOMETRY_ATTRIBUTES[keyword][0]} {error}"
            continue
        if values is not None and (problem := _problem(keyword, values)):
            problems[keyword] = problem
    return problems


#: functional group macros (enhanced multi-frame images) holding the geometry attributes
GEOMETRY_MACROS = ("PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence")


def _functional_group_problems(dataset: Dataset) -> list[str]:
    """The invalid geometry attributes inside the shared and per-frame functional groups of an enhanced
    multi-frame image, each with the frame (or "shared") and the tag."""
    problems = []
    groups = [("shared", item) for item in dataset.get("SharedFunctionalGroupsSequence") or []]
    groups += [(f"frame {number}", item)
               for number, item in enumerate(dataset.get("PerFrameFunctionalGroupsSequence") or [], start=1)]
    for where, group in groups:
        for macro in GEOMETRY_MACROS:
            for item in group.get(macro) or []:
                problems += [f"{problem} ({where}, {macro})" for problem in geometry_problems(item).values()]
    return problems


def drop_invalid_geometry(dataset: Dataset) -> list[str]:
    """Remove invalid geometry attributes from ``dataset`` (in memory; position and orientation together)
    and return one note per problem for the result. In an enhanced multi-frame image, one invalid plane
    position, orientation or pixel measure in any functional group removes the plane position and
    orientation of every frame and the Frame of Reference: the image gets its own grid."""
    notes = []
    if problems := _functional_group_problems(dataset):
        for group in [*(dataset.get("SharedFunctionalGroupsSequence") or []),
                      *(dataset.get("PerFrameFunctionalGroupsSequence") or [])]:
            for macro in GEOMETRY_MACROS:
                if macro in group:
                    del group[macro]
        if "FrameOfReferenceUID" in dataset:
            del dataset["FrameOfReferenceUID"]
        shown = problems[:3] + ([f"and {len(problems) - 3} more"] if len(problems) > 3 else [])
        notes.append(f"{'; '.join(shown)}: treated as an image without patient geometry (the SEG gets the "
                     "image's own pixel grid)")
    problems = geometry_problems(dataset)
    if not problems:
        return notes
    grid_lost = bool(set(problems) & set(PATIENT_GRID))
    for keyword in set(problems) | set(POSITION_AND_ORIENTATION if grid_lost else ()):
        if keyword in dataset:
            del dataset[keyword]
    consequence = ("treated as an image without patient geometry (the SEG gets the image's own pixel grid)"
                   if grid_lost else "the attribute is not used")
    return notes + [f"{problem}: {consequence}" for problem in problems.values()]
