"""Per-image Med-CAM: a U-Net trained from scratch on one image learns a minimal binary mask that keeps
the classifier's activations and decision; the result is verified by re-running the classifier."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from medcam_dicom.explain import losses
from medcam_dicom.explain.baselines import make_baseline, robustness_backgrounds
from medcam_dicom.explain.completion import complete_evidence, removal_scores
from medcam_dicom.explain.config import MedCAMConfig
from medcam_dicom.explain.explanation import Explanation
from medcam_dicom.explain.features import FeatureRecorder, MatchedLayer, default_layers, describe_layers
from medcam_dicom.explain.local_search import search_evidence
from medcam_dicom.explain.mask_network import (
    build_mask_network,
    coarse_logits,
    crop_to_shape,
    mask_probabilities,
    pad_to_multiple,
    straight_through_mask,
)
from medcam_dicom.explain.null_check import attach_null_check
from medcam_dicom.explain.pruning import drop_unneeded_parts, prune_reranked
from medcam_dicom.explain.validation import as_image_tensor, check_channels, check_target
from medcam_dicom.explain.verification import evaluation_mode, forward_logits, resolve_device, verify_mask
from medcam_dicom.explain.warm_start import PriorOffsetNetwork, WarmStart, find_warm_start, prior_logits


def default_layer_weights(count: int) -> list[float]:
    """``2**i`` for layer ``i`` (deeper layers weigh more), normalised to mean 1."""
    raw = [2.0**i for i in range(count)]
    return [w * count / sum(raw) for w in raw]


class MedCAM:
    """Explain a classifier's decisions with minimal, verified binary masks.

    Args:
        classifier: any ``torch.nn.Module`` returning logits ``(B, K)`` (a tuple output contributes its
            first element, as MONAI's ViT returns ``(logits, hidden_states)``). It is used in eval mode
            and never modified: no weight, gradient or mode change survives a call. When ``device``
            differs from where its parameters are, it is moved there.
        layers: names from ``classifier.named_modules()`` whose outputs are matched; ``None`` chooses
            them automatically (see :mod:`medcam_dicom.explain.features`).
        config: :class:`MedCAMConfig`; the defaults were chosen on the ground-truth benchmark.
        device: where to optimise; ``None`` = where the classifier's parameters are.
    """

    def __init__(
        self,
        classifier: nn.Module,
        layers: Sequence[str] | None = None,
        config: MedCAMConfig | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if not isinstance(classifier, nn.Module):
            raise ValueError(f"classifier must be a torch.nn.Module, got {type(classifier).__name__}")
        if layers is not None:
            if isinstance(layers, str):
                layers = [layers]
            layers = list(layers)
            if not layers:
                raise ValueError("layers must name at least one module, or be None for the default")
            known = dict(classifier.named_modules())
            for name in layers:
                if name not in known or not name:
                    FeatureRecorder(classifier, [name])  # raises the ValueError with suggestions
        self.classifier = classifier
        self.layer_names = layers
        self.config = config if config is not None else MedCAMConfig()
        self.device = resolve_device(classifier, device)
        if resolve_device(classifier, None) != self.device:
            classifier.to(self.device)
        self._layer_cache: dict[tuple[int, ...], list[MatchedLayer]] = {}

    # ------------------------------------------------------------------ helpers
    def matched_layers(self, image: torch.Tensor) -> list[MatchedLayer]:
        """The layers matched for an image of this shape (chosen once per shape and cached)."""
        key = tuple(image.shape)
        if key not in self._layer_cache:
            batch = image.unsqueeze(0).to(self.device)
            with evaluation_mode(self.classifier):
                if self.layer_names is None:
                    self._layer_cache[key] = default_layers(self.classifier, batch)
                else:
                    self._layer_cache[key] = describe_layers(self.classifier, batch, self.layer_names)
        return self._layer_cache[key]

    def baseline(self, image: torch.Tensor) -> torch.Tensor:
        """The configured baseline for a checked image ``(C, *spatial)`` on this explainer's device."""
        generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        return make_baseline(image, self.config.baseline, generator)

    def verify(self, image: torch.Tensor, mask: torch.Tensor, target: int) -> tuple[bool, float]:
        """Re-run the classifier on ``image`` ``(C, *spatial)`` hard-masked by the boolean ``mask`` with
        the configured baseline; returns ``(faithful, masked_probability)``."""
        image = as_image_tensor(image).to(self.device)
        return verify_mask(self.classifier, image, mask.to(self.device), target, self.baseline(image))

    # ------------------------------------------------------------------ public API
    def explain(
        self,
        image: torch.Tensor | np.ndarray,
        target: int | None = None,
        record_history: bool = False,
    ) -> Explanation:
        """Explain the classifier's decision on one preprocessed image ``(C, H, W)`` or ``(C, D, H, W)``.

        ``target`` defaults to the top-1 class on the full image. Raises ``ValueError`` for bad input
        (shape, NaN/inf, channels, logits, target, layer names).
        """
        return self._explain(image, target, record_history=record_history)

    def refine(
        self,
        image: torch.Tensor | np.ndarray,
        network: nn.Module,
        target: int | None = None,
        max_steps: int | None = None,
        min_steps: int | None = None,
        method: str = "medcam-refined",
    ) -> Explanation:
        """Continue the optimisation from a trained mask ``network`` (a warm start) instead of a fresh U-Net.

        ``network`` maps the padded image ``(1, C, *spatial)`` to mask logits ``(1, 1, *spatial)``; it is
        trained in place (pass a copy to keep the original). The usual stopping rule applies (see
        :meth:`_converged`) after ``min_steps`` (default: one convergence window), at most
        ``max_steps`` (default: ``config.max_steps``); the smallest faithful mask seen is kept when the
        last one is not faithful.
        """
        return self._explain(
            image, target, network=network, max_steps=max_steps, method=method,
            min_steps=self.config.convergence_window if min_steps is None else min_steps,
        )

    def _explain(
        self,
        image: torch.Tensor | np.ndarray,
        target: int | None,
        record_history: bool = False,
        network: nn.Module | None = None,
        max_steps: int | None = None,
        min_steps: int | None = None,
        method: str = "medcam",
    ) -> Explanation:
        started = time.perf_counter()
        image = as_image_tensor(image).to(self.device)
        check_channels(self.classifier, image)
        with evaluation_mode(self.classifier):
            layers = self.matched_layers(image)
            names = [layer.name for layer in layers]
            with FeatureRecorder(self.classifier, names) as recorder:
                with torch.no_grad():
                    full_logits = forward_logits(self.classifier, image.unsqueeze(0))
                    full_features = [recorder.outputs[name][:1].detach() for name in names]
                num_classes = full_logits.shape[1]
                checked = check_target(target, num_classes)
                target_index = int(full_logits.argmax(dim=1)) if checked is None else checked
                probability = float(torch.softmax(full_logits, dim=1)[0, target_index])
                channel_weights = None
                if self.config.activation_channels == "decision" and self.config.weights.act > 0:
                    with torch.enable_grad():  # the input requires grad: works with frozen classifiers too
                        logits = forward_logits(self.classifier, image.unsqueeze(0).clone().requires_grad_(True))
                        odds = losses.target_log_odds(logits, torch.tensor([target_index], device=self.device))
                        channel_weights = losses.decision_channel_weights(
                            [recorder.outputs[name] for name in names], odds.sum())  # as recorded: in the graph
                baseline = self.baseline(image)
                start = self._warm_start(image, target_index, baseline) if network is None else None
                mask, soft_mask, steps, history = self._optimise(
                    image, baseline, full_logits, full_features, layers, recorder, target_index, record_history,
                    network=network, start=start, max_steps=max_steps, min_steps=min_steps,
                    channel_weights=channel_weights,
                )
            if self.config.prune != "none":
                full_odds = float(losses.target_log_odds(full_logits, torch.tensor([target_index], device=self.device)))
                mask = prune_reranked(
                    self.classifier, image, baseline, mask, soft_mask, target_index, full_odds, self.config.prune,
                    self.config.pruning_ranking(amortized=False), self.config.prune_gradient_weight,
                    self.config.prune_rerank, self.config.prune_fractions, self.config.prune_image_fractions,
                    self.config.prune_refine, None if start is None else start.saliency,
                    self.config.prune_start_weight,
                )
                mask = drop_unneeded_parts(self.classifier, image, baseline, mask, target_index, full_odds,
                                           self.config.prune, self.config.prune_parts)
                mask = search_evidence(self.classifier, image, baseline, mask, target_index, full_odds,
                                       self.config.prune, self.config.prune_search,
                                       self.config.prune_search_reach,
                                       guide=None if start is None else start.saliency,
                                       guide_weight=self.config.prune_search_guide).to(self.device)
                if self.config.prune_complete > 0:
                    guide = None if start is None else start.saliency
                    scores = removal_scores(self.classifier, image, baseline, mask, target_index, guide,
                                            self.config.prune_complete_gradient)
                    mask = complete_evidence(self.classifier, image, baseline, mask, target_index, full_odds,
                                             self.config.prune, self.config.prune_complete,
                                             scores).to(self.device)
            faithful, masked_probability = verify_mask(self.classifier, image, mask, target_index, baseline)
        explanation = Explanation(
            mask=mask.cpu(),
            soft_mask=soft_mask.cpu(),
            target=target_index,
            probability=probability,
            masked_probability=masked_probability,
            faithful=faithful,
            area_fraction=float(mask.float().mean()),
            steps=steps,
            seconds=time.perf_counter() - started,
            method=method,
            history=history,
        )
        return attach_null_check(explanation, self.classifier, image, baseline, self.config)

    def explain_batch(
        self,
        images: torch.Tensor | Sequence[torch.Tensor],
        targets: Sequence[int | None] | None = None,
        progress: bool = False,
    ) -> list[Explanation]:
        """Explain each image of a batch ``(B, C, ...)`` or a sequence of images, one at a time."""
        if isinstance(images, torch.Tensor) and images.ndim not in (4, 5):
            raise ValueError(
                "explain_batch expects a batch (B, C, H, W) or (B, C, D, H, W), "
                f"got shape {tuple(images.shape)}"
            )
        items = list(images)
        if targets is not None and len(targets) != len(items):
            raise ValueError(f"got {len(targets)} targets for {len(items)} images")
        chosen = list(targets) if targets is not None else [None] * len(items)
        iterator = tqdm(range(len(items)), desc="Med-CAM", unit="image", disable=not progress)
        return [self.explain(items[i], chosen[i]) for i in iterator]

    # ------------------------------------------------------------------ optimisation
    def _fresh_network(self, spatial_dims: int, in_channels: int) -> nn.Module:
        """The per-image U-Net, initialised from the configured seed."""
        config = self.config
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(config.seed)
            return build_mask_network(
                spatial_dims,
                in_channels,
                config.unet_channels,
                config.unet_strides,
                config.unet_res_units,
                config.initial_keep_probability,
            ).to(self.device)

    def _warm_start(self, image: torch.Tensor, target_index: int, baseline: torch.Tensor) -> WarmStart | None:
        """The configured warm start (``config.warm_start``) for a fresh explanation, ``None`` without one."""
        config = self.config
        if config.warm_start == "none":
            return None
        return find_warm_start(self.classifier, image, baseline, target_index, config.warm_start,
                               config.warm_start_levels, config.warm_start_occlusion)

    def _start_network(
        self, image: torch.Tensor, network_input: torch.Tensor, start: WarmStart | None
    ) -> nn.Module:
        """The network a fresh explanation starts from: a U-Net whose logits on ``network_input`` (the
        padded image) are offset so that its hard mask starts exactly as the warm-start mask, or the plain
        "keep all" U-Net when there is no warm-start mask."""
        config = self.config
        spatial_dims, in_channels = image.ndim - 1, image.shape[0]
        if start is not None and start.mask is not None:
            network = self._fresh_network(spatial_dims, in_channels)
            prior = prior_logits(start.mask, *config.warm_start_logits)
            prior, _ = pad_to_multiple(prior, int(np.prod(config.unet_strides)))
            with torch.no_grad():
                initial = network(network_input)
            return PriorOffsetNetwork(network, prior - initial)
        return self._fresh_network(spatial_dims, in_channels)

    def _area_tolerance(self, area: float) -> float:
        """How much a hard-mask area fraction may move and still count as the same size."""
        return max(self.config.area_tolerance, self.config.area_relative_tolerance * area)

    def _preserved(
        self, masked_logits: torch.Tensor, target: torch.Tensor, full_odds: torch.Tensor, probability_full: float
    ) -> bool:
        """The evidence is at least as convincing as the full image: target log-odds >= the full
        image's, or the probability short of it by at most ``preserve_tolerance``."""
        if bool(losses.target_log_odds(masked_logits, target) >= full_odds):
            return True
        tolerance = self.config.preserve_tolerance
        probability = float(torch.softmax(masked_logits.detach(), dim=1).gather(1, target[:, None]))
        return tolerance > 0 and probability >= probability_full - tolerance

    def _converged(self, areas: deque[float], soft: torch.Tensor) -> bool:
        """The stopping rule (applied to a faithful mask after ``min_steps``): the hard-mask area was
        stable over the last ``convergence_window`` steps, is below ``max_converged_area``, and (when
        ``decided_tolerance`` is set) the soft mask is decided."""
        config = self.config
        if len(areas) < config.convergence_window or areas[-1] > config.max_converged_area:
            return False
        if max(areas) - min(areas) > self._area_tolerance(sum(areas) / len(areas)):
            return False
        if config.decided_tolerance is not None:
            return (soft * (1.0 - soft)).mean().item() < config.decided_tolerance
        return True

    def _optimise(
        self,
        image: torch.Tensor,
        baseline: torch.Tensor,
        full_logits: torch.Tensor,
        full_features: list[torch.Tensor],
        layers: list[MatchedLayer],
        recorder: FeatureRecorder,
        target_index: int,
        record_history: bool,
        network: nn.Module | None = None,
        start: WarmStart | None = None,
        max_steps: int | None = None,
        min_steps: int | None = None,
        channel_weights: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, int, list[dict[str, float]]]:
        config = self.config
        max_steps = config.max_steps if max_steps is None else max_steps
        min_steps = config.min_steps if min_steps is None else min(min_steps, max_steps)
        weights = config.weights
        generator = torch.Generator(device=self.device).manual_seed(config.seed + 1)
        baseline = baseline.unsqueeze(0)  # (1, C, *spatial): broadcast over the loss's batch
        multiple = int(np.prod(config.unet_strides))
        network_input, spatial = pad_to_multiple(image.unsqueeze(0), multiple)
        if network is None:
            network = self._start_network(image, network_input, start)
        parameters = list(network.parameters())
        learning_rate = config.learning_rate
        optimiser = torch.optim.Adam(parameters, lr=learning_rate)
        last_faithful_state = [p.detach().clone() for p in parameters]
        unfaithful_run = 0
        seen_faithful = False  # a warm start may begin unfaithful: nothing to return to until it is not
        x = image.unsqueeze(0)
        target = torch.tensor([target_index], device=self.device)
        full_odds = losses.target_log_odds(full_logits, target)
        probability_full = float(torch.softmax(full_logits, dim=1)[0, target_index])
        layer_weights = list(config.layer_weights or default_layer_weights(len(layers)))
        if len(layer_weights) != len(layers):
            raise ValueError(
                f"MedCAMConfig.layer_weights has {len(layer_weights)} entries for {len(layers)} matched layers"
            )
        use_robustness = weights.rob > 0 and len(config.robustness_backgrounds) > 0
        names = [layer.name for layer in layers]

        areas: deque[float] = deque(maxlen=config.convergence_window)
        history: list[dict[str, float]] = []
        best: tuple[float, torch.Tensor, torch.Tensor] | None = None  # smallest faithful mask
        best_preserved: tuple[float, torch.Tensor, torch.Tensor] | None = None  # ... also preserved
        last_shrink = 0
        tracking_stall = config.stall_window is not None
        converged = False
        step = 0
        hard = soft = None
        for step in range(max_steps + 1):
            logits_now = coarse_logits(crop_to_shape(network(network_input), spatial), config.mask_grid)
            soft = mask_probabilities(logits_now)  # (1, 1, *spatial)
            mask = straight_through_mask(soft, config.threshold)
            hard = mask.detach() > 0.5
            inputs = [mask * x + (1.0 - mask) * baseline]
            if use_robustness:
                backgrounds = robustness_backgrounds(image, config.robustness_backgrounds, generator)
                inputs.append(mask * x + (1.0 - mask) * backgrounds)
            if weights.deletion > 0:
                inputs.append((1.0 - mask) * x + mask * baseline)  # the evidence removed
            logits = forward_logits(self.classifier, torch.cat(inputs))
            masked_logits = logits[:1]
            rows_robustness = slice(1, logits.shape[0] - (1 if weights.deletion > 0 else 0))
            faithful_now = int(masked_logits.argmax(dim=1)) == target_index
            area_now = float(hard.float().mean())
            areas.append(area_now)
            if faithful_now and (best is None or area_now < best[0]) and step >= min_steps:
                best = (area_now, hard[0, 0].clone(), soft.detach()[0, 0].clone())
            preserved = faithful_now and step >= min_steps and (
                not config.require_preserved
                or self._preserved(masked_logits, target, full_odds, probability_full)
            )
            # an empty mask that keeps the decision is the smallest there is: once stable it stops like a
            # preserved one, even when the blurred image alone convinces a little less than the full image
            # (a "normal" decision read from everywhere) instead of pushing against it until max_steps
            settled_empty = faithful_now and step >= min_steps and area_now == 0.0
            if (preserved or settled_empty) and self._converged(areas, soft):
                converged = True
                break
            if tracking_stall and preserved and (best_preserved is None or area_now < best_preserved[0]):
                if best_preserved is None or area_now < best_preserved[0] - self._area_tolerance(best_preserved[0]):
                    last_shrink = step
                best_preserved = (area_now, hard[0, 0].clone(), soft.detach()[0, 0].clone())
            if tracking_stall and best_preserved is not None and step - last_shrink >= config.stall_window:
                # jittering around a size it no longer shrinks below: the smallest preserved mask
                _, stalled_hard, stalled_soft = best_preserved
                hard, soft = stalled_hard[None, None], stalled_soft[None, None]
                converged = True
                break
            if step == max_steps:
                break
            if faithful_now:
                unfaithful_run = 0
                seen_faithful = True
                for saved, parameter in zip(last_faithful_state, parameters):
                    saved.copy_(parameter.detach())
            else:
                unfaithful_run += 1
            if unfaithful_run >= config.backtrack_patience and seen_faithful:
                # the mask shrank past the decision boundary and is not coming back: return to the
                # last faithful state and continue more gently
                with torch.no_grad():
                    for saved, parameter in zip(last_faithful_state, parameters):
                        parameter.copy_(saved)
                learning_rate *= 0.5
                optimiser = torch.optim.Adam(parameters, lr=learning_rate)
                unfaithful_run = 0
                areas.clear()
                continue

            loss, terms = losses.medcam_loss(
                config,
                full_logits=full_logits,
                masked_logits=masked_logits,
                targets=target,
                full_features=full_features,
                masked_features=[recorder.outputs[name][:1] for name in names] if weights.act > 0 else [],
                layer_weights=layer_weights,
                soft_mask=soft,
                tv_mask=soft,
                robustness_logits=logits[rows_robustness] if use_robustness else None,
                removed_logits=logits[-1:] if weights.deletion > 0 else None,
                channel_weights=channel_weights,
            )
            optimiser.zero_grad(set_to_none=True)
            # autograd.grad (not backward): no gradient ever reaches the classifier's parameters
            gradients = torch.autograd.grad(loss, parameters)
            for parameter, gradient in zip(parameters, gradients):
                parameter.grad = gradient
            optimiser.step()
            if record_history:
                row = {name: value.item() for name, value in terms.items()}
                row.update(step=step, loss=loss.item(), hard_area=area_now, faithful=float(faithful_now))
                history.append(row)

        assert hard is not None and soft is not None
        chosen_mask, chosen_soft = hard[0, 0], soft.detach()[0, 0]
        if not converged and best is not None and not faithful_now:
            _, chosen_mask, chosen_soft = best
        return chosen_mask, chosen_soft.float(), step, history
