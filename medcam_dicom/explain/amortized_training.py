"""Training of the amortised explainer: the loop (:func:`train_amortized`, behind
:meth:`AmortizedMedCAM.fit`) and one step of the Med-CAM loss averaged over a batch (:func:`training_step`).

Kept apart from the explainer's network (:mod:`medcam_dicom.explain.amortized_network`) and its inference
(:mod:`medcam_dicom.explain.amortized`), as MONAI keeps networks apart from training engines.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from medcam_dicom.explain import losses
from medcam_dicom.explain.baselines import robustness_backgrounds
from medcam_dicom.explain.batches import as_batch, images_of
from medcam_dicom.explain.features import FeatureRecorder
from medcam_dicom.explain.mask_network import mask_probabilities, straight_through_mask
from medcam_dicom.explain.medcam import default_layer_weights
from medcam_dicom.explain.validation import check_channels
from medcam_dicom.explain.verification import evaluation_mode, forward_logits

if TYPE_CHECKING:
    from medcam_dicom.explain.amortized import AmortizedMedCAM


def train_amortized(
    explainer: AmortizedMedCAM,
    images: torch.Tensor | Sequence[torch.Tensor] | Iterable[Any],
    epochs: int = 10,
    val: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
    batch_size: int = 16,
    learning_rate: float = 5e-3,
    checkpoint: str | Path | None = None,
    keep_best: bool = True,
    progress: bool = True,
    core_weight: float = 0.0,
) -> list[dict[str, Any]]:
    """The training loop behind :meth:`AmortizedMedCAM.fit` (see there for the arguments): Adam with a
    one-cycle schedule over :func:`training_step`, validation and best-epoch selection per epoch, a
    checkpoint per epoch."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not core_weight >= 0:
        raise ValueError(f"core_weight must be a non-negative number, got {core_weight!r}")
    in_memory = isinstance(images, (torch.Tensor, np.ndarray, list, tuple))
    if not in_memory and not hasattr(images, "__len__"):
        raise ValueError("training data must be a tensor, a list of images or an iterable of batches with a "
                         "len() (a DataLoader); a generator cannot be read once per epoch")
    train = as_batch(images) if in_memory else None
    first = (train[:1] if train is not None else images_of(next(iter(images)))[:1]).float().to(explainer.device)
    check_channels(explainer.classifier, first[0])
    if explainer.network is None:
        explainer._build_for(first[0])
    network = explainer._require_network(first[0])
    assert network is not None
    parameters = list(network.parameters())
    steps_per_epoch = math.ceil(len(train) / batch_size) if train is not None else len(images)
    optimiser = torch.optim.Adam(parameters, lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=learning_rate, total_steps=epochs * steps_per_epoch, pct_start=0.1
    )
    generator = torch.Generator().manual_seed(explainer.config.seed)
    device_generator = torch.Generator(device=explainer.device).manual_seed(explainer.config.seed + 1)
    layers = explainer.medcam.matched_layers(first[0].to(explainer.device))
    started = time.perf_counter()
    best: tuple[tuple[float, float], dict[str, torch.Tensor]] | None = None
    for epoch in range(epochs):
        if train is not None:
            order = torch.randperm(len(train), generator=generator)
            batches: Iterator[torch.Tensor] = (
                train[order[i : i + batch_size]] for i in range(0, len(train), batch_size)
            )
        else:
            batches = (images_of(item) for item in images)
        bar = tqdm(batches, total=steps_per_epoch, desc=f"amortised Med-CAM epoch {epoch + 1}/{epochs}",
                   unit="batch", disable=not progress, leave=False)
        running, faithful_running = 0.0, 0.0
        for step, batch in enumerate(bar):
            network.train()
            loss, faithful = training_step(explainer, batch.float().to(explainer.device), layers, device_generator,
                                           core_weight)
            optimisation_step(loss, optimiser)
            if scheduler.last_epoch < scheduler.total_steps - 1:
                scheduler.step()
            running = loss.item() if step == 0 else 0.9 * running + 0.1 * loss.item()
            faithful_running = faithful if step == 0 else 0.9 * faithful_running + 0.1 * faithful
            bar.set_postfix(loss=f"{running:.3f}", faithful=f"{faithful_running:.2f}")
        network.eval()
        row: dict[str, Any] = {"epoch": epoch + 1, "loss": running, "train_faithful": faithful_running,
                               "seconds": time.perf_counter() - started}
        if val is not None:
            row.update(explainer.evaluate(*(val if isinstance(val, tuple) else (val, None))))
        explainer.history.append(row)
        if val is not None and keep_best:
            quality = row.get("iou", -row["area_fraction"])
            score = (quality, 0.0) if row["faithful_pct"] >= 98.0 else (-math.inf, row["faithful_pct"])
            if best is None or score > best[0]:
                best = (score, copy.deepcopy(network.state_dict()))
                row["best"] = True
        if progress:
            shown = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
            tqdm.write(f"amortised Med-CAM: {shown}")
        if checkpoint is not None:
            explainer.save(checkpoint)
    if best is not None:
        network.load_state_dict(best[1])
        if checkpoint is not None:
            explainer.save(checkpoint)
    return explainer.history


def optimisation_step(loss: torch.Tensor, optimiser: torch.optim.Optimizer) -> None:
    """One optimiser step on ``loss``, with gradients taken for the optimiser's parameters only: the
    classifier's parameters never receive a gradient (``backward`` would accumulate into them)."""
    parameters = [p for group in optimiser.param_groups for p in group["params"] if p.requires_grad]
    optimiser.zero_grad(set_to_none=True)
    gradients = torch.autograd.grad(loss, parameters)
    for parameter, gradient in zip(parameters, gradients):
        parameter.grad = gradient
    optimiser.step()


CORE_MAX_SHIFT = 6.0  # the core term's largest margin above the threshold, in mask logits


def core_masks(soft: torch.Tensor, threshold: float, generator: torch.Generator) -> torch.Tensor:
    """Straight-through binary cores of the soft masks ``(B, 1, *spatial)``: the voxels whose logit lies
    above the threshold's by a margin drawn per image from ``[0, CORE_MAX_SHIFT]`` (a level of the
    explainer's ranking, as pruning takes one)."""
    shift = torch.rand((soft.shape[0], *[1] * (soft.ndim - 1)), generator=generator, device=generator.device)
    logits = torch.logit(soft.clamp(1e-6, 1.0 - 1e-6)) - CORE_MAX_SHIFT * shift.to(soft.device, soft.dtype)
    return straight_through_mask(torch.sigmoid(logits), threshold)


def core_loss(full_logits: torch.Tensor, core_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The core term: cross-entropy of the core-masked images on the target plus the log-odds hinge asking
    them to be as convincing as the full images (:func:`~medcam_dicom.explain.losses.margin_loss` with no
    margin)."""
    return losses.ce_loss(core_logits, targets) + losses.margin_loss(full_logits, core_logits, targets, 0.0)


def training_step(
    explainer: AmortizedMedCAM, batch: torch.Tensor, layers: list[Any], generator: torch.Generator,
    core_weight: float = 0.0,
) -> tuple[torch.Tensor, float]:
    """The Med-CAM loss of one batch (every term averaged over images, the classifier seeing the
    straight-through binary mask as in per-image Med-CAM), plus ``core_weight`` times :func:`core_loss`,
    and its faithful fraction."""
    config, weights = explainer.config, explainer.config.weights
    names = [layer.name for layer in layers]
    layer_weights = list(config.layer_weights or default_layer_weights(len(layers)))
    count = batch.shape[0]
    # the decoder's feature maps are the matched layers for a CNN, a transformer's stem for a transformer
    recorded = names + [name for name in explainer.feature_layers if name not in names]
    with evaluation_mode(explainer.classifier), FeatureRecorder(explainer.classifier, recorded) as recorder:
        with torch.no_grad():
            full_logits = forward_logits(explainer.classifier, batch)
            full_features = [recorder.outputs[name].detach() for name in names]
            decoder_inputs = [recorder.outputs[name].detach() for name in explainer.feature_layers]
            targets = full_logits.argmax(dim=1)
            baselines = explainer._baselines(batch)
        soft_all = mask_probabilities(explainer._mask_logits(batch, decoder_inputs))
        soft = soft_all.gather(1, targets.view(-1, *[1] * (soft_all.ndim - 1)).expand(
            -1, 1, *soft_all.shape[2:]))
        mask = straight_through_mask(soft, config.threshold)
        inputs = [mask * batch + (1.0 - mask) * baselines]
        use_robustness = weights.rob > 0 and len(config.robustness_backgrounds) > 0
        if use_robustness:
            # one background per image and step (the per-image method uses all of them every step)
            with torch.no_grad():
                kinds = config.robustness_backgrounds
                choice = torch.randint(len(kinds), (count,), generator=generator, device=generator.device)
                backgrounds = torch.stack([
                    robustness_backgrounds(image, (kinds[int(k)],), generator)[0]
                    for image, k in zip(batch, choice)
                ])
            inputs.append(mask * batch + (1.0 - mask) * backgrounds)
        if weights.deletion > 0:
            inputs.append((1.0 - mask) * batch + mask * baselines)  # the evidence removed
        if core_weight > 0:
            core = core_masks(soft, config.threshold, generator)
            inputs.append(core * batch + (1.0 - core) * baselines)
        logits = forward_logits(explainer.classifier, torch.cat(inputs))
        core_logits = None
        if core_weight > 0:  # the cores came last: split them off, the rest is laid out as without them
            logits, core_logits = logits[:-count], logits[-count:]
        masked_logits = logits[:count]
        faithful = masked_logits.argmax(dim=1) == targets
        loss, _ = losses.medcam_loss(
            config,
            full_logits=full_logits,
            masked_logits=masked_logits,
            targets=targets,
            full_features=full_features,
            masked_features=[recorder.outputs[name][:count] for name in names] if weights.act > 0 else [],
            layer_weights=layer_weights,
            soft_mask=soft,
            tv_mask=mask,  # a speckled binary mask costs even where p is smooth
            robustness_logits=logits[count : 2 * count] if use_robustness else None,
            removed_logits=logits[-count:] if weights.deletion > 0 else None,
        )
        if core_logits is not None:
            loss = loss + core_weight * core_loss(full_logits, core_logits, targets)
    return loss, float(faithful.float().mean())
