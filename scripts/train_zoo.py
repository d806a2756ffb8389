"""Train the benchmark's classifier zoo (plain cross-entropy, ordinary augmentation, no masking) into zoo/.

    python scripts/train_zoo.py                              # every plain classifier that is missing
    python scripts/train_zoo.py --split tuning               # the part defaults are chosen on
    python scripts/train_zoo.py --archs vit-convstem-small --datasets ct --force
    python scripts/train_zoo.py --explainers --split tuning  # their amortised explainers (default loss)
    python scripts/train_zoo.py --explainers --core-weight 10 --out runs/core   # ... with the core term
    python scripts/train_zoo.py --explainers --set weights.act=10 --out runs/paper  # ... with a loss setting

Seeded and CPU-only: rerunning reproduces the checkpoints. See medcam_dicom/benchmark/zoo.py for the
recipes and the tuning / held-out split.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from medcam_dicom.benchmark.names import SPLITS, ZOO_DATASETS
from medcam_dicom.benchmark.zoo import (
    ZOO_ARCHS,
    train_zoo_classifier,
    train_zoo_explainer,
    zoo_checkpoint_path,
    zoo_explainer_path,
    zoo_members,
)
from medcam_dicom.cli import _config as medcam_config  # the parser of `medcam-dicom ... --set`


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(ZOO_DATASETS), choices=ZOO_DATASETS)
    parser.add_argument("--archs", nargs="+", default=list(ZOO_ARCHS), choices=ZOO_ARCHS)
    parser.add_argument("--split", default="all", choices=SPLITS)
    parser.add_argument("--force", action="store_true", help="retrain checkpoints that exist")
    parser.add_argument("--explainers", action="store_true",
                        help="train the classifiers' amortised explainers instead (zoo/<dataset>-<arch>-explainer.pt)")
    parser.add_argument("--core-weight", type=float, default=0.0,
                        help="explainers: weight of the core term (AmortizedMedCAM.fit(core_weight=...); default 0)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="explainers: a MedCAMConfig setting of the loss, as in `medcam-dicom benchmark --set` "
                             "(e.g. weights.act=0)")
    parser.add_argument("--out", type=Path,
                        help="explainers: write them to this folder instead of zoo/ (to compare recipes)")
    args = parser.parse_args()
    config = medcam_config(argparse.Namespace(set=args.set), amortized=True) if args.set else None
    members = zoo_members("plain", args.split, tuple(args.datasets), tuple(args.archs))
    for member in members if args.explainers else ():
        path = zoo_explainer_path(member) if args.out is None else args.out / zoo_explainer_path(member).name
        if path.is_file() and not args.force:
            print(f"{member.name}: kept {path}")
            continue
        if not zoo_checkpoint_path(member).is_file():
            print(f"{member.name}: no classifier at {zoo_checkpoint_path(member)} (train it first, without "
                  "--explainers); skipped")
            continue
        started = time.perf_counter()
        explainer = train_zoo_explainer(member, core_weight=args.core_weight, config=config)
        path.parent.mkdir(parents=True, exist_ok=True)
        explainer.save(path)
        best = next(row for row in reversed(explainer.history) if row.get("best"))
        print(f"{member.name} explainer ({member.split}): validation decision kept {best['faithful_pct']:.1f} %, "
              f"area {best['area_fraction']:.3f}, IoU {best.get('iou', float('nan')):.3f} in "
              f"{time.perf_counter() - started:.0f} s -> {path}", flush=True)
    for member in members if not args.explainers else ():
        path = zoo_checkpoint_path(member)
        if path.is_file() and not args.force:
            print(f"{member.name}: kept {path}")
            continue
        started = time.perf_counter()
        model = train_zoo_classifier(member)
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
        print(f"{member.name} ({member.split}): validation accuracy {model.metrics['validation_accuracy']:.3f} "
              f"in {time.perf_counter() - started:.0f} s -> {path}", flush=True)


if __name__ == "__main__":
    main()
