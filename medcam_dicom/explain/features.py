"""Recording intermediate classifier activations, and choosing which layers to match by default.

Default layers (``layers=None``): the classifier is traced once on the image being explained.
Modules that run more than once per forward are never chosen.
- CNNs (outputs shaped ``(B, C, *spatial)``): for every distinct spatial resolution, the module that
  finishes last at that resolution (the end of a stage, after its activation); the input resolution
  itself is skipped when deeper stages exist; the deepest :data:`MAX_DEFAULT_LAYERS` stages are kept.
- Transformers (token outputs ``(B, N, D)`` after the last spatial stage - a ViT's patch projection, or
  the convolutional stem of a hybrid): the outermost modules producing tokens (the blocks),
  :data:`MAX_DEFAULT_LAYERS` of them evenly spaced, the last one always included.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from types import TracebackType

import torch
from torch import nn

from medcam_dicom.explain.verification import forward_logits

MAX_DEFAULT_LAYERS = 4


@dataclass(frozen=True)
class MatchedLayer:
    """A classifier layer whose output is matched: ``kind`` is ``"spatial"`` or ``"token"``."""

    name: str
    kind: str


def _first_tensor(output: object) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


class FeatureRecorder:
    """Context manager that stores the outputs of named modules during forward passes.

    >>> with FeatureRecorder(model, ["layer1", "layer4"]) as rec:
    ...     model(x)
    ...     rec.outputs["layer4"]
    """

    def __init__(self, model: nn.Module, layer_names: list[str]) -> None:
        modules = dict(model.named_modules())
        for name in layer_names:
            if name not in modules or name == "":
                close = difflib.get_close_matches(name, [n for n in modules if n], n=3)
                hint = f"; did you mean {close}?" if close else ""
                raise ValueError(f"unknown layer name {name!r}: not in classifier.named_modules(){hint}")
        self._modules = [(name, modules[name]) for name in layer_names]
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self.outputs: dict[str, torch.Tensor] = {}

    def _hook(self, name: str):
        def record(_module: nn.Module, _inputs: object, output: object) -> None:
            tensor = _first_tensor(output)
            if tensor is not None:
                self.outputs[name] = tensor

        return record

    def __enter__(self) -> FeatureRecorder:
        for name, module in self._modules:
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def _trace_output_shapes(model: nn.Module, batch: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """(name, output shape) of every submodule in order of completion of one forward."""
    trace: list[tuple[str, tuple[int, ...]]] = []
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def record(_m: nn.Module, _i: object, output: object, name: str = name) -> None:
            tensor = _first_tensor(output)
            if tensor is not None:
                trace.append((name, tuple(tensor.shape)))

        handles.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            forward_logits(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    return trace


def _called_once(trace: list[tuple[str, tuple[int, ...]]]) -> list[tuple[str, tuple[int, ...]]]:
    """Drop modules that run more than once per forward (a shared activation module, say): their
    recorded output would be ambiguous."""
    counts: dict[str, int] = {}
    for name, _ in trace:
        counts[name] = counts.get(name, 0) + 1
    return [(name, shape) for name, shape in trace if counts[name] == 1]


def _spatial_stage_layers(
    trace: list[tuple[str, tuple[int, ...]]], input_spatial: tuple[int, ...]
) -> list[str]:
    """Walk the trace in execution order: a smaller resolution than any seen opens a new stage; outputs
    at the current stage's resolution update its last module; larger ones (padding inside a block,
    say) are ignored."""
    spatial_dims = len(input_spatial)
    stages: list[tuple[int, str]] = []  # (voxels, last module at that resolution)
    for name, shape in trace:
        if len(shape) != 2 + spatial_dims:
            continue
        voxels = int(torch.tensor(shape[2:]).prod())
        if voxels <= 1:
            continue
        if not stages or voxels < stages[-1][0]:
            stages.append((voxels, name))
        elif voxels == stages[-1][0]:
            stages[-1] = (voxels, name)
    input_voxels = int(torch.tensor(input_spatial).prod())
    if len(stages) > 2 and stages[0][0] == input_voxels:
        stages = stages[1:]
    return [name for _, name in stages[-MAX_DEFAULT_LAYERS:]]


def _token_layers(trace: list[tuple[str, tuple[int, ...]]]) -> list[str]:
    names = []
    seen = set()
    for name, shape in trace:
        if len(shape) == 3 and shape[1] > 1 and name not in seen:
            seen.add(name)
            names.append(name)
    candidates = [n for n in names if not any(n.startswith(other + ".") for other in names if other != n)]
    if len(candidates) > 1:
        candidates = candidates[1:]  # the patch embedding is pixel-level; start after it
    if len(candidates) <= MAX_DEFAULT_LAYERS:
        return candidates
    step = (len(candidates) - 1) / (MAX_DEFAULT_LAYERS - 1)
    return [candidates[round(i * step)] for i in range(MAX_DEFAULT_LAYERS)]


def spatial_stage_layers(model: nn.Module, batch: torch.Tensor) -> list[str]:
    """The last module of each of ``model``'s deepest spatial stages on ``batch`` (up to
    :data:`MAX_DEFAULT_LAYERS`, deepest last), transformers' patch projections and stems included: where
    a class activation map can be taken."""
    trace = _called_once(_trace_output_shapes(model, batch))
    return _spatial_stage_layers(trace, tuple(batch.shape[2:]))


def default_layers(model: nn.Module, batch: torch.Tensor) -> list[MatchedLayer]:
    """Choose the layers to match for ``model`` on ``batch`` (see the module docstring)."""
    trace = _called_once(_trace_output_shapes(model, batch))
    spatial = _spatial_stage_layers(trace, tuple(batch.shape[2:]))
    tokens = _token_layers(trace)
    order = [name for name, _ in trace]
    if tokens and (not spatial or order.index(tokens[-1]) > order.index(spatial[-1])):
        # a transformer: its spatial stages (patch projection, convolutional stem) only feed the tokens
        return [MatchedLayer(name, "token") for name in tokens]
    if spatial:
        return [MatchedLayer(name, "spatial") for name in spatial]
    raise ValueError(
        "could not choose layers to match automatically: the classifier has no module with spatial "
        "(B, C, ...) or token (B, N, D) outputs; pass layers=[...] explicitly"
    )


def describe_layers(model: nn.Module, batch: torch.Tensor, names: list[str]) -> list[MatchedLayer]:
    """Classify user-chosen layer names as spatial or token layers by tracing one forward."""
    with FeatureRecorder(model, names) as recorder, torch.no_grad():
        forward_logits(model, batch)
    layers = []
    spatial_rank = batch.ndim
    for name in names:
        if name not in recorder.outputs:
            raise ValueError(f"layer {name!r} produced no tensor output in the classifier's forward pass")
        out = recorder.outputs[name]
        if out.ndim == spatial_rank:
            layers.append(MatchedLayer(name, "spatial"))
        elif out.ndim == 3:
            layers.append(MatchedLayer(name, "token"))
        else:
            raise ValueError(
                f"layer {name!r} outputs shape {tuple(out.shape)}: neither a spatial map "
                f"(B, C, ...) nor tokens (B, N, D), so it cannot be matched"
            )
    return layers
