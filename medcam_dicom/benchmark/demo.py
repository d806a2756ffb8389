"""``medcam-dicom demo``: explain a few generated images with the shipped demo classifiers and write
pictures and numbers you can open."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from medcam_dicom.benchmark.metrics import iou
from medcam_dicom.benchmark.names import DATASETS
from medcam_dicom.benchmark.run import _display
from medcam_dicom.benchmark.training import TEST_SEED
from medcam_dicom.data.synthetic import generate
from medcam_dicom.explain.config import MedCAMConfig
from medcam_dicom.explain.medcam import MedCAM
from medcam_dicom.models.demo import TrainedClassifier, load_demo_classifier
from medcam_dicom.models.description import load_description
from medcam_dicom.models.loading import load_model


def _overlay_png(picture: np.ndarray, mask: np.ndarray, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(6, 3.3))
    for axis in axes:
        axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        axis.set_xticks([])
        axis.set_yticks([])
    axes[1].imshow(np.ma.masked_where(~mask, mask.astype(float)), cmap="autumn", alpha=0.5, vmin=0, vmax=1)
    axes[1].contour(mask.astype(float), levels=[0.5], colors="yellow", linewidths=0.8)
    axes[0].set_title("image", fontsize=8)
    axes[1].set_title("Med-CAM evidence", fontsize=8)
    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def demo_explainer(dataset: str, classifier: TrainedClassifier, config: MedCAMConfig | None) -> Any:
    """Per-image Med-CAM for the 2D demo classifiers (the paper's method, seconds per image); for a volume
    classifier the explainer of its ``demo-<dataset>`` description (the shipped amortised one, refined and
    pruned as the DICOM path does it): per-image Med-CAM takes minutes per volume on CPU."""
    if classifier.spatial_dims == 3:
        description = load_description(f"demo-{dataset}")
        if description.explainer.kind == "amortized":
            return load_model(description, "cpu").explainer()  # as the DICOM path builds it
    return MedCAM(classifier.network, config=config)


def run_demo(
    out_dir: str | Path = "medcam-demo-output",
    datasets: tuple[str, ...] = DATASETS,
    per_dataset: int = 2,
    config: MedCAMConfig | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Explain ``per_dataset`` test images of each dataset, a lesion image first, then a normal one,
    and so on (with :func:`demo_explainer`); writes one PNG per image and ``summary.json`` into ``out_dir``;
    returns the summary rows."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    order = [index ^ 1 for index in range(per_dataset)]  # 1, 0, 3, 2, ...: generated images alternate 0, 1
    jobs = [(dataset, index) for dataset in datasets for index in order]
    loaded: dict[str, Any] = {}
    rows = []
    for dataset, index in tqdm(jobs, desc="Med-CAM demo", unit="image", disable=not progress):
        if dataset not in loaded:
            classifier = load_demo_classifier(dataset)
            loaded[dataset] = (classifier, demo_explainer(dataset, classifier, config),
                               generate(dataset, max(order) + 1, seed=TEST_SEED))
        classifier, explainer, test = loaded[dataset]
        explanation = explainer.explain(classifier.preprocess(test.images[index]))
        name = classifier.class_names[explanation.target]
        picture, slice_index = _display(test.images[index], explanation.mask)
        mask = explanation.mask.numpy()
        mask = mask[slice_index] if slice_index is not None else mask
        png = out / f"{dataset}-{index}.png"
        verdict = "decision kept" if explanation.faithful else "NOT faithful"
        _overlay_png(picture, mask, f"{dataset} #{index}: {name} p={explanation.probability:.3f}, masked "
                     f"p={explanation.masked_probability:.3f} ({verdict}), area {explanation.area_fraction:.1%}",
                     png)
        row = {"dataset": dataset, "index": index, "true_class": classifier.class_names[int(test.labels[index])],
               "explained_class": name, **explanation.summary(), "picture": str(png)}
        if int(test.labels[index]) == 1 and explanation.target == 1:
            row["iou_with_lesion"] = iou(explanation.mask, test.lesions[index])
        rows.append(row)
        torch.save({"mask": explanation.mask, "soft_mask": explanation.soft_mask}, out / f"{dataset}-{index}.pt")
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    return rows
