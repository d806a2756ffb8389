"""Train the demo classifiers on the generated benchmark data and save them where the package ships them.

    python scripts/train_demo_models.py                 # all datasets, the shipped small ResNet-18s
    python scripts/train_demo_models.py --datasets ct   # one dataset

Rerunning it reproduces the checkpoints (seeded data, seeded initialisation, CPU).
"""

from __future__ import annotations

import argparse

import torch

from medcam_dicom.benchmark.data import DATASETS
from medcam_dicom.benchmark.training import train_classifier
from medcam_dicom.models.demo import demo_checkpoint_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--arch", default="resnet18-small")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-images", type=int, default=1500)
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    for dataset in args.datasets:
        model = train_classifier(dataset, arch=args.arch, epochs=args.epochs, train_images=args.train_images)
        path = demo_checkpoint_path(dataset, args.arch)
        model.save(path)
        print(f"{dataset}: validation accuracy {model.metrics['validation_accuracy']:.3f} -> {path}")


if __name__ == "__main__":
    main()
