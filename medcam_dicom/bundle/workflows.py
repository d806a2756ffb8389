"""Workflows behind the MONAI bundle in ``monai_bundle/``: each config (``train.json``,
``inference.json``, ``evaluate.json``) instantiates one of these with its components (``network_def``,
MONAI transforms, paths) and runs ``$@workflow.run()``.

- :class:`BundleTraining` trains the demo classifier on the benchmark data (or loads the one given) and
  its :class:`~medcam_dicom.AmortizedMedCAM`, writing ``models/model.pt`` and ``models/explainer.pt``;
- :class:`BundleInference` explains a folder: images MONAI can load (NIfTI, PNG, ...) get a NIfTI mask,
  DICOM series get the SEG/SC/SR objects of the DICOM path; one JSON and one CSV report for all;
- :class:`BundleEvaluation` runs the ground-truth benchmark table with the bundle's classifier and
  explainer next to per-image Med-CAM and Grad-CAM.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from medcam_dicom.checkpoints import half_state, load_state_file, save_checkpoint
from medcam_dicom.explain.amortized import AmortizedMedCAM
from medcam_dicom.explain.config import MedCAMConfig

#: files the image path reads with MONAI's LoadImage; everything else under the input folder is
#: offered to the DICOM reader
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".nrrd", ".mha", ".mhd")
REPORT_COLUMNS = ("source", "kind", "target", "class_name", "probability", "masked_probability", "faithful",
                  "area_fraction", "steps", "seconds", "method", "outputs")


def default_bundle_root() -> str:
    """The bundle folder: ``monai_bundle/`` beside the installed package (a source checkout), else the
    current folder when it holds ``configs/metadata.json``, else ``./monai_bundle``."""
    beside_package = Path(__file__).resolve().parents[2] / "monai_bundle"
    if (beside_package / "configs" / "metadata.json").is_file():
        return str(beside_package)
    if Path("configs/metadata.json").is_file():
        return str(Path.cwd())
    return str(Path("monai_bundle").resolve())


def load_weights(network: nn.Module, checkpoint: str | Path) -> nn.Module:
    """Load a state dict (plain, or under a ``"model"`` key as MONAI's CheckpointSaver writes it) into
    ``network``; raises ``ValueError`` naming the file when it does not fit."""
    path = Path(checkpoint)
    if not path.is_file():
        raise ValueError(f"classifier checkpoint {path} does not exist (run configs/train.json first)")
    return load_state_file(network, path).eval()


def benchmark_classifier(network: nn.Module, dataset: str, mean: Sequence[float], std: Sequence[float]) -> Any:
    """The bundle's ``network_def`` as a :class:`~medcam_dicom.models.demo.TrainedClassifier` of a
    benchmark dataset (its shape and class names), with the bundle's normalisation."""
    from medcam_dicom.data.synthetic import CLASS_NAMES, SPECS
    from medcam_dicom.models.demo import TrainedClassifier

    spec = SPECS[dataset]
    return TrainedClassifier(network, "network_def", dataset, len(spec.spatial_shape), spec.channels,
                             tuple(mean), tuple(std), CLASS_NAMES, {})


class BundleTraining:
    """Train the bundle's classifier (``network_def``) on the benchmark dataset and its amortised
    explainer; ``classifier_epochs=0`` keeps the weights already in ``models/model.pt`` and trains
    the explainer only. ``quick`` shrinks everything to a smoke run (tests)."""

    def __init__(
        self,
        network: nn.Module,
        models_dir: str | Path,
        dataset: str = "ct",
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.25,),
        classifier_epochs: int = 10,
        classifier_images: int = 1500,
        explainer_epochs: int = 8,
        explainer_images: int = 2048,
        config: MedCAMConfig | None = None,
        quick: bool = False,
        progress: bool = True,
    ) -> None:
        self.network = network
        self.models_dir = Path(models_dir)
        self.dataset = dataset
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.classifier_epochs, self.classifier_images = classifier_epochs, classifier_images
        self.explainer_epochs, self.explainer_images = explainer_epochs, explainer_images
        if quick:
            self.classifier_epochs, self.classifier_images = min(classifier_epochs, 1), 64
            self.explainer_epochs, self.explainer_images = 1, 32
        self.config = config
        self.progress = progress

    def run(self) -> dict[str, Any]:
        """Train, write ``model.pt``, ``explainer.pt`` and ``training.json`` into ``models_dir``."""
        from medcam_dicom.benchmark.training import train_classifier, train_explainer

        self.models_dir.mkdir(parents=True, exist_ok=True)
        model_path = self.models_dir / "model.pt"
        if self.classifier_epochs > 0:
            classifier = train_classifier(
                self.dataset, arch="network_def", epochs=self.classifier_epochs,
                train_images=self.classifier_images, validation_images=64 if self.classifier_images < 500 else 200,
                progress=self.progress, network=self.network, normalisation=(self.mean, self.std),
            )
            save_checkpoint(half_state(classifier.network), model_path)
        else:
            load_weights(self.network, model_path)
            classifier = benchmark_classifier(self.network, self.dataset, self.mean, self.std)
        explainer = train_explainer(
            classifier, train_images=self.explainer_images, epochs=self.explainer_epochs, config=self.config,
            validation_images=16 if self.explainer_images < 500 else 64, progress=self.progress,
        )
        explainer.save(self.models_dir / "explainer.pt")
        summary = {"dataset": self.dataset, "classifier": classifier.metrics, "explainer": explainer.history,
                   "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (self.models_dir / "training.json").write_text(json.dumps(summary, indent=2))
        return summary


class BundleInference:
    """Explain every image and DICOM series under ``input_dir``; write masks, reports and DICOM objects
    into ``output_dir``.

    Args:
        network: the classifier (``network_def``); ``checkpoint`` is loaded into it.
        checkpoint: the classifier's weights (``models/model.pt``).
        explainer_checkpoint: the amortised explainer (``models/explainer.pt``).
        input_dir: a folder (walked recursively) or one file.
        output_dir: ``masks/*.nii.gz``, ``dicom/<study>/<series>/`` SEG/SC/SR, ``report.json``, ``report.csv``.
        loader: a MONAI transform reading one image file, channel first (``LoadImage``).
        preprocessing: MONAI transforms from the loaded image to the classifier's input.
        class_names: one name per classifier output.
        dicom_input: the DICOM path's input spec (``size``, ``channels``, ``intensity``, ``mean``, ``std``)
            matching ``preprocessing``; see :mod:`medcam_dicom.models.description`.
        refine: refinement of unfaithful masks: ``"auto"``, a number of steps, or 0.
        device: where to run (``None``: CUDA when available).
    """

    def __init__(
        self,
        network: nn.Module,
        checkpoint: str | Path,
        explainer_checkpoint: str | Path,
        input_dir: str | Path,
        output_dir: str | Path,
        loader: Callable[[str], Any],
        preprocessing: Callable[[Any], Any],
        class_names: Sequence[str],
        dicom_input: dict[str, Any] | None = None,
        refine: int | str = "auto",
        device: str | torch.device | None = None,
        name: str = "medcam-bundle",
        progress: bool = True,
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.network = load_weights(network, checkpoint).to(self.device)
        self.checkpoint = Path(checkpoint)
        self.explainer_checkpoint = Path(explainer_checkpoint)
        self.input_dir, self.output_dir = Path(input_dir), Path(output_dir)
        self.loader, self.preprocessing = loader, preprocessing
        self.class_names = list(class_names)
        self.dicom_input = dicom_input
        self.refine = refine
        self.name = name
        self.progress = progress

    def _files(self) -> tuple[list[Path], list[Path]]:
        if not self.input_dir.exists():
            raise ValueError(f"input {self.input_dir} does not exist")
        files = [self.input_dir] if self.input_dir.is_file() else sorted(p for p in self.input_dir.rglob("*")
                                                                         if p.is_file())
        images = [p for p in files if p.name.lower().endswith(IMAGE_SUFFIXES)]
        others = [p for p in files if p not in images and not p.name.startswith(".")]
        return images, others

    def run(self) -> list[dict[str, Any]]:
        """Explain everything; returns the report rows (also written as ``report.json`` / ``report.csv``)."""
        explainer = AmortizedMedCAM.load(self.explainer_checkpoint, self.network, device=self.device)
        images, others = self._files()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        rows = [self._explain_image(path, explainer)
                for path in tqdm(images, desc="bundle: images", unit="image", disable=not self.progress)]
        if others:
            rows.extend(self._explain_dicom(others, explainer))
        (self.output_dir / "report.json").write_text(json.dumps(rows, indent=2))
        with open(self.output_dir / "report.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=REPORT_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "outputs": " ".join(row.get("outputs", []))})
        return rows

    def _explain_image(self, path: Path, explainer: AmortizedMedCAM) -> dict[str, Any]:
        import nibabel as nib

        row: dict[str, Any] = {"source": str(path), "kind": "image"}
        try:
            loaded = self.loader(str(path))
            prepared = torch.as_tensor(self.preprocessing(loaded)).float()
            explanation = explainer.explain(prepared, refine_steps=self.refine)
        except (ValueError, RuntimeError, OSError) as error:
            return {**row, "status": "failed", "reason": f"{type(error).__name__}: {error}"}
        spatial = tuple(loaded.shape[1:])
        mode = "nearest-exact"
        mask = F.interpolate(explanation.mask[None, None].float(), size=spatial, mode=mode)[0, 0]
        affine = np.asarray(getattr(loaded, "affine", np.eye(4)), dtype=np.float64)
        if affine.shape != (4, 4):  # MONAI keeps a 3x3 affine for 2D images
            full = np.eye(4)
            full[:2, :2], full[:2, 3] = affine[:2, :2], affine[:2, 2]
            affine = full
        stem = path.name.split(".")[0]
        out = self.output_dir / "masks" / f"{stem}_evidence.nii.gz"
        out.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(mask.numpy().astype(np.uint8), affine), str(out))
        return {**row, "status": "explained", **self._figures(explanation), "outputs": [str(out)]}

    def _figures(self, explanation: Any) -> dict[str, Any]:
        return {
            "target": explanation.target,
            "class_name": self.class_names[explanation.target],
            "probability": explanation.probability,
            "masked_probability": explanation.masked_probability,
            "faithful": explanation.faithful,
            "area_fraction": explanation.area_fraction,
            "steps": explanation.steps,
            "seconds": explanation.seconds,
            "method": explanation.method,
        }

    def _explain_dicom(self, files: list[Path], explainer: AmortizedMedCAM) -> list[dict[str, Any]]:
        from medcam_dicom.dicom.pipeline import explain_paths
        from medcam_dicom.models.description import parse_description
        from medcam_dicom.models.loading import LoadedModel

        if self.dicom_input is None:
            return [{"source": str(p), "kind": "dicom", "status": "skipped",
                     "reason": "this bundle config has no dicom_input"} for p in files]
        description = parse_description(
            {"name": self.name, "classifier": {"bundle": str(self.explainer_checkpoint.parent.parent)},
             "class_names": self.class_names, "input": self.dicom_input,
             "explainer": {"amortized": str(self.explainer_checkpoint), "refine": self.refine}},
            source=f"{self.name} (bundle inference config)",
        )
        model = LoadedModel(description, self.network, tuple(self.class_names), explainer.medcam.layer_names,
                            self.device, explainer, (self.checkpoint, self.explainer_checkpoint))
        results, skipped, failed = explain_paths(files, self.output_dir / "dicom", [model])
        rows: list[dict[str, Any]] = []
        for result in results:
            base = {"source": result.label, "kind": "dicom", "status": result.status, "reason": result.reason,
                    "series_uid": result.series_uid, "outputs": [str(p) for p in result.outputs]}
            if not result.evidence:
                rows.append(base)
            for evidence in result.evidence:
                rows.append({**base, **self._figures(evidence.explanation), "frames": list(evidence.frame_indices)})
        rows.extend({"source": path, "kind": "file", "status": "skipped", "reason": why} for path, why in skipped)
        rows.extend({"source": path, "kind": "file", "status": "failed", "reason": why} for path, why in failed)
        return rows


class BundleEvaluation:
    """The ground-truth benchmark with the bundle's classifier and amortised explainer, next to per-image
    Med-CAM and Grad-CAM at equal area (``medcam-dicom benchmark`` with the bundle's models)."""

    def __init__(
        self,
        network: nn.Module,
        checkpoint: str | Path,
        explainer_checkpoint: str | Path,
        output_dir: str | Path,
        dataset: str = "ct",
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.25,),
        images: int = 12,
        methods: Sequence[str] = ("medcam", "gradcam", "amortized", "amortized+refine"),
        variant: str = "standard",
        max_steps: int | None = None,
        progress: bool = True,
    ) -> None:
        self.network = load_weights(network, checkpoint)
        self.explainer_checkpoint = Path(explainer_checkpoint)
        self.output_dir = Path(output_dir)
        self.dataset, self.images, self.methods, self.variant = dataset, images, tuple(methods), variant
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.max_steps = max_steps
        self.progress = progress

    def run(self) -> dict[str, Any]:
        """Run the benchmark, print its table and write ``benchmark.json`` into ``output_dir``."""
        from medcam_dicom.benchmark.run import print_report, run_benchmark

        classifier = benchmark_classifier(self.network, self.dataset, self.mean, self.std)
        config = MedCAMConfig()
        if self.max_steps is not None:
            config = MedCAMConfig(max_steps=self.max_steps, min_steps=min(config.min_steps, self.max_steps))
        explainer = AmortizedMedCAM.load(self.explainer_checkpoint, self.network, config=config)
        report = run_benchmark(
            (self.dataset,), self.images, self.methods, config, "network_def", self.output_dir,
            cross_check=False, progress=self.progress, variant=self.variant,
            classifiers={self.dataset: classifier}, explainers={self.dataset: explainer},
        )
        print_report(report)
        return report
