"""Amortised Med-CAM: one mask network trained over a dataset with the per-image Med-CAM loss (averaged
over images), so that explaining a new image costs one forward pass. Every mask is verified by
re-running the classifier on the hard-masked image; a mask that fails can be refined per image from the
amortised network as a warm start (:meth:`MedCAM.refine`).

The network (:class:`~medcam_dicom.explain.amortized_network.FeatureMaskDecoder`) has one output channel
per class, so any class can be explained; it is trained on the classifier's top-1 decisions, the ones the
DICOM path explains. The network, the training loop (:mod:`medcam_dicom.explain.amortized_training`) and
the training-data adapters (:mod:`medcam_dicom.explain.batches`) live in their own modules; this one
holds the explainer: building, prediction, evaluation, explanation with refinement, persistence.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from medcam_dicom.checkpoints import load_checkpoint, save_checkpoint
from medcam_dicom.explain.amortized_network import ClassMaskNetwork, FeatureMaskDecoder
from medcam_dicom.explain.amortized_training import train_amortized
from medcam_dicom.explain.batches import as_batch
from medcam_dicom.explain.completion import complete_evidence, removal_scores
from medcam_dicom.explain.config import PRUNE_CRITERIA, MedCAMConfig
from medcam_dicom.explain.explanation import Explanation
from medcam_dicom.explain.features import FeatureRecorder, spatial_stage_layers
from medcam_dicom.explain.local_search import search_evidence
from medcam_dicom.explain.losses import target_log_odds
from medcam_dicom.explain.mask_network import (
    mask_probabilities,
)
from medcam_dicom.explain.medcam import MedCAM
from medcam_dicom.explain.null_check import attach_null_check
from medcam_dicom.explain.pruning import drop_unneeded_parts, prune_reranked
from medcam_dicom.explain.validation import as_image_tensor, check_channels, check_target
from medcam_dicom.explain.verification import evaluation_mode, forward_logits, verify_mask
from medcam_dicom.explain.warm_start import smallest_faithful_level, top_fraction_masks

CHECKPOINT_FORMAT = "medcam-dicom-amortized/1"
AUTO = "auto"
#: area fractions tried (in one batched forward) when an amortised mask is not faithful
REFINE_AREAS = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)


def evidence_iou(masks: torch.Tensor, evidence: torch.Tensor) -> torch.Tensor:
    """IoU per image of binary masks ``(B, ...)`` with ground-truth evidence of the same number of
    voxels per image (any shape), NaN where the evidence is empty (an image without ground truth)."""
    predicted = masks.reshape(len(masks), -1).bool()
    truth = evidence.reshape(len(masks), -1).bool().to(predicted.device)
    intersection = (predicted & truth).sum(1).float()
    union = (predicted | truth).sum(1).float()
    iou = intersection / union.clamp(min=1)
    return torch.where(truth.any(1), iou, torch.full_like(iou, math.nan))


class AmortizedMedCAM:
    """Med-CAM trained once per classifier and dataset; explains a new image in one forward pass.

    Args:
        classifier: the ``torch.nn.Module`` to explain (logits ``(B, K)``), used in eval mode and never
            modified.
        layers: matched layer names, as for :class:`MedCAM` (``None`` = the documented default). Their
            spatial feature maps also feed the explainer network (:class:`FeatureMaskDecoder`); when
            they are all tokens (a transformer), the stem or patch projection the tokens are made of does.
        config: :class:`MedCAMConfig`: the loss (its weights, baseline and robustness backgrounds; the
            loss function is per-image Med-CAM's); ``min_steps`` sets the polishing steps of
            ``refine_steps="auto"`` and the refinement uses its learning rate and stopping rule. ``None`` =
            :meth:`MedCAMConfig.amortized`: the defaults without the activation-matching term.
        device: where to train and explain; ``None`` = where the classifier's parameters are.
        width: channels of the decoder.
        coarseness: the mask is predicted at ``1/coarseness`` of the image resolution and interpolated.
    """

    def __init__(
        self,
        classifier: nn.Module,
        layers: Sequence[str] | None = None,
        config: MedCAMConfig | None = None,
        device: str | torch.device | None = None,
        width: int = 32,
        coarseness: int = 4,
    ) -> None:
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if coarseness < 1:
            raise ValueError(f"coarseness must be >= 1, got {coarseness}")
        config = config if config is not None else MedCAMConfig.amortized()
        if config.activation_channels != "all" and config.weights.act > 0:
            raise ValueError("MedCAMConfig.activation_channels='decision' is per-image Med-CAM's; the amortised "
                             "explainer's training matches every channel (or none: weights.act=0, its default)")
        self.medcam = MedCAM(classifier, layers=layers, config=config, device=device)
        self.classifier = classifier
        self.config = self.medcam.config
        self.device = self.medcam.device
        self.width = int(width)
        self.coarseness = int(coarseness)
        self.network: FeatureMaskDecoder | None = None
        self.spatial_dims: int | None = None
        self.in_channels: int | None = None
        self.num_classes: int | None = None
        self.feature_layers: list[str] = []
        self.history: list[dict[str, Any]] = []
        self.metadata: dict[str, Any] = {}

    # ------------------------------------------------------------------ network
    def _build(self, spatial_dims: int, in_channels: int, num_classes: int,
               feature_layers: list[str], feature_channels: list[int]) -> None:
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.config.seed)
            self.network = FeatureMaskDecoder(
                spatial_dims, in_channels, feature_channels, num_classes, self.width, self.coarseness,
                self.config.initial_keep_probability,
            ).to(self.device)
        self.spatial_dims, self.in_channels, self.num_classes = spatial_dims, in_channels, num_classes
        self.feature_layers = list(feature_layers)

    def build(self, image: torch.Tensor) -> AmortizedMedCAM:
        """Build the (untrained) decoder for preprocessed images like ``image`` ``(C, *spatial)``, so that
        an optimiser can be given its parameters before training (MONAI configs build the optimiser
        first); :meth:`fit` builds it itself. Returns ``self``."""
        image = as_image_tensor(image).to(self.device)
        check_channels(self.classifier, image)
        if self.network is None:
            self._build_for(image)
        self._require_network(image)
        return self

    def _build_for(self, image: torch.Tensor) -> None:
        """Build the decoder for images like ``image`` ``(C, *spatial)``: probe the classifier once for
        its class count and the channels of the feature maps the decoder reads: the spatial matched
        layers of a CNN; for a transformer (tokens matched), its spatial stages - the patch projection or
        convolutional stem its tokens are made of."""
        layers = self.medcam.matched_layers(image)
        names = [layer.name for layer in layers if layer.kind == "spatial"]
        if not names:
            names = spatial_stage_layers(self.classifier, image.unsqueeze(0))
        with evaluation_mode(self.classifier), FeatureRecorder(self.classifier, names) as recorder:
            with torch.no_grad():
                logits = forward_logits(self.classifier, image.unsqueeze(0))
            channels = [int(recorder.outputs[name].shape[1]) for name in names]
        self._build(image.ndim - 1, image.shape[0], int(logits.shape[1]), names, channels)

    def _require_network(self, image: torch.Tensor) -> FeatureMaskDecoder:
        if self.network is None:
            raise ValueError("this AmortizedMedCAM is not trained: call fit() or AmortizedMedCAM.load() first")
        spatial_dims, channels = image.ndim - 1, image.shape[0]
        if spatial_dims != self.spatial_dims or channels != self.in_channels:
            raise ValueError(
                f"the amortised explainer was trained on {self.spatial_dims}D images with {self.in_channels} "
                f"channel(s), got an image of shape {tuple(image.shape)}"
            )
        return self.network

    def _classify(self, batch: torch.Tensor, names: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits of a batch and the outputs of the named layers, without gradients."""
        with evaluation_mode(self.classifier), FeatureRecorder(self.classifier, names) as recorder:
            with torch.no_grad():
                logits = forward_logits(self.classifier, batch)
            return logits, {name: value.detach() for name, value in recorder.outputs.items()}

    def _mask_logits(self, batch: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Mask logits ``(B, K, *spatial)`` of every class for a batch in the classifier's input space."""
        assert self.network is not None
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            return self.network(batch, features).float()

    def _baselines(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.medcam.baseline(image) for image in batch])

    # ------------------------------------------------------------------ training
    def fit(
        self,
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
        """Train the amortised explainer network with the Med-CAM loss averaged over images.

        Args:
            images: preprocessed training images: a batch ``(N, C, *spatial)``, a sequence of
                ``(C, *spatial)`` images, or an iterable of batches (a ``DataLoader`` yielding tensors,
                ``{"image": ...}`` dicts or ``(image, ...)`` tuples; it must have a ``len()``), read once
                per epoch.
            epochs: passes over ``images``.
            val: validation images, or ``(images, evidence_masks)``: boolean ground-truth masks
                ``(N, *spatial)``; images whose mask is not empty count in the IoU.
            batch_size: images per step when ``images`` is a tensor or sequence.
            learning_rate: peak Adam learning rate (one-cycle schedule).
            checkpoint: file saved (atomically) after every epoch.
            keep_best: with ``val``, end with the weights of the best validation epoch: the highest IoU
                (without ground truth: the smallest area) among epochs that keep the decision on at least
                98 % of the validation images (else the most faithful epoch).
            progress: tqdm bars per epoch and a line of validation figures.
            core_weight: weight of the core term (0 = off, the Med-CAM loss alone): the mask's core, its
                voxels above the threshold by a random margin of 0-6 in logits, must also keep the decision
                and reach the full image's log-odds, so that the explainer's ranking is the one pruning
                needs (:func:`~medcam_dicom.explain.amortized_training.core_loss`).

        Returns:
            The per-epoch history: training loss and, with ``val``, validation figures
            (``faithful_pct``, ``area_fraction``, ``iou``), also kept in :attr:`history`.
        """
        return train_amortized(
            self, images, epochs=epochs, val=val, batch_size=batch_size, learning_rate=learning_rate,
            checkpoint=checkpoint, keep_best=keep_best, progress=progress, core_weight=core_weight,
        )

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(
        self, images: torch.Tensor, targets: Sequence[int | None] | None = None
    ) -> dict[str, torch.Tensor]:
        """Unverified masks for a batch ``(B, C, *spatial)`` from one forward pass of the classifier and of
        the decoder: ``target``, ``probability``, ``mask`` (bool), ``soft_mask``, ``logits`` (the decoder's,
        of the target) per image, the classifier's ``class_logits`` ``(B, K)`` and the decoder's input
        ``features`` (a list, one batch tensor per layer)."""
        batch = as_batch(images).to(self.device)
        self._require_network(batch[0]).eval()
        logits, recorded = self._classify(batch, self.feature_layers)
        features = [recorded[name] for name in self.feature_layers]
        chosen = logits.argmax(dim=1)
        if targets is not None:
            for index, target in enumerate(targets):
                checked = check_target(target, logits.shape[1])
                if checked is not None:
                    chosen[index] = checked
        probabilities = torch.softmax(logits.float(), dim=1).gather(1, chosen[:, None])[:, 0]
        logits_all = self._mask_logits(batch, features)
        chosen_logits = logits_all[torch.arange(len(chosen), device=chosen.device), chosen]
        soft = mask_probabilities(chosen_logits)
        return {"target": chosen, "probability": probabilities, "mask": soft > self.config.threshold,
                "soft_mask": soft, "logits": chosen_logits, "class_logits": logits, "features": features}

    @torch.no_grad()
    def verify_batch(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`predict` for a batch plus the verification of every mask in one more classifier pass:
        adds ``faithful`` (the hard-masked image keeps the decision) and ``masked_probability`` per image.
        No refinement and no null check: the cheap figures validation needs."""
        batch = as_batch(images).to(self.device)
        predicted = self.predict(batch)
        keep = predicted["mask"].unsqueeze(1).to(batch.dtype)
        evidence_inputs = keep * batch + (1.0 - keep) * self._baselines(batch)
        with evaluation_mode(self.classifier):
            logits = forward_logits(self.classifier, evidence_inputs).float()
        target = predicted["target"]
        predicted["faithful"] = logits.argmax(dim=1) == target
        predicted["masked_probability"] = torch.softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
        return predicted

    @torch.no_grad()
    def evaluate(
        self, images: torch.Tensor, evidence: torch.Tensor | None = None, batch_size: int = 32
    ) -> dict[str, float]:
        """Validation figures without refinement: ``faithful_pct`` (decision kept by the hard mask,
        verified by re-running the classifier), mean ``area_fraction`` and, with ground-truth
        ``evidence`` masks, mean ``iou`` over the images whose evidence is not empty."""
        images = as_batch(images)
        faithful, areas, ious = [], [], []
        for start in range(0, len(images), batch_size):
            predicted = self.verify_batch(images[start : start + batch_size])
            faithful.extend(predicted["faithful"].tolist())
            areas.extend(predicted["mask"].flatten(1).float().mean(1).tolist())
            if evidence is not None:
                truth = evidence[start : start + batch_size].to(self.device)
                ious.extend(v for v in evidence_iou(predicted["mask"], truth).tolist() if not math.isnan(v))
        figures = {"faithful_pct": 100.0 * float(np.mean(faithful)), "area_fraction": float(np.mean(areas))}
        if ious:
            figures["iou"] = float(np.mean(ious))
        return figures

    def explain(
        self,
        image: torch.Tensor | np.ndarray,
        target: int | None = None,
        refine_steps: int | str = 0,
        prune: str = "none",
    ) -> Explanation:
        """Explain one preprocessed image ``(C, *spatial)``: one forward pass of the classifier and the
        decoder, then the verification re-run of the classifier on the hard-masked image.

        ``refine_steps``: what to do when the mask is not faithful: 0 = nothing (the explanation says
        ``faithful=False``), a number of steps, or ``"auto"`` = the level search and ``config.min_steps``
        polishing steps (measured: polishing to full convergence cost per-image time for a few points of
        IoU on the rare refined images). Refinement keeps the amortised ranking of
        pixels: (1) one batched re-run of the classifier on the masks that keep the top 2, 5, 10, 20, 35,
        50, 75 and 100 % of the decoder's logits picks the smallest faithful one (the whole image always
        keeps a top-1 decision); (2) per-image Med-CAM continues from the decoder, shifted so that its
        binary mask starts as that level, for up to ``refine_steps - 1`` steps, and its result is taken
        when it is faithful and not larger. ``Explanation.steps`` counts the level search as one step;
        ``method`` is ``"amortized"`` or ``"amortized+refine"``.

        ``prune``: what is done with a faithful mask, as :attr:`MedCAMConfig.prune` does for per-image
        Med-CAM: ``"none"`` (default) = kept as it is; ``"decision"`` / ``"preserved"`` = the smallest
        level of it along the explainer's ranking (by default the decoder's logits - or the refined soft
        mask - blended with the classifier's gradient, see :attr:`MedCAMConfig.prune_ranking`) that keeps
        the decision / is also as convincing as the full image
        (:func:`~medcam_dicom.explain.pruning.prune_mask`; one batched classifier pass of 12 masks, and
        one of ``config.prune_refine`` finer levels below the chosen one), then again along the ranking
        taken at the pruned mask while that shrinks it (``config.prune_rerank`` rounds at most);
        ``"sufficient"`` = as ``"preserved"``, and a mask none of whose levels is as convincing as the full
        image (an empty one too) grows along the same ranking over ``config.prune_image_fractions`` of the
        image until it is (a second batch; the whole image ends it): the masked probability is then never
        below the full image's.
        Measured on the 3D demo classifier: the amortised mask is 2-3 times the finding's size and the
        decision-pruned one lies on it (docs/benchmark.md, "3D").
        """
        if prune not in PRUNE_CRITERIA:
            raise ValueError(f"prune must be one of {PRUNE_CRITERIA}, got {prune!r}")
        started = time.perf_counter()
        if refine_steps == AUTO:
            budget = 1 + self.config.min_steps
        elif isinstance(refine_steps, int) and not isinstance(refine_steps, bool) and refine_steps >= 0:
            budget = refine_steps
        else:
            raise ValueError(f"refine_steps must be a non-negative int or 'auto', got {refine_steps!r}")
        image = as_image_tensor(image).to(self.device)
        check_channels(self.classifier, image)
        predicted = self.predict(image.unsqueeze(0), [target])
        target_index = int(predicted["target"][0])
        mask, soft = predicted["mask"][0], predicted["soft_mask"][0]
        baseline = self.medcam.baseline(image)  # computed once: the check and the refinement share it
        faithful, masked_probability = verify_mask(self.classifier, image, mask, target_index, baseline)
        if not faithful and budget > 0:
            result = self._refine(image, baseline, predicted, target_index, budget, started)
        else:
            result = Explanation(
                mask=mask.cpu(),
                soft_mask=soft.float().cpu(),
                target=target_index,
                probability=float(predicted["probability"][0]),
                masked_probability=masked_probability,
                faithful=faithful,
                area_fraction=float(mask.float().mean()),
                steps=0,
                seconds=time.perf_counter() - started,
                method="amortized",
            )
        if prune != "none" and result.faithful:
            if torch.equal(result.soft_mask, predicted["soft_mask"][0].float().cpu()):
                own = predicted["logits"][0]  # the decoder's logits rank without the sigmoid's saturated ties
            else:
                own = result.soft_mask  # a refined mask has its own ranking
            full_odds = float(target_log_odds(predicted["class_logits"][:1].float(),
                                              torch.tensor([target_index], device=self.device))[0])
            self._prune(result, image, baseline, own, full_odds, prune)
            result.seconds = time.perf_counter() - started
        if result.random_keep is None:  # a refinement through MedCAM has run it already
            attach_null_check(result, self.classifier, image, baseline, self.config)
        return result

    def _prune(
        self, result: Explanation, image: torch.Tensor, baseline: torch.Tensor, own: torch.Tensor,
        full_odds: float, criterion: str,
    ) -> None:
        """Replace ``result``'s faithful mask by its smallest level passing ``criterion`` along the
        config's ranking (``own``: the decoder's logits or the refined soft mask; ``full_odds``: the full
        image's target log-odds; :func:`~medcam_dicom.explain.pruning.prune_reranked`), less the parts it
        does not need (:func:`~medcam_dicom.explain.pruning.drop_unneeded_parts`) and after the evidence search
        (:func:`~medcam_dicom.explain.local_search.search_evidence`, ``prune_search`` rounds), and its figures by
        the pruned mask's: area, masked probability, null check redone."""
        pruned = prune_reranked(
            self.classifier, image, baseline, result.mask.to(self.device), own, result.target, full_odds,
            criterion, self.config.pruning_ranking(amortized=True), self.config.prune_gradient_weight,
            self.config.prune_rerank, image_fractions=self.config.prune_image_fractions,
            refine=self.config.prune_refine,
        )
        pruned = drop_unneeded_parts(self.classifier, image, baseline, pruned, result.target, full_odds, criterion,
                                     self.config.prune_parts)
        pruned = search_evidence(self.classifier, image, baseline, pruned, result.target, full_odds, criterion,
                                 self.config.prune_search, self.config.prune_search_reach, guide=own,
                                 guide_weight=self.config.prune_search_guide)
        if self.config.prune_complete > 0:
            scores = removal_scores(self.classifier, image, baseline, pruned, result.target, own,
                                    self.config.prune_complete_gradient)
            pruned = complete_evidence(self.classifier, image, baseline, pruned, result.target, full_odds,
                                       criterion, self.config.prune_complete, scores)
        if torch.equal(pruned, result.mask.bool().cpu()):
            return
        faithful, masked_probability = verify_mask(self.classifier, image, pruned, result.target, baseline)
        if not faithful:  # cannot happen with a deterministic classifier; never trade faithfulness for size
            return
        result.mask = pruned
        result.masked_probability = masked_probability
        result.area_fraction = float(pruned.float().mean())
        result.random_keep = result.specific = None

    def _refine(
        self, image: torch.Tensor, baseline: torch.Tensor, predicted: dict[str, Any], target: int, budget: int,
        started: float,
    ) -> Explanation:
        """Level search over the decoder's logits, then per-image Med-CAM from the shifted decoder."""
        masks, thresholds = top_fraction_masks(predicted["logits"][0], REFINE_AREAS)
        found, probabilities = smallest_faithful_level(self.classifier, image, baseline, masks, target)
        if found is None:  # only when target is not the top-1 class: nothing keeps it
            level, faithful = len(REFINE_AREAS) - 1, False
        else:
            level, faithful = found, True
        result = Explanation(
            mask=masks[level].cpu(),
            soft_mask=predicted["soft_mask"][0].float().cpu(),
            target=target,
            probability=float(predicted["probability"][0]),
            masked_probability=float(probabilities[level]),
            faithful=faithful,
            area_fraction=float(masks[level].float().mean()),
            steps=1,
            seconds=0.0,
            method="amortized+refine",
        )
        if faithful and budget > 1:
            assert self.network is not None
            features = [feature[:1] for feature in predicted["features"]]
            # shift the decoder so that its binary mask starts as the chosen level (logit > 0 <=> kept)
            shift = float(thresholds[level]) - 1e-4 * (1.0 + abs(float(thresholds[level])))
            warm_start = ClassMaskNetwork(copy.deepcopy(self.network).eval(), features, target, shift)
            refined = self.medcam.refine(image, warm_start, target, max_steps=budget - 1,
                                         method="amortized+refine")
            if refined.faithful and refined.area_fraction <= result.area_fraction:
                refined.steps += 1
                result = refined
            else:
                result.steps += refined.steps
        result.seconds = time.perf_counter() - started
        return result

    def explain_batch(
        self,
        images: torch.Tensor | Sequence[torch.Tensor],
        targets: Sequence[int | None] | None = None,
        refine_steps: int | str = 0,
        progress: bool = False,
        prune: str = "none",
    ) -> list[Explanation]:
        """:meth:`explain` for each image of a batch ``(B, C, ...)`` or a sequence of images."""
        items = list(as_batch(images))
        if targets is not None and len(targets) != len(items):
            raise ValueError(f"got {len(targets)} targets for {len(items)} images")
        chosen = list(targets) if targets is not None else [None] * len(items)
        iterator = tqdm(range(len(items)), desc="amortised Med-CAM", unit="image", disable=not progress)
        return [self.explain(items[i], chosen[i], refine_steps, prune) for i in iterator]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the trained decoder (float32: it is small), its shape, the config and the training history
        to one file (atomically: a temporary file renamed over ``path``)."""
        save_checkpoint(self.state_dict(), path)

    def state_dict(self) -> dict[str, Any]:
        """What :meth:`save` writes: the decoder's weights with everything needed to rebuild it. MONAI's
        ``CheckpointSaver(save_dict={"explainer": explainer})`` writes exactly this (one object is saved
        as its state dict), so its files load with :meth:`load`."""
        if self.network is None:
            raise ValueError("nothing to save: the amortised explainer is not trained")
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "layers": self.medcam.layer_names,
            "spatial_dims": self.spatial_dims,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "width": self.width,
            "coarseness": self.coarseness,
            "feature_layers": self.feature_layers,
            "feature_channels": [lateral.conv.in_channels for lateral in self.network.laterals],
            "history": self.history,
            "metadata": self.metadata,
            "state_dict": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
        }

    def load_state_dict(self, payload: dict[str, Any]) -> None:
        """Restore the decoder's weights from a :meth:`state_dict` of an explainer of the same shape
        (what ignite's ``Checkpoint.load_objects`` calls)."""
        if self.network is None:
            raise ValueError("build() or load() the explainer before loading weights into it")
        self.network.load_state_dict(payload["state_dict"])
        self.history = list(payload.get("history", []))

    @classmethod
    def load(
        cls,
        path: str | Path,
        classifier: nn.Module,
        device: str | torch.device | None = None,
        config: MedCAMConfig | None = None,
    ) -> AmortizedMedCAM:
        """Load a file written by :meth:`save` for ``classifier``; ``config`` overrides the saved one (the
        network's shape always comes from the file). Without ``config``, the saved config is used with
        today's defaults for the options that act on a finished mask (pruning, null check:
        :meth:`MedCAMConfig.explain_time_defaults`), so that an explainer trained before a pruning default
        changed prunes as today's do. Raises ``ValueError`` naming the file when it is not an amortised
        explainer or does not fit the classifier."""
        payload = load_checkpoint(path, CHECKPOINT_FORMAT, "amortised explainer")
        explainer = cls(
            classifier,
            layers=payload["layers"],
            config=config or MedCAMConfig.from_dict(payload["config"]).explain_time_defaults(),
            device=device,
            width=payload["width"],
            coarseness=payload["coarseness"],
        )
        explainer._build(payload["spatial_dims"], payload["in_channels"], payload["num_classes"],
                         payload["feature_layers"], payload["feature_channels"])
        assert explainer.network is not None
        try:
            explainer.network.load_state_dict(payload["state_dict"])
        except RuntimeError as error:
            raise ValueError(f"{path}: the saved explainer network does not load: {error}") from error
        probe = torch.zeros((1, payload["in_channels"]) + (16,) * payload["spatial_dims"], device=explainer.device)
        with evaluation_mode(classifier), torch.no_grad():
            try:
                classes = forward_logits(classifier, probe).shape[1]
            except ValueError:
                classes = payload["num_classes"]  # the classifier needs a fixed size: checked at explain()
        if classes != payload["num_classes"]:
            raise ValueError(
                f"{path} explains a classifier with {payload['num_classes']} classes, "
                f"this classifier has {classes}"
            )
        explainer.history = list(payload.get("history", []))
        explainer.metadata = dict(payload.get("metadata", {}))
        return explainer
