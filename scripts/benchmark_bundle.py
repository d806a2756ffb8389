"""The bundle on a classifier it did not make, measured: a zoo-layout bundle of a small MONAI DenseNet
trained with plain cross-entropy (``tests/zoo_bundle.py``: MONAI only), its explainer trained with
``configs/train.json`` (the per-epoch figures and seconds per epoch are printed), then on that
classifier's validation images the amortised explainer (``refine auto``, as ``configs/inference.json``
runs it) against Grad-CAM and RISE cut to the same area: decision kept, precision (share of the mask on
the lesion) and IoU with the drawn lesion, on the images the classifier calls "lesion".

    python scripts/benchmark_bundle.py --dims 2 --epochs 8 --out runs/bundle-2d
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the zoo-bundle maker is a test helper: it must not use our code

from zoo_bundle import make_zoo_bundle  # noqa: E402

from medcam_dicom import AmortizedMedCAM  # noqa: E402
from medcam_dicom.benchmark.metrics import iou, precision  # noqa: E402
from medcam_dicom.bundle import ClassifierBundle, EvidenceMaskd  # noqa: E402
from medcam_dicom.explain.comparison import GradCAMSaliency, RISESaliency, explain_at_area  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, choices=(2, 3), default=2)
    parser.add_argument("--size", type=int, default=None, help="side of the classifier's input (64 in 2D, 32 in 3D)")
    parser.add_argument("--training", type=int, default=512)
    parser.add_argument("--validation", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=8, help="explainer epochs")
    parser.add_argument("--out", type=Path, default=Path("runs/bundle"))
    args = parser.parse_args()
    size = args.size or (64 if args.dims == 2 else 32)

    started = time.perf_counter()
    zoo = make_zoo_bundle(args.out, spatial_dims=args.dims, size=size, training=args.training,
                          validation=args.validation, tests=0)
    print(f"classifier bundle {zoo.root}: DenseNet, validation accuracy {zoo.accuracy:.3f} "
          f"({time.perf_counter() - started:.0f} s to make)")
    models = args.out / "models"
    train_config = str(ROOT / "monai_bundle/configs/train.json")
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", train_config,
               "--classifier_bundle", str(zoo.root), "--datalist", str(zoo.datalist), "--models_dir", str(models),
               "--epochs", str(args.epochs), "--early_stop_patience", str(args.epochs)]
    print("$", " ".join(command))
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    training_seconds = time.perf_counter() - started
    summary = json.loads((models / "training.json").read_text())
    print(f"\nexplainer training: {training_seconds:.0f} s wall, best epoch {summary['best_epoch']}")
    print("| epoch | loss | train faithful | val faithful % | val area | val IoU | score | s (cumulative) |")
    print("|---|---|---|---|---|---|---|---|")
    for e in summary["epochs"]:
        print(f"| {e['epoch']} | {e['loss']:.2f} | {e['train_faithful']:.2f} | {e['faithful_pct']:.1f} | "
              f"{e['area_fraction']:.3f} | {e['iou']:.3f} | {e['score']:.3f} | {e['seconds']:.0f} |")

    classifier = ClassifierBundle.load(zoo.root, "cpu")
    explainer = AmortizedMedCAM.load(models / "explainer.pt", classifier.network, device="cpu")
    base = zoo.datalist.parent
    entries = json.loads(zoo.datalist.read_text())["validation"]
    evidence_of = EvidenceMaskd(keys="evidence")
    from monai.transforms import LoadImage

    load = LoadImage(image_only=True, ensure_channel_first=True)
    rows: dict[str, list[dict]] = {"amortised Med-CAM": [], "Grad-CAM": [], "RISE": []}
    gradcam, rise = GradCAMSaliency(classifier.network), RISESaliency(classifier.network)
    for entry in tqdm(entries, desc="validation images", unit="image"):
        item = classifier.preprocessing({"image": str(base / entry["image"])})
        item["evidence"] = load(str(base / entry["evidence"]))
        item = evidence_of(item)
        image, truth = item["image"].as_tensor().float(), item["evidence"][0]
        explanation = explainer.explain(image, refine_steps="auto")
        if explanation.target != 1 or not truth.any():
            continue
        rows["amortised Med-CAM"].append(_row(explanation, truth))
        baseline = explainer.medcam.baseline(image)
        for name, method in (("Grad-CAM", gradcam), ("RISE", rise)):
            at_area, _ = explain_at_area(method, classifier.network, image, explanation.area_fraction, baseline, 1)
            rows[name].append(_row(at_area, truth))
    count = len(rows["amortised Med-CAM"])
    print(f"\non the {count} validation images called 'lesion' (baselines cut to Med-CAM's area per image):")
    print("| method | decision kept % | precision | IoU | area | s/image |")
    print("|---|---|---|---|---|---|")
    for name, items in rows.items():
        mean = {key: float(np.mean([r[key] for r in items])) for key in ("kept", "precision", "iou", "area", "seconds")}
        print(f"| {name} | {100 * mean['kept']:.1f} | {mean['precision']:.3f} | {mean['iou']:.3f} | "
              f"{mean['area']:.4f} | {mean['seconds']:.3f} |")
    (args.out / "benchmark_bundle.json").write_text(json.dumps({"training": summary, "rows": rows}, indent=1))


def _row(explanation, truth: torch.Tensor) -> dict:
    mask = explanation.mask.bool()
    return {"kept": bool(explanation.faithful), "precision": precision(mask, truth), "iou": iou(mask, truth),
            "area": explanation.area_fraction, "seconds": explanation.seconds}


if __name__ == "__main__":
    main()
