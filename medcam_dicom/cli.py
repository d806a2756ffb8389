"""The ``medcam-dicom`` command line: thin argument parsing over the layers below."""

from __future__ import annotations

import argparse
import sys

from medcam_dicom import __version__


def _config(args: argparse.Namespace):
    from medcam_dicom.explain.config import MedCAMConfig

    overrides = {}
    if getattr(args, "max_steps", None) is not None:
        overrides["max_steps"] = args.max_steps
        overrides["min_steps"] = min(MedCAMConfig().min_steps, args.max_steps)
    if getattr(args, "seed", None) is not None:
        overrides["seed"] = args.seed
    return MedCAMConfig(**overrides)


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from medcam_dicom.benchmark.demo import run_demo

    rows = run_demo(args.out, tuple(args.datasets), args.images, _config(args))
    table = Table(title="Med-CAM demo")
    for column in ("image", "true", "explained", "p", "p masked", "faithful", "area", "IoU", "steps", "s"):
        table.add_column(column)
    for row in rows:
        iou = row.get("iou_with_lesion")
        table.add_row(f"{row['dataset']} #{row['index']}", row["true_class"], row["explained_class"],
                      f"{row['probability']:.3f}", f"{row['masked_probability']:.3f}", str(row["faithful"]),
                      f"{row['area_fraction']:.3f}", "-" if iou is None else f"{iou:.2f}", str(row["steps"]),
                      f"{row['seconds']:.1f}")
    console = Console(width=140)
    console.print(table)
    console.print(f"Pictures and summary.json written to {args.out}/")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from medcam_dicom.benchmark.run import print_report, run_benchmark

    report = run_benchmark(tuple(args.datasets), args.images, tuple(args.methods), _config(args), args.arch,
                           args.out, cross_check=not args.no_quantus)
    print_report(report)
    print(f"Table written to {args.out}/benchmark.json, gallery to {args.out}/gallery.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from medcam_dicom.benchmark.data import DATASETS
    from medcam_dicom.benchmark.run import METHODS

    parser = argparse.ArgumentParser(prog="medcam-dicom", description="Minimal, verified evidence masks "
                                     "(Med-CAM) for medical image classifiers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="explain demo images with the shipped demo classifiers")
    demo.add_argument("--out", default="medcam-demo-output", help="output folder (default: %(default)s)")
    demo.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    demo.add_argument("--images", type=int, default=1,
                      help="images per dataset, lesion first, then normal (default: %(default)s)")
    demo.add_argument("--max-steps", type=int, help="cap on optimisation steps per image")
    demo.add_argument("--seed", type=int)
    demo.set_defaults(handler=_demo)

    bench = commands.add_parser("benchmark", help="ground-truth benchmark of Med-CAM, Grad-CAM and occlusion")
    bench.add_argument("--out", default="benchmark-output", help="output folder (default: %(default)s)")
    bench.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    bench.add_argument("--images", type=int, default=20, help="test images per dataset (default: %(default)s)")
    bench.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    bench.add_argument("--arch", default="resnet18-small",
                       help="classifier: resnet18-small (shipped) or resnet18 (trained once, cached)")
    bench.add_argument("--max-steps", type=int, help="cap on Med-CAM optimisation steps per image")
    bench.add_argument("--seed", type=int)
    bench.add_argument("--no-quantus", action="store_true", help="skip the quantus cross-check")
    bench.set_defaults(handler=_benchmark)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``medcam-dicom`` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "images", 1) < 1:
        print("medcam-dicom: error: --images must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except ValueError as error:
        print(f"medcam-dicom: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medcam-dicom: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
