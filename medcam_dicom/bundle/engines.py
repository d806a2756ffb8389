"""MONAI engines for the amortised explainer: :class:`MedCAMTrainer` (one Med-CAM loss step per batch) and
:class:`MedCAMEvaluator` (masks, their verification and per-image figures per batch), so that the bundle's
configs train and run the explainer with MONAI's data loaders, handlers, metrics and post-transforms like
any MONAI workflow (``SupervisedTrainer`` / ``SupervisedEvaluator`` are the models).

Both read batches ``{"image": (B, C, *spatial), ...}`` of preprocessed images in the classifier's input
space; the classifier is never trained (gradients go to the explainer's decoder only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.engines import Evaluator, Trainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn, default_prepare_batch

from medcam_dicom.explain.amortized import AmortizedMedCAM, evidence_iou
from medcam_dicom.explain.amortized_training import optimisation_step, training_step
from medcam_dicom.explain.batches import images_of

#: per-image figures :class:`MedCAMEvaluator` puts into ``engine.state.output`` (besides image/pred/evidence)
FIGURES = ("target", "probability", "masked_probability", "faithful", "area_fraction", "steps", "seconds",
           "random_keep", "iou", "method")


class MedCAMTrainer(Trainer):
    """Train an :class:`AmortizedMedCAM`'s decoder with the Med-CAM loss, one optimiser step per batch.

    Args:
        device: where the explainer and classifier run.
        max_epochs: passes over ``train_data_loader``.
        train_data_loader: batches ``{"image": ...}`` (or tensors / ``(image, ...)`` tuples).
        explainer: the explainer to train; build its decoder first (:meth:`AmortizedMedCAM.build`) so that
            ``optimizer`` can hold its parameters.
        optimizer: over ``explainer.network.parameters()``.
        train_handlers: MONAI/ignite handlers (``StatsHandler``, ``LrScheduleHandler``,
            ``ValidationHandler``, ...).
        Others: as for :class:`monai.engines.Trainer`.

    ``engine.state.output`` per iteration: ``{"loss": tensor, "faithful": share of the batch whose hard
    mask kept the decision}``.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        explainer: AmortizedMedCAM,
        optimizer: torch.optim.Optimizer,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = default_prepare_batch,
        iteration_update: Callable | None = None,
        postprocessing: Callable | None = None,
        key_train_metric: dict | None = None,
        additional_metrics: dict | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        decollate: bool = False,
    ) -> None:
        super().__init__(
            device=device, max_epochs=max_epochs, data_loader=train_data_loader, epoch_length=epoch_length,
            non_blocking=non_blocking, prepare_batch=prepare_batch, iteration_update=iteration_update,
            postprocessing=postprocessing, key_metric=key_train_metric, additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn, handlers=train_handlers, decollate=decollate,
        )
        if explainer.network is None:
            raise ValueError("MedCAMTrainer: build the explainer's decoder first (AmortizedMedCAM.build(image))")
        self.explainer = explainer
        self.optimizer = optimizer
        self._layers: list[Any] | None = None
        self._generator = torch.Generator(device=explainer.device).manual_seed(explainer.config.seed + 1)

    def _iteration(self, engine: MedCAMTrainer, batchdata: Any) -> dict[str, torch.Tensor]:
        images = images_of(batchdata).float().to(self.explainer.device, non_blocking=self.non_blocking)
        network = self.explainer._require_network(images[0])
        if self._layers is None:
            self._layers = self.explainer.medcam.matched_layers(images[0])
        network.train()
        loss, faithful = training_step(self.explainer, images, self._layers, self._generator)
        optimisation_step(loss, self.optimizer)
        network.eval()
        engine.state.output = {"loss": loss.detach(), "faithful": torch.tensor(faithful)}
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output


class MedCAMEvaluator(Evaluator):
    """Explain every batch with an :class:`AmortizedMedCAM` and verify each mask.

    Args:
        device: where the explainer and classifier run.
        val_data_loader: batches ``{"image": ..., "evidence": optional ground-truth mask}``.
        explainer: a trained explainer.
        refine: refinement of unfaithful masks by :meth:`AmortizedMedCAM.explain` (``"auto"``, a number
            of steps, or 0), which also runs the null check (inference).
        verify_only: instead, one batched pass per batch: masks and their verification, no refinement
            and no null check (validation during training).
        evidence_key: the batch key of ground-truth evidence masks; images whose mask is empty get an
            IoU of NaN (left out of the mean).
        postprocessing: MONAI post-transforms on each decollated item (``Invertd``, ``SaveImaged``, ...).
        key_val_metric, additional_metrics, val_handlers, metric_cmp_fn: as for MONAI evaluators.

    ``engine.state.output`` per image: ``image``, ``pred`` (the binary mask ``(1, *spatial)``, a
    ``MetaTensor`` carrying the image's metadata and applied transforms so ``Invertd`` can map it back),
    ``evidence`` when given, and :data:`FIGURES`.
    """

    def __init__(
        self,
        device: str | torch.device,
        val_data_loader: Iterable,
        explainer: AmortizedMedCAM,
        refine: int | str = "auto",
        verify_only: bool = False,
        evidence_key: str = "evidence",
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = default_prepare_batch,
        iteration_update: Callable | None = None,
        postprocessing: Callable | None = None,
        key_val_metric: dict | None = None,
        additional_metrics: dict | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        val_handlers: Sequence | None = None,
        decollate: bool = True,
    ) -> None:
        super().__init__(
            device=device, val_data_loader=val_data_loader, epoch_length=epoch_length, non_blocking=non_blocking,
            prepare_batch=prepare_batch, iteration_update=iteration_update, postprocessing=postprocessing,
            key_val_metric=key_val_metric, additional_metrics=additional_metrics, metric_cmp_fn=metric_cmp_fn,
            val_handlers=val_handlers, decollate=decollate,
        )
        self.explainer = explainer
        self.refine = refine
        self.verify_only = verify_only
        self.evidence_key = evidence_key

    def _iteration(self, engine: MedCAMEvaluator, batchdata: Any) -> dict[str, Any]:
        if not isinstance(batchdata, dict) or "image" not in batchdata:
            raise ValueError("MedCAMEvaluator expects batches {'image': ..., 'evidence': optional}")
        original = batchdata["image"]
        images = images_of(batchdata).float().to(self.explainer.device, non_blocking=self.non_blocking)
        if self.verify_only:
            figures = self._verified_batch(images)
        else:
            figures = self._explained_batch(images)
        masks = figures.pop("mask").unsqueeze(1).float().cpu()
        if isinstance(original, MetaTensor):  # keep what Invertd / SaveImaged need
            masks = MetaTensor(masks).copy_meta_from(original)
        output: dict[str, Any] = {"image": original, "pred": masks, **figures}
        evidence = batchdata.get(self.evidence_key)
        output["iou"] = torch.full((len(images),), math.nan)
        if evidence is not None:
            output["iou"] = evidence_iou(torch.as_tensor(masks), torch.as_tensor(evidence)).cpu()
            output[self.evidence_key] = evidence
        # as MONAI's engines do: decollation and post-transforms run on MODEL_COMPLETED
        engine.state.output = output
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output

    def _verified_batch(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        predicted = self.explainer.verify_batch(images)
        count = len(images)
        return {
            "mask": predicted["mask"],
            "target": predicted["target"].cpu(),
            "probability": predicted["probability"].float().cpu(),
            "masked_probability": predicted["masked_probability"].float().cpu(),
            "faithful": predicted["faithful"].cpu(),
            "area_fraction": predicted["mask"].flatten(1).float().mean(1).cpu(),
            "steps": torch.zeros(count, dtype=torch.long),
            "seconds": torch.zeros(count),
            "random_keep": torch.full((count,), math.nan),
            "method": ["amortized"] * count,
        }

    def _explained_batch(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        explanations = [self.explainer.explain(image, refine_steps=self.refine) for image in images]

        def column(name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            values = [getattr(e, name) for e in explanations]
            return torch.tensor([math.nan if v is None else v for v in values], dtype=dtype)

        return {
            "mask": torch.stack([e.mask for e in explanations]),
            "target": column("target", torch.long),
            "probability": column("probability"),
            "masked_probability": column("masked_probability"),
            "faithful": column("faithful", torch.bool),
            "area_fraction": column("area_fraction"),
            "steps": column("steps", torch.long),
            "seconds": column("seconds"),
            "random_keep": column("random_keep"),
            "method": [e.method for e in explanations],
        }
