"""What the bundle's configs call besides MONAI's own components:

- :func:`explain_dicom_files`: the DICOM files of an inference run (``configs/inference.json``) through
  the package's DICOM path (SEG/SC/SR), as report rows; images MONAI loads go through the
  :class:`~medcam_dicom.bundle.engines.MedCAMEvaluator` in the config itself;
- :class:`BundleTraining` (``configs/train_demo.json``) retrains the *demo classifier* on the synthetic
  CT set and its explainer (the explainer of a user's classifier is trained by ``configs/train.json``);
- :class:`BundleEvaluation` (``configs/evaluate.json``) runs the ground-truth benchmark table with the
  bundle's classifier and explainer next to per-image Med-CAM and Grad-CAM.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from medcam_dicom.checkpoints import half_state, load_state_file, save_checkpoint
from medcam_dicom.explain.amortized import AmortizedMedCAM
from medcam_dicom.explain.config import MedCAMConfig
from medcam_dicom.models.classifier_bundle import ClassifierBundle


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
    """:func:`~medcam_dicom.checkpoints.load_state_file` with a message saying how to make a missing file;
    returns ``network`` in eval mode."""
    path = Path(checkpoint)
    if not path.is_file():
        raise ValueError(f"classifier checkpoint {path} does not exist (run configs/train_demo.json first)")
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


def explain_dicom_files(
    files: list[Path],
    output_dir: str | Path,
    classifier: ClassifierBundle,
    explainer: AmortizedMedCAM,
    explainer_checkpoint: str | Path,
    class_names: Sequence[str],
    dicom_input: dict[str, Any] | None,
    refine: int | str = "auto",
    name: str = "medcam-bundle",
) -> list[dict[str, Any]]:
    """The DICOM files of an inference run through the package's DICOM path (series sorted, explained,
    SEG/SC/SR written under ``output_dir``), as report rows (one per explained class and series, plus the
    files skipped or refused, each with its reason). ``dicom_input`` is the input spec matching the
    classifier's preprocessing (see :mod:`medcam_dicom.models.description`); without it every file is
    reported as skipped."""
    from medcam_dicom.dicom.pipeline import explain_paths
    from medcam_dicom.models.description import parse_description
    from medcam_dicom.models.loading import LoadedModel

    if not files:
        return []
    if dicom_input is None:
        return [{"source": str(p), "kind": "dicom", "status": "skipped",
                 "reason": "this bundle config has no dicom_input"} for p in files]
    description = parse_description(
        {"name": name, "classifier": {"bundle": str(classifier.root)}, "class_names": list(class_names),
         "input": dicom_input, "explainer": {"amortized": str(explainer_checkpoint), "refine": refine}},
        source=f"{name} (bundle inference config)",
    )
    model = LoadedModel(description, classifier.network, tuple(class_names), explainer.medcam.layer_names,
                        explainer.device, explainer, (classifier.weights_file, Path(explainer_checkpoint)))
    results, skipped, failed = explain_paths(files, Path(output_dir), [model])
    rows: list[dict[str, Any]] = []
    for result in results:
        base = {"source": result.label, "kind": "dicom", "status": result.status, "reason": result.reason,
                "series_uid": result.series_uid, "outputs": [str(p) for p in result.outputs]}
        if not result.evidence:
            rows.append(base)
        for evidence in result.evidence:
            rows.append({**base, **explanation_figures(evidence.explanation, class_names),
                         "frames": list(evidence.frame_indices)})
    rows.extend({"source": path, "kind": "file", "status": "skipped", "reason": why} for path, why in skipped)
    rows.extend({"source": path, "kind": "file", "status": "failed", "reason": why} for path, why in failed)
    return rows


def explanation_figures(explanation: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """The report columns of one :class:`~medcam_dicom.explain.explanation.Explanation`."""
    return {
        "target": explanation.target,
        "class_name": class_names[explanation.target],
        "probability": explanation.probability,
        "masked_probability": explanation.masked_probability,
        "faithful": explanation.faithful,
        "area_fraction": explanation.area_fraction,
        "random_keep": explanation.random_keep,
        "steps": explanation.steps,
        "seconds": explanation.seconds,
        "method": explanation.method,
    }


class BundleEvaluation:
    """The ground-truth benchmark with the bundle's classifier (``network``, weights loaded: the
    ``classifier_bundle``'s) and amortised explainer, next to per-image Med-CAM and Grad-CAM at equal area
    (``medcam-dicom benchmark`` with the bundle's models)."""

    def __init__(
        self,
        network: nn.Module,
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
        self.network = network.eval()
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
