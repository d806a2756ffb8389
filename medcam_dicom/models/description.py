"""Model description files: which classifier explains which series, and how to feed it.

A description is a YAML or JSON file::

    name: demo-ct                      # shown in outputs and logs
    version: "1"
    classifier: {demo: ct}             # or {torchscript: model.ts} or {bundle: path/to/monai_bundle}
    class_names: [normal, lesion]      # optional for demo models and bundles that declare them
    findings: [lesion]                 # classes that are findings: only their evidence gets a SEG overlay
                                       # and a Secondary Capture; every decision goes into the SR.
                                       # null (default) = every class is a finding
    mode: 2d                           # 2d: every frame/slice on its own; 3d: the whole volume
    input:
      size: [128, 128]
      channels: 1
      intensity: {window: [40, 400]}   # or {range: [0, 255]} or {percentiles: [1, 99]}
      spacing: null                    # mm; resample then pad/crop to size
      mean: null                       # the classifier's own normalisation after [0, 1] scaling
      std: null
    layers: null                       # module names to match; null = the documented default
    explain: {classes: null, min_probability: null}   # null classes = the top-1 class
    applies_to: {modality: [CT], body_part: [], image_type: [], colour: null}
    medcam: {max_steps: 300}           # MedCAMConfig overrides
    explainer: {amortized: demo, refine: auto}   # optional: a trained AmortizedMedCAM checkpoint (a
                                       # path, or "demo" for the shipped one of a demo classifier);
                                       # refine: auto | steps | 0; prune: none | decision | preserved
                                       # | sufficient (default none). Without it: per-image Med-CAM
    max_pixels: 268435456              # larger series are refused (default: 1,024 slices of 512 x 512)

Relative paths are resolved against the description file's folder. The shipped descriptions (``demo-ct``,
``demo-mr``, ``demo-colour``, ``demo-any``, ``demo-ct3d``) can be named instead of a path.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from medcam_dicom.explain.config import PRUNE_CRITERIA, LossWeights, MedCAMConfig
from medcam_dicom.models.input_spec import InputSpec, IntensitySpec

DESCRIPTIONS_DIR = Path(__file__).resolve().parent / "descriptions"
#: The shipped descriptions tried in this order when no model is given: a series goes to the first match.
DEFAULT_MODELS = ("demo-ct", "demo-mr", "demo-colour", "demo-any")
CLASSIFIER_KINDS = ("demo", "torchscript", "bundle")
EXPLAINER_KINDS = ("per_image", "amortized")
#: the largest series read by default: 1,024 slices of 512 x 512 (a whole-body CT), 1 GiB as float32
DEFAULT_MAX_PIXELS = 1024 * 512 * 512


class ModelDescriptionError(ValueError):
    """A model description that cannot be used; the message names the file and the key."""

    def __init__(self, source: str | Path, problem: str) -> None:
        super().__init__(f"model description {source}: {problem}")


@dataclass(frozen=True)
class SeriesRules:
    """Which series a model applies to. Empty lists match anything; ``colour`` ``None`` matches both."""

    modality: tuple[str, ...] = ()
    body_part: tuple[str, ...] = ()
    image_type: tuple[str, ...] = ()
    colour: bool | None = None

    def mismatch(self, dataset: Dataset, colour: bool) -> str | None:
        """Why a series (represented by one of its datasets) does not match, or ``None`` when it does."""
        modality = str(dataset.get("Modality", "") or "")
        if self.modality and modality.upper() not in {m.upper() for m in self.modality}:
            return f"modality {modality or 'none'} not in {list(self.modality)}"
        body_part = str(dataset.get("BodyPartExamined", "") or "")
        if self.body_part and body_part.upper() not in {b.upper() for b in self.body_part}:
            return f"body part {body_part or 'none'} not in {list(self.body_part)}"
        if self.image_type:
            values = {str(v).upper() for v in (dataset.get("ImageType") or [])}
            if not values & {t.upper() for t in self.image_type}:
                return f"image type {sorted(values)} has none of {list(self.image_type)}"
        if self.colour is not None and colour != self.colour:
            return "colour image" if colour else "grey-scale image"
        return None


@dataclass(frozen=True)
class ExplainSpec:
    """Which classes get an explanation: the named ``classes``, else every class whose probability is at
    least ``min_probability``, else the top-1 class."""

    classes: tuple[str, ...] | None = None
    min_probability: float | None = None


@dataclass(frozen=True)
class ExplainerSpec:
    """How masks are made: ``per_image`` Med-CAM (a U-Net optimised for every image), or ``amortized``:
    the :class:`~medcam_dicom.AmortizedMedCAM` checkpoint at ``checkpoint`` (``"demo"`` = the one shipped
    with a demo classifier), refining unfaithful masks for up to ``refine`` steps (``"auto"`` =
    the level search and ``medcam.min_steps`` polishing steps, see :meth:`AmortizedMedCAM.explain`) and
    cutting faithful masks to their smallest level passing ``prune`` (``"none"``, ``"decision"``,
    ``"preserved"`` or ``"sufficient"``; the per-image explainer prunes by ``medcam.prune`` instead)."""

    kind: str = "per_image"
    checkpoint: str | None = None
    refine: int | str = "auto"
    prune: str = "none"


@dataclass(frozen=True)
class ModelDescription:
    """A validated model description (see the module docstring for the file format)."""

    name: str
    classifier_kind: str
    classifier_location: str
    input: InputSpec
    mode: str = "2d"
    version: str = "1"
    class_names: tuple[str, ...] | None = None
    layers: tuple[str, ...] | None = None
    explain: ExplainSpec = ExplainSpec()
    applies_to: SeriesRules = SeriesRules()
    medcam: MedCAMConfig = field(default_factory=MedCAMConfig)
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    explainer: ExplainerSpec = ExplainerSpec()
    findings: tuple[str, ...] | None = None
    source: str = "<built-in>"

    def is_finding(self, class_name: str) -> bool:
        """Whether evidence for ``class_name`` is drawn over the image (SEG overlay, Secondary Capture):
        classes named in ``findings``, or every class when the description names none. A "normal" decision
        is reported in the SR only, so that no region over normal anatomy reads as a finding."""
        return self.findings is None or class_name in self.findings

    def fingerprint(self) -> str:
        """A short hash of the settings that shape the results. Not of where the files lie, nor of what is in
        them: :class:`~medcam_dicom.models.loading.LoadedModel` adds the weights' content for result UIDs."""
        identity = repr((self.name, self.version, self.classifier_kind, self.input, self.mode, self.class_names,
                         self.layers, self.explain, self.medcam, self.explainer.kind, self.explainer.refine,
                         self.findings) + ((self.explainer.prune,) if self.explainer.prune != "none" else ()))
        return hashlib.sha256(identity.encode()).hexdigest()[:16]

    def with_medcam(self, **overrides: Any) -> ModelDescription:
        """A copy whose MedCAMConfig has ``overrides`` applied (used by ``--max-steps``)."""
        from dataclasses import replace

        return replace(self, medcam=replace(self.medcam, **overrides))


def _tuple(value: Any, source: str, key: str, kind: type = str) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, (str, int, float)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ModelDescriptionError(source, f"'{key}' must be a list, got {type(value).__name__}")
    try:
        return tuple(kind(v) for v in value)
    except (TypeError, ValueError) as error:
        raise ModelDescriptionError(source, f"'{key}' has an invalid entry: {error}") from error


def _section(raw: Mapping[str, Any], key: str, source: str, allowed: set[str]) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise ModelDescriptionError(source, f"'{key}' must be a mapping")
    unknown = set(value) - allowed
    if unknown:
        raise ModelDescriptionError(
            source, f"unknown key(s) in '{key}': {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
        )
    return dict(value)


def _medcam_config(value: Any, source: str) -> MedCAMConfig:
    if value is None:
        return MedCAMConfig()
    if not isinstance(value, Mapping):
        raise ModelDescriptionError(source, "'medcam' must be a mapping of MedCAMConfig fields")
    allowed = {f.name for f in fields(MedCAMConfig)}
    unknown = set(value) - allowed
    if unknown:
        raise ModelDescriptionError(source, f"unknown MedCAMConfig field(s) in 'medcam': {', '.join(sorted(unknown))}")
    overrides = dict(value)
    if "weights" in overrides:
        weights = overrides["weights"]
        weight_names = {f.name for f in fields(LossWeights)}
        if not isinstance(weights, Mapping) or set(weights) - weight_names:
            raise ModelDescriptionError(source, f"'medcam.weights' must map some of {sorted(weight_names)}")
        overrides["weights"] = LossWeights(**{k: float(v) for k, v in weights.items()})
    for key, item in list(overrides.items()):
        if isinstance(item, list):
            overrides[key] = tuple(item)
    try:
        return MedCAMConfig(**overrides)
    except (TypeError, ValueError) as error:
        raise ModelDescriptionError(source, f"'medcam': {error}") from error


def parse_description(raw: Mapping[str, Any], source: str = "<mapping>", base: Path | None = None) -> ModelDescription:
    """Validate a description already parsed from YAML/JSON; paths are resolved against ``base``."""
    if not isinstance(raw, Mapping):
        raise ModelDescriptionError(source, "must be a mapping at the top level")
    allowed = {
        "name",
        "version",
        "classifier",
        "class_names",
        "mode",
        "input",
        "layers",
        "explain",
        "applies_to",
        "medcam",
        "max_pixels",
        "explainer",
        "findings",
    }
    unknown = set(raw) - allowed
    if unknown:
        raise ModelDescriptionError(source, f"unknown key(s): {', '.join(sorted(unknown))}")
    name = str(raw.get("name") or (Path(source).stem if base else "model"))
    classifier = _section(raw, "classifier", source, set(CLASSIFIER_KINDS))
    if len(classifier) != 1:
        raise ModelDescriptionError(source, f"'classifier' needs exactly one of {', '.join(CLASSIFIER_KINDS)}")
    kind, location = next(iter(classifier.items()))
    location = str(location)
    if kind != "demo" and base is not None and not Path(location).is_absolute():
        location = str((base / location).resolve())
    mode = str(raw.get("mode", "2d")).lower()
    if mode not in ("2d", "3d"):
        raise ModelDescriptionError(source, f"'mode' must be 2d or 3d, got {mode!r}")
    section = _section(raw, "input", source, {"size", "channels", "intensity", "spacing", "mean", "std"})
    if "size" not in section:
        raise ModelDescriptionError(source, "'input.size' is required")
    intensity = _section(section, "intensity", source, {"window", "range", "percentiles"}) or {"percentiles": [1, 99]}
    try:
        spec = InputSpec(
            size=_tuple(section["size"], source, "input.size", int),
            channels=int(section.get("channels", 1)),
            intensity=IntensitySpec(
                **{k: _tuple(v, source, f"input.intensity.{k}", float) for k, v in intensity.items()}
            ),
            spacing=_tuple(section.get("spacing"), source, "input.spacing", float),
            mean=_tuple(section.get("mean"), source, "input.mean", float),
            std=_tuple(section.get("std"), source, "input.std", float),
        )
    except ValueError as error:
        if isinstance(error, ModelDescriptionError):
            raise
        raise ModelDescriptionError(source, f"'input': {error}") from error
    if (mode == "3d") != (spec.spatial_dims == 3):
        raise ModelDescriptionError(source, f"mode {mode} does not fit input.size {list(spec.size)}")
    explain = _section(raw, "explain", source, {"classes", "min_probability"})
    min_probability = explain.get("min_probability")
    if min_probability is not None and not 0.0 <= float(min_probability) <= 1.0:
        raise ModelDescriptionError(source, f"'explain.min_probability' must be in [0, 1], got {min_probability}")
    rules = _section(raw, "applies_to", source, {"modality", "body_part", "image_type", "colour"})
    class_names = _tuple(raw.get("class_names"), source, "class_names")
    explain_classes = _tuple(explain.get("classes"), source, "explain.classes")
    if class_names and explain_classes and set(explain_classes) - set(class_names):
        raise ModelDescriptionError(source, f"'explain.classes' {list(explain_classes)} not all in class_names")
    findings = _tuple(raw.get("findings"), source, "findings")
    if class_names and findings and set(findings) - set(class_names):
        raise ModelDescriptionError(source, f"'findings' {list(findings)} not all in class_names {list(class_names)}")
    max_pixels = raw.get("max_pixels", DEFAULT_MAX_PIXELS)
    explainer = _explainer_spec(raw, source, base)
    if explainer.checkpoint == "demo" and kind != "demo":
        raise ModelDescriptionError(source, "'explainer.amortized: demo' needs a demo classifier; give a path")
    return ModelDescription(
        name=name,
        version=str(raw.get("version", "1")),
        classifier_kind=kind,
        classifier_location=location,
        input=spec,
        mode=mode,
        class_names=class_names,
        layers=_tuple(raw.get("layers"), source, "layers"),
        explain=ExplainSpec(explain_classes, None if min_probability is None else float(min_probability)),
        applies_to=SeriesRules(
            modality=_tuple(rules.get("modality"), source, "applies_to.modality") or (),
            body_part=_tuple(rules.get("body_part"), source, "applies_to.body_part") or (),
            image_type=_tuple(rules.get("image_type"), source, "applies_to.image_type") or (),
            colour=None if rules.get("colour") is None else bool(rules["colour"]),
        ),
        medcam=_medcam_config(raw.get("medcam"), source),
        max_pixels=None if max_pixels is None else int(max_pixels),
        explainer=explainer,
        findings=findings,
        source=source,
    )


def _explainer_spec(raw: Mapping[str, Any], source: str, base: Path | None) -> ExplainerSpec:
    section = _section(raw, "explainer", source, {"per_image", "amortized", "refine", "prune"})
    if not section:
        return ExplainerSpec()
    kinds = [k for k in EXPLAINER_KINDS if k in section]
    if len(kinds) != 1:
        raise ModelDescriptionError(source, "'explainer' needs exactly one of per_image: true, amortized: <checkpoint>")
    refine = section.get("refine", "auto")
    if not (refine == "auto" or (isinstance(refine, int) and not isinstance(refine, bool) and refine >= 0)):
        raise ModelDescriptionError(
            source, f"'explainer.refine' must be auto or a number of steps >= 0, got {refine!r}"
        )
    prune = section.get("prune", "none")
    if prune not in PRUNE_CRITERIA:
        raise ModelDescriptionError(
            source, f"'explainer.prune' must be one of {', '.join(PRUNE_CRITERIA)}, got {prune!r}"
        )
    if kinds[0] == "per_image":
        if prune != "none":
            raise ModelDescriptionError(source, "'explainer.prune' applies to amortized; per-image Med-CAM "
                                                "prunes by 'medcam: {prune: ...}'")
        return ExplainerSpec("per_image", None, refine)
    checkpoint = str(section["amortized"])
    if checkpoint != "demo" and base is not None and not Path(checkpoint).is_absolute():
        checkpoint = str((base / checkpoint).resolve())
    return ExplainerSpec("amortized", checkpoint, refine, prune)


def load_description(path_or_name: str | Path) -> ModelDescription:
    """Read a description file (``.yaml``/``.yml``/``.json``), or a shipped one by name (``demo-ct``)."""
    path = Path(path_or_name)
    if not path.is_file():
        shipped = DESCRIPTIONS_DIR / f"{path_or_name}.yaml"
        if shipped.is_file():
            path = shipped
        else:
            names = ", ".join(sorted(p.stem for p in DESCRIPTIONS_DIR.glob("*.yaml")))
            raise ModelDescriptionError(path_or_name, f"no such file, and not a shipped model ({names})")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
    except Exception as error:  # noqa: BLE001 - YAML/JSON syntax errors of many types
        raise ModelDescriptionError(path, f"cannot be parsed: {error}") from error
    return parse_description(raw, str(path), path.parent)


def default_descriptions() -> list[ModelDescription]:
    """The shipped demo descriptions used when no model is given (first match wins)."""
    return [load_description(name) for name in DEFAULT_MODELS]
