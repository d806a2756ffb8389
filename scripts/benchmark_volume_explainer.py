"""The amortised 3D explainer of the demo CT volume classifier (``demo-ct3d``) on held-out volumes, against
3D Grad-CAM, occlusion and RISE cut to the explainer's area per volume (figures for the issue notes; never a
test).

Held-out: the benchmark's test seed, which neither the classifier (training/validation seeds) nor the
explainer (its own seed, validated on the validation seed) saw. Per volume: decision kept on the evidence,
and on the volumes called "lesion": precision (share of the mask on the planted lesion), IoU, area, seconds.
The explainer runs with the ``demo-ct3d`` description's settings, as the DICOM path runs it.

    python scripts/benchmark_volume_explainer.py --volumes 24 [--explainer path.pt] [--classifier path.pt]
        [--prune decision] [--prune-ranking blend] [--seed validation] [--json out.json]

``--prune``: also the amortised masks pruned as ``AmortizedMedCAM.explain(prune=...)`` does (the row the
baselines are then cut to). ``--seed validation``: the validation volumes instead (to choose settings on).
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from medcam_dicom import AmortizedMedCAM
from medcam_dicom.benchmark.metrics import iou, precision
from medcam_dicom.benchmark.training import TEST_SEED, VALIDATION_SEED
from medcam_dicom.data.synthetic import generate
from medcam_dicom.explain.comparison import GradCAMSaliency, OcclusionSaliency, RISESaliency, explain_at_area
from medcam_dicom.explain.config import PRUNE_CRITERIA, PRUNE_RANKINGS
from medcam_dicom.models.demo import TrainedClassifier, demo_explainer_path, load_demo_classifier
from medcam_dicom.models.description import load_description


def row(explanation, truth: torch.Tensor) -> dict:
    mask = explanation.mask.bool()
    return {"kept": bool(explanation.faithful), "precision": precision(mask, truth), "iou": iou(mask, truth),
            "area": explanation.area_fraction, "seconds": explanation.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volumes", type=int, default=24)
    parser.add_argument("--explainer", type=Path, default=demo_explainer_path("ct3d"))
    parser.add_argument("--classifier", type=Path, help="a ct3d classifier checkpoint (default: the shipped one)")
    parser.add_argument("--methods", nargs="+", default=["gradcam", "occlusion", "rise"],
                        choices=["gradcam", "occlusion", "rise"])
    parser.add_argument("--prune", default="none", choices=PRUNE_CRITERIA)
    parser.add_argument("--prune-ranking", choices=PRUNE_RANKINGS,
                        help="the pruning's ranking (default: the demo-ct3d description's, soft; "
                             "'auto' = MedCAMConfig's default)")
    parser.add_argument("--seed", default="test", choices=["test", "validation"],
                        help="held-out test volumes (default) or the validation volumes")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    classifier = TrainedClassifier.load(args.classifier) if args.classifier else load_demo_classifier("ct3d")
    network = classifier.network
    config = load_description("demo-ct3d").medcam  # what the DICOM path explains ct3d volumes with
    if args.prune_ranking:
        config = replace(config, prune_ranking=args.prune_ranking)
    explainer = AmortizedMedCAM.load(args.explainer, network, config=config)
    test = generate("ct3d", args.volumes, seed=TEST_SEED if args.seed == "test" else VALIDATION_SEED)
    rankers = {"gradcam": GradCAMSaliency(network), "occlusion": OcclusionSaliency(network),
               "rise": RISESaliency(network)}
    kept_all: list[bool] = []
    final = "amortised+refine" if args.prune == "none" else f"amortised+refine+prune {args.prune}"
    rows: dict[str, list[dict]] = {name: [] for name in ("amortised", "amortised+refine", final, *args.methods)}
    for index in tqdm(range(len(test)), desc="held-out volumes", unit="volume"):
        image, truth = classifier.preprocess(test.images[index]), test.lesions[index].bool()
        if truth.dim() == image.dim():
            truth = truth[0]
        plain = explainer.explain(image, refine_steps=0)
        refined = explainer.explain(image, refine_steps="auto")
        shown = refined if args.prune == "none" else explainer.explain(image, refine_steps="auto", prune=args.prune)
        kept_all.append(bool(shown.faithful))
        if shown.target != 1 or not truth.any():
            continue
        rows["amortised"].append(row(plain, truth))
        rows["amortised+refine"].append(row(refined, truth))
        if shown is not refined:
            rows[final].append(row(shown, truth))
        baseline = explainer.medcam.baseline(image)
        for name in args.methods:
            at_area, _ = explain_at_area(rankers[name], network, image, shown.area_fraction, baseline, 1)
            rows[name].append(row(at_area, truth))
    count = len(rows["amortised"])
    print(f"decision kept ({final}, all {len(kept_all)} volumes): {100 * sum(kept_all) / len(kept_all):.1f} %")
    print(f"\non the {count} {args.seed} volumes called 'lesion' (baselines cut to {final}'s area per volume):")
    print("| method | decision kept % | precision | IoU | area | s/volume |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for name, items in rows.items():
        mean = {key: statistics.fmean(float(r[key]) for r in items) for key in
                ("kept", "precision", "iou", "area", "seconds")}
        summary[name] = mean
        print(f"| {name} | {100 * mean['kept']:.1f} | {mean['precision']:.3f} | {mean['iou']:.3f} | "
              f"{mean['area']:.4f} | {mean['seconds']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"kept_all": kept_all, "summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
