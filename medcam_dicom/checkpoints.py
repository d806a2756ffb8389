"""PyTorch checkpoint files shared by the demo classifiers, the amortised explainers and the MONAI bundle:
written durably (temporary name, fsync, rename), read with a ``ValueError`` that names the file."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medcam_dicom.durable import write_durably


def half_state(network: nn.Module) -> dict[str, torch.Tensor]:
    """``network``'s state dict with floating-point tensors in float16 (small files; ``load_state_dict``
    converts back to the parameters' dtype)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in network.state_dict().items()}


def save_checkpoint(payload: Any, path: str | Path) -> None:
    """``torch.save`` ``payload`` to ``path`` without ever leaving a half-written file there."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_durably(Path(path), buffer.getbuffer())


def load_checkpoint(path: str | Path, expected_format: str, what: str) -> dict[str, Any]:
    """The payload dict of a checkpoint written with ``{"format": expected_format, ...}``; ``what`` names
    the kind of file in the ``ValueError`` raised when it is missing, unreadable or of another format."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "not our file"
        raise ValueError(f"{path} is not a readable {what} checkpoint: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        raise ValueError(f"{path} is not a medcam-dicom {what} checkpoint (missing format {expected_format!r})")
    return payload


#: keys under which a weights file may hold the state dict (MONAI's CheckpointSaver: "model")
STATE_DICT_KEYS = ("model", "state_dict", "network", "model_state_dict")


def load_state_file(network: nn.Module, path: str | Path) -> nn.Module:
    """Load a state-dict file (plain, or under one of :data:`STATE_DICT_KEYS`) into
    ``network``; raises ``ValueError`` naming the file when it is unreadable or does not fit."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "not a weights file"
        raise ValueError(f"{path} is not a readable state-dict file: {error}") from error
    if isinstance(state, dict):  # a dict holding the state dict, as zoo bundles and CheckpointSaver write it
        held = [state[key] for key in STATE_DICT_KEYS if isinstance(state.get(key), dict)]
        state = held[0] if held else state
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise ValueError(f"weights {path} do not fit network_def: {error}") from error
    return network
