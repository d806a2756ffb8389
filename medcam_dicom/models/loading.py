"""Loading the classifier a model description names: a shipped demo checkpoint, a TorchScript file or a
MONAI bundle directory (``configs/inference.json`` ``network_def`` + ``models/model.pt``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from medcam_dicom.explain.amortized import AmortizedMedCAM
from medcam_dicom.explain.explanation import Explanation
from medcam_dicom.explain.medcam import MedCAM
from medcam_dicom.explain.verification import forward_logits
from medcam_dicom.models.demo import demo_checkpoint_path, demo_explainer_path, load_demo_classifier
from medcam_dicom.models.description import ModelDescription, ModelDescriptionError
from medcam_dicom.models.fingerprint import model_fingerprint


class ScriptedClassifier(nn.Module):
    """Wraps a TorchScript classifier. ScriptModules refuse forward hooks, so their inner layers cannot be
    matched: the wrapper hides them and exposes one matchable layer, ``logits``, whose output is the
    classifier's logits as a single token ``(B, 1, K)``; Med-CAM then matches the decision itself."""

    def __init__(self, script: torch.jit.ScriptModule) -> None:
        super().__init__()
        object.__setattr__(self, "script", script)  # not registered: keeps its modules out of named_modules
        self.logits = nn.Identity()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        output = self.script(image)
        if isinstance(output, (tuple, list)):
            output = output[0]
        if isinstance(output, dict):
            output = next(iter(output.values()))
        return self.logits(output.unsqueeze(1)).squeeze(1)

    def to(self, *args, **kwargs) -> ScriptedClassifier:  # noqa: D102 - nn.Module.to, also for the script
        self.script.to(*args, **kwargs)
        return super().to(*args, **kwargs)


@dataclass
class RefiningExplainer:
    """An amortised explainer with the description's refinement budget and pruning:
    ``explain(image, target)`` like :class:`MedCAM`, so the DICOM path does not care which kind it has."""

    amortized: AmortizedMedCAM
    refine_steps: int | str = "auto"
    prune: str = "none"

    def explain(self, image: torch.Tensor, target: int | None = None) -> Explanation:
        """One forward pass, the verification re-run, refinement when the mask is not faithful, pruning."""
        return self.amortized.explain(image, target, refine_steps=self.refine_steps, prune=self.prune)


@dataclass
class LoadedModel:
    """A description with its network loaded, ready to build explainers.

    ``weight_files`` are the files the network (and its explainer) were loaded from; ``fingerprint``, taken
    from their content when the model is built, goes into every result UID (see ``models/fingerprint.py``).
    """

    description: ModelDescription
    network: nn.Module
    class_names: tuple[str, ...]
    layers: list[str] | None
    device: torch.device
    amortized: AmortizedMedCAM | None = None
    weight_files: tuple[Path, ...] = ()
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        self.fingerprint = model_fingerprint(self.description.fingerprint(), self.weight_files)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """The classifier's ``(B, K)`` logits, whatever its output (a tuple contributes its first element)."""
        return forward_logits(self.network, batch)

    def explainer(self) -> MedCAM | RefiningExplainer:
        """The description's explainer: per-image Med-CAM, or the amortised one with refinement."""
        if self.amortized is not None:
            spec = self.description.explainer
            return RefiningExplainer(self.amortized, spec.refine, spec.prune)
        return MedCAM(self.network, layers=self.layers, config=self.description.medcam, device=self.device)

    def class_index(self, name: str) -> int:
        return self.class_names.index(name)


def _load_bundle(description: ModelDescription) -> tuple[nn.Module, tuple[Path, ...]]:
    """The bundle's ``network_def`` with its weights, and the two files it was built from."""
    from medcam_dicom.models.classifier_bundle import ClassifierBundle, ClassifierBundleError

    try:
        bundle = ClassifierBundle.load(description.classifier_location, device="cpu", with_preprocessing=False)
    except ClassifierBundleError as error:
        raise ModelDescriptionError(description.source, str(error)) from error
    return bundle.network, (bundle.config_file, bundle.weights_file)


def load_model(description: ModelDescription, device: str | torch.device | None = None) -> LoadedModel:
    """Load the classifier of ``description`` in eval mode on ``device`` (CUDA when available by default).

    Raises :class:`ModelDescriptionError` naming the file when the classifier cannot be loaded.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    layers = list(description.layers) if description.layers else None
    class_names = description.class_names
    kind, location = description.classifier_kind, description.classifier_location
    if kind == "demo":
        try:
            trained = load_demo_classifier(location, device)
        except ValueError as error:
            raise ModelDescriptionError(description.source, str(error)) from error
        network = trained.network
        files = (demo_checkpoint_path(location),)
        class_names = class_names or trained.class_names
        spec = description.input
        if spec.mean is None and spec.std is None:
            description = replace(description, input=replace(spec, mean=trained.mean, std=trained.std))
    elif kind == "torchscript":
        if not Path(location).is_file():
            raise ModelDescriptionError(description.source, f"TorchScript file {location} does not exist")
        try:
            network = ScriptedClassifier(torch.jit.load(location, map_location="cpu"))
        except Exception as error:  # noqa: BLE001 - torch.jit.load raises several types
            raise ModelDescriptionError(description.source, f"{location} is not a TorchScript file: {error}") from error
        files = (Path(location),)
        if layers:
            raise ModelDescriptionError(
                description.source,
                "TorchScript models cannot have 'layers' matched (a "
                "ScriptModule refuses forward hooks); use a MONAI bundle directory instead",
            )
        layers = ["logits"]
    elif kind == "bundle":
        network, files = _load_bundle(description)
    else:
        raise ModelDescriptionError(description.source, f"unknown classifier kind {kind!r}")
    network = network.eval().to(device)
    if not class_names:
        raise ModelDescriptionError(description.source, "'class_names' is required for this classifier")
    unknown = set(description.findings or ()) - set(class_names)
    if unknown:
        raise ModelDescriptionError(
            description.source, f"'findings' {sorted(unknown)} are not classes of the classifier {list(class_names)}"
        )
    with torch.no_grad():
        probe = torch.zeros((1, description.input.channels) + tuple(description.input.size), device=device)
        try:
            logits = forward_logits(network, probe)
        except Exception as error:  # noqa: BLE001 - any failure means the input spec does not fit
            raise ModelDescriptionError(description.source, f"the classifier does not fit the input spec: {error}"
                                        ) from error
    if logits.ndim != 2 or logits.shape[1] != len(class_names):
        raise ModelDescriptionError(
            description.source,
            f"the classifier returns shape {tuple(logits.shape)} but {len(class_names)} class names are given",
        )
    amortized = None
    if description.explainer.kind == "amortized":
        checkpoint = description.explainer.checkpoint
        path = demo_explainer_path(location) if checkpoint == "demo" else Path(str(checkpoint))
        try:
            amortized = AmortizedMedCAM.load(path, network, device=device, config=description.medcam)
        except ValueError as error:
            raise ModelDescriptionError(description.source, f"explainer: {error}") from error
        files += (path,)
        spec = description.input
        if amortized.spatial_dims != spec.spatial_dims or amortized.in_channels != spec.channels:
            raise ModelDescriptionError(
                description.source,
                f"explainer {path} was trained on {amortized.spatial_dims}D images with {amortized.in_channels} "
                f"channel(s), the input spec says {spec.spatial_dims}D with {spec.channels}",
            )
    return LoadedModel(description, network, tuple(class_names), layers, device, amortized, files)
