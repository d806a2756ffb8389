"""One series in, SEG / SC / SR out: the function the command line and the network service call.

``explain_series`` never raises for a problem with the input: it returns a :class:`SeriesResult` whose
``status`` is ``failed`` (or ``skipped``) with the reason naming the file and the problem, and writes
nothing for that series. Results of a series are written to a staging folder and renamed into place
only when complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from pydicom.dataset import Dataset

from medcam_dicom.dicom.errors import DicomInputError
from medcam_dicom.dicom.headers import complete_frame_of_reference
from medcam_dicom.dicom.preprocess import Preprocessor
from medcam_dicom.dicom.read import Instance, scan_inputs
from medcam_dicom.dicom.results import EvidenceMask, Producer, SeriesResult
from medcam_dicom.dicom.series import ImageSeries, assemble_series, mixed_size_error, split_by_size
from medcam_dicom.dicom.settings import OutputSettings
from medcam_dicom.dicom.sop_classes import known_to_highdicom, restore_references
from medcam_dicom.dicom.write_pm import build_parametric_maps
from medcam_dicom.dicom.write_sc import build_secondary_captures
from medcam_dicom.dicom.write_seg import build_segmentations
from medcam_dicom.dicom.write_sr import build_report
from medcam_dicom.durable import fsync_directory
from medcam_dicom.models.loading import LoadedModel

log = logging.getLogger(__name__)

#: ``progress(done, total, label)`` after each explained decision.
ProgressCallback = Callable[[int, int, str], None]


def select_model(series: ImageSeries, models: Sequence[LoadedModel]) -> tuple[LoadedModel | None, str]:
    """The first model whose rules match the series, or ``None`` with the reasons none did."""
    reasons = []
    for model in models:
        mismatch = model.description.applies_to.mismatch(series.reference.dataset, series.colour)
        if mismatch is None:
            return model, ""
        reasons.append(f"{model.description.name}: {mismatch}")
    return None, "no model applies (" + "; ".join(reasons) + ")"


def choose_targets(model: LoadedModel, probabilities: torch.Tensor) -> list[int]:
    """The classes to explain for one image from its class probabilities ``(K,)``."""
    spec = model.description.explain
    if spec.classes:
        return [model.class_index(name) for name in spec.classes]
    if spec.min_probability is not None:
        return [k for k in range(len(model.class_names)) if float(probabilities[k]) >= spec.min_probability]
    return [int(probabilities.argmax())]


def explain_frames(
    series: ImageSeries,
    pixels: np.ndarray,
    model: LoadedModel,
    progress: ProgressCallback | None = None,
    keep_soft: bool = False,
) -> list[EvidenceMask]:
    """Explain the series with ``model``: every frame on its own (2D models) or the volume (3D models).
    Masks come back on the source grid (with the soft masks too when ``keep_soft``)."""
    description = model.description
    preprocessor = Preprocessor(description.input)
    if description.mode == "3d":
        if series.not_a_volume is not None:
            raise series.not_a_volume
        if len(series.frames) < 2:
            raise DicomInputError(
                series.reference.path, f"model {description.name} explains volumes, but the series has a single frame"
            )
        spacing = series.spacing if series.spacing and len(series.spacing) == 3 else None
        prepared = [preprocessor.prepare(pixels, spacing)]
        index_sets = [tuple(range(len(series.frames)))]
    else:
        spacing = (series.spacing[1:] if series.is_volume else series.spacing) if series.spacing else None
        prepared = [preprocessor.prepare(frame, spacing) for frame in pixels]
        index_sets = [(i,) for i in range(len(series.frames))]
    with torch.no_grad():
        batch = torch.stack([item.tensor for item in prepared]).to(model.device)
        probabilities = torch.cat([torch.softmax(model.logits(chunk), dim=1) for chunk in batch.split(16)]).cpu()
    work = [(i, target) for i in range(len(prepared)) for target in choose_targets(model, probabilities[i])]
    explainer = model.explainer()
    evidence = []
    for done, (i, target) in enumerate(work, start=1):
        explanation = explainer.explain(prepared[i].tensor, target)
        mask = preprocessor.mask_to_source(explanation.mask, prepared[i])
        soft = preprocessor.mask_to_source(explanation.soft_mask, prepared[i], soft=True) if keep_soft else None
        if description.mode == "2d":
            mask, soft = mask[None], None if soft is None else soft[None]
        evidence.append(EvidenceMask(target, model.class_names[target], index_sets[i], mask, explanation, soft))
        if progress is not None:
            progress(done, len(work), series.describe())
    return evidence


def _write_dataset(dataset: Dataset, path: Path) -> None:
    with open(path, "wb") as handle:
        dataset.save_as(handle, enforce_file_format=True)
        handle.flush()
        os.fsync(handle.fileno())


def _publish(staging: Path, final: Path) -> None:
    """Move a complete staging folder into place, replacing an older result of the same series."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        retired = final.with_name(f".retired-{final.name}-{os.getpid()}")
        os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, final)
    fsync_directory(final.parent)


#: one size group of a series, explained: its frames, their pixels and the evidence found on them
ExplainedPart = tuple[ImageSeries, np.ndarray, list[EvidenceMask]]


def write_results(
    parts: Sequence[ExplainedPart],
    model: LoadedModel,
    settings: OutputSettings,
    out_dir: str | Path,
    result: SeriesResult,
) -> None:
    """Build SEG, SC and SR for each part of a series (one part, unless a 2D model explained a series
    that mixes image sizes: then each size gets its own SEG, SC and SR series) and write them, with
    ``result.json``, to ``out_dir/<StudyInstanceUID>/<SeriesInstanceUID>/``, all or nothing. Only the
    evidence of findings is drawn (SEG, SC, Parametric Map when asked for; see ``OutputSettings``), every
    decision is in the SR."""
    description = model.description
    producer = Producer(description.name, description.version, model.fingerprint)
    files: list[tuple[str, Dataset]] = []
    segments = captures = maps_written = 0
    sources = [instance.dataset for series, _, _ in parts for instance in series.instances]
    with known_to_highdicom(sources) as original_classes:  # retired and private SOP classes, see sop_classes
        for number, (series, pixels, evidence) in enumerate(parts, start=1):
            drawn = [e for e in evidence if settings.overlays == "all" or description.is_finding(e.class_name)]
            segmentations, groups, notes = build_segmentations(series, drawn, model.class_names, producer, settings)
            result.notes += notes
            pictures = build_secondary_captures(series, pixels, drawn, producer, settings)
            maps = build_parametric_maps(series, drawn, groups, producer, settings) if settings.parametric_map else []
            report = build_report(series, evidence, segmentations, groups, producer, settings)
            files += [(f"SEG-{segments + i}.dcm", seg) for i, seg in enumerate(segmentations, start=1)]
            files += [(f"SC-{captures + i:04d}.dcm", image) for i, image in enumerate(pictures, start=1)]
            files += [(f"PM-{maps_written + i}.dcm", item) for i, item in enumerate(maps, start=1)]
            files.append(("SR.dcm" if len(parts) == 1 else f"SR-{number}.dcm", report))
            segments, captures = segments + len(segmentations), captures + len(pictures)
            maps_written += len(maps)
    restore_references([dataset for _, dataset in files], original_classes)
    for sop_class in sorted(set(original_classes.values())):
        result.notes.append(f"SOP Class UID (0008,0016) {sop_class} is retired or private: the results reference "
                            "the source by it, their patient and study attributes follow the current class")
    first = parts[0][0]
    final = Path(out_dir) / str(first.reference.dataset.StudyInstanceUID) / first.series_uid
    staging = final.with_name(f".staging-{first.series_uid}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for filename, dataset in files:
            _write_dataset(dataset, staging / filename)
        result.outputs = [final / filename for filename, _ in files]
        (staging / "result.json").write_text(json.dumps(result.summary(), indent=2))
        _publish(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        result.outputs = []
        raise


def explain_series(
    instances: Sequence[Instance],
    out_dir: str | Path,
    models: Sequence[LoadedModel],
    settings: OutputSettings | None = None,
    progress: ProgressCallback | None = None,
) -> SeriesResult:
    """Explain one series (its instances, in any order) and write its results; see the module docstring."""
    settings = settings or OutputSettings()
    series_uid = str(instances[0].dataset.SeriesInstanceUID) if instances else "?"
    result = SeriesResult(series_uid=series_uid, label=str(instances[0].path) if instances else "?", status="failed")
    try:
        for instance in instances:  # before anything is built from the geometry (highdicom needs the UID)
            instance.notes += complete_frame_of_reference(instance.dataset, settings.uid)
        parts = [assemble_series(group) for group in split_by_size(list(instances))]
        series = parts[0]
        result.label = series.describe()
        result.notes += [f"{i.path.name}: {note}" for part in parts for i in part.instances for note in i.notes]
        result.study_uid = str(series.reference.dataset.StudyInstanceUID)
        model, why = select_model(series, models)
        if model is None:
            result.status, result.reason = "skipped", why
            log.info("series %s skipped: %s", series_uid, why)
            return result
        result.model = model.description.name
        if len(parts) > 1:
            if model.description.mode == "3d":  # a volume has one size; a 2D model explains image by image
                raise mixed_size_error(parts[1].reference, series.reference)
            result.notes.append(
                f"series mixes image sizes: each size explained and written as its own SEG, SC and SR "
                f"({'; '.join(f'{p.shape[0]} x {p.shape[1]}: {len(p.frames)} frame(s)' for p in parts)})"
            )
        if model.description.mode == "2d":
            result.notes += [f"{p.not_a_volume}; explained image by image" for p in parts if p.not_a_volume]
        explained = []
        for part in parts:
            pixels = part.pixels(model.description.max_pixels)
            evidence = explain_frames(part, pixels, model, progress, keep_soft=settings.parametric_map)
            explained.append((part, pixels, evidence))
            result.evidence += evidence
        write_results(explained, model, settings, out_dir, result)
        result.status = "explained"
    except DicomInputError as error:
        result.reason = str(error)
        log.warning("series %s failed: %s", series_uid, error)
    except ValueError as error:  # shapes/NaNs the explainer refuses, highdicom validation
        result.reason = f"{result.label}: {error}"
        log.warning("series %s failed: %s", series_uid, error)
    except OSError:  # the output folder (disk full, permissions), not this series: every series would fail
        raise
    except Exception as error:  # noqa: BLE001 - one series must never stop the others; the log has the traceback
        result.reason = f"{result.label}: unexpected {type(error).__name__}: {error}"
        log.exception("series %s failed unexpectedly", series_uid)
    return result


def explain_paths(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    models: Sequence[LoadedModel],
    settings: OutputSettings | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[SeriesResult], list[tuple[str, str]], list[tuple[str, str]]]:
    """Explain every series found under ``paths``: ``(results, skipped files, failed files)``."""
    scan = scan_inputs(paths)
    results = [explain_series(instances, out_dir, models, settings, progress) for instances in scan.series.values()]
    return results, scan.skipped, scan.failed
