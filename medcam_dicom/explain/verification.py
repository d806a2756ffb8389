"""Running the classifier, and the check that makes a mask an explanation: re-run it on the evidence."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from medcam_dicom.explain.losses import target_log_odds
from medcam_dicom.explain.validation import logits_of


def resolve_device(classifier: nn.Module, device: str | torch.device | None) -> torch.device:
    """``device`` if given, else the device of the classifier's parameters (CPU when it has none)."""
    if device is not None:
        return torch.device(device)
    for parameter in classifier.parameters():
        return parameter.device
    return torch.device("cpu")


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode for the duration, then restore each one's own flag - also of a
    module something inside switched (MONAI's ``eval_mode``, which ``OcclusionSensitivity`` uses, calls
    ``train()`` on exit on the wrapper it was given, and so on the classifier inside it). Only flags that
    differ are set: setting all of a DenseNet's 495 flags, twice, cost 4 ms a call, and the pruning and
    the search call this hundreds of times per image."""
    modules = list(model.modules())
    flags = [module.training for module in modules]
    for module, flag in zip(modules, flags):
        if flag:
            module.training = False
    try:
        yield
    finally:
        for module, flag in zip(modules, flags):
            if module.training != flag:
                module.training = flag


def forward_logits(classifier: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """``classifier(batch)`` as checked ``(B, K)`` logits; a failing forward becomes a ``ValueError``."""
    try:
        output = classifier(batch)
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        raise ValueError(f"classifier failed on an input of shape {tuple(batch.shape)}: {error}") from error
    return logits_of(output, batch.shape[0])


def apply_mask(image: torch.Tensor, keep: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    """``keep * image + (1 - keep) * baseline``; ``keep`` (bool or float) has the spatial shape and is
    broadcast over channels (and over a leading batch axis when ``keep`` has one)."""
    keep = keep.to(image.device, image.dtype).unsqueeze(-image.ndim)
    return keep * image + (1.0 - keep) * baseline


def verify_mask(
    classifier: nn.Module,
    image: torch.Tensor,
    mask: torch.Tensor,
    target: int,
    baseline: torch.Tensor,
) -> tuple[bool, float]:
    """Re-run ``classifier`` on the hard-masked image ``(C, *spatial)``; returns
    ``(argmax == target, softmax probability of target)``."""
    evidence = apply_mask(image, mask.bool(), baseline)
    with evaluation_mode(classifier), torch.no_grad():
        logits = forward_logits(classifier, evidence.unsqueeze(0))
    probabilities = torch.softmax(logits.float(), dim=1)[0]
    return bool(int(probabilities.argmax()) == target), float(probabilities[target])


def masked_log_odds(
    classifier: nn.Module, image: torch.Tensor, masks: torch.Tensor, target: int, baseline: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of ``masks`` ``(L, *spatial)``: whether ``image`` hard-masked onto ``baseline`` keeps
    ``target`` the top-1 class, and the target's log-odds there (one batch; log-odds, not probabilities,
    because saturated classifiers' probabilities round to 1 in float32). Both on the CPU."""
    with evaluation_mode(classifier), torch.no_grad():
        logits = forward_logits(classifier, apply_mask(image, masks.to(image.device), baseline)).float()
    odds = target_log_odds(logits, torch.full((len(masks),), target, device=logits.device))
    return (logits.argmax(dim=1) == target).cpu(), odds.cpu()
