"""Train the benchmark's classifier zoo (plain cross-entropy, ordinary augmentation, no masking) into zoo/.

    python scripts/train_zoo.py                              # every plain classifier that is missing
    python scripts/train_zoo.py --split tuning               # the part defaults are chosen on
    python scripts/train_zoo.py --archs vit-small --datasets ct --force

Seeded and CPU-only: rerunning reproduces the checkpoints. See medcam_dicom/benchmark/zoo.py for the
recipes and the tuning / held-out split.
"""

from __future__ import annotations

import argparse
import time

from medcam_dicom.benchmark.names import DATASETS_2D, SPLITS
from medcam_dicom.benchmark.zoo import ZOO_ARCHS, train_zoo_classifier, zoo_checkpoint_path, zoo_members


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS_2D), choices=DATASETS_2D)
    parser.add_argument("--archs", nargs="+", default=list(ZOO_ARCHS), choices=ZOO_ARCHS)
    parser.add_argument("--split", default="all", choices=SPLITS)
    parser.add_argument("--force", action="store_true", help="retrain checkpoints that exist")
    args = parser.parse_args()
    members = zoo_members("plain", args.split, tuple(args.datasets), tuple(args.archs))
    for member in members:
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
