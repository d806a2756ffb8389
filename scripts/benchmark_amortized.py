"""Seconds per image of per-image Med-CAM, amortised Med-CAM and Grad-CAM on whatever device is present
(CUDA when available, else CPU), at 224x224 (2D) and 96x96x96 (3D), with a full-width ResNet-18.

    python scripts/benchmark_amortized.py                      # both shapes, defaults below
    python scripts/benchmark_amortized.py --shapes 2d --steps 20 --repeats 5 --json out.json

The networks are randomly initialised: the figures are costs, not quality (quality is in
``medcam-dicom benchmark --methods medcam amortized amortized+refine``). Per-image Med-CAM runs a fixed
``--steps`` (no early stop, no warm start: the cost of steps alone) and is also reported extrapolated to
``--typical-steps``, about the median the benchmark measured with the warm start (60-98). Amortised =
classifier forward + decoder forward + the verification re-run (bf16 autocast for the decoder on CUDA) +
the null check (``null_masks`` random masks of the same area, re-run: 32 classifier forwards by default);
``amortized_core_s`` is the same without the null check.
Every figure is the median of ``--repeats`` timed runs after one warm-up; ratios are computed within this
run. Progress goes to stderr, figures to stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace

import torch
from tqdm.auto import tqdm

from medcam_dicom import AmortizedMedCAM, MedCAM, MedCAMConfig
from medcam_dicom.explain.comparison import GradCAMSaliency
from medcam_dicom.models.architectures import build_classifier

SHAPES = {"2d": (224, 224), "3d": (96, 96, 96)}


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device, repeats: int) -> float:
    """Median seconds of ``function()`` over ``repeats`` runs after one warm-up."""
    function()
    synchronise(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        synchronise(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(shape_name: str, device: torch.device, steps: int, typical_steps: int, repeats: int) -> dict:
    """The figures of one of :data:`SHAPES`."""
    return measure_spatial(SHAPES[shape_name], device, steps, typical_steps, repeats, label=shape_name)


def measure_spatial(
    spatial: tuple[int, ...], device: torch.device, steps: int, typical_steps: int, repeats: int, label: str = "",
) -> dict:
    """Seconds per image of Grad-CAM, amortised and per-image Med-CAM for images of ``spatial`` size."""
    torch.manual_seed(0)
    classifier = build_classifier("resnet18", len(spatial), 1, 2).eval().to(device)
    image = torch.randn((1, *spatial), device=device)
    config = MedCAMConfig(max_steps=steps, min_steps=steps, warm_start="none")
    per_image = MedCAM(classifier, config=config, device=device)
    amortized = AmortizedMedCAM(classifier, config=config, device=device)
    amortized._build_for(image)  # an untrained decoder costs what a trained one costs
    amortized.network.eval()
    gradcam = GradCAMSaliency(classifier, layer=per_image.matched_layers(image)[-1].name)
    figures = {"shape": list(spatial), "device": str(device)}
    core = AmortizedMedCAM(classifier, config=replace(config, null_masks=0), device=device)
    core.network, core.spatial_dims, core.in_channels = amortized.network, amortized.spatial_dims, amortized.in_channels
    core.num_classes, core.feature_layers = amortized.num_classes, amortized.feature_layers
    bar = tqdm(total=4, desc=f"{label} {tuple(spatial)}", file=sys.stderr)
    figures["gradcam_s"] = timed(lambda: gradcam.saliency(image, 1), device, repeats)
    bar.update()
    figures["amortized_s"] = timed(lambda: amortized.explain(image), device, repeats)
    bar.update()
    figures["amortized_core_s"] = timed(lambda: core.explain(image), device, repeats)
    bar.update()
    figures["per_image_s_at_steps"] = timed(lambda: per_image.explain(image), device, max(1, repeats // 3))
    bar.update()
    bar.close()
    figures["steps"] = steps
    figures["per_image_s_per_step"] = figures["per_image_s_at_steps"] / (steps + 1)
    figures["per_image_s_typical"] = figures["per_image_s_per_step"] * typical_steps
    figures["typical_steps"] = typical_steps
    figures["amortized_over_gradcam"] = figures["amortized_s"] / figures["gradcam_s"]
    figures["per_image_typical_over_amortized"] = figures["per_image_s_typical"] / figures["amortized_s"]
    if device.type == "cuda":
        figures["gpu"] = torch.cuda.get_device_name(device)
        figures["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--steps", type=int, default=20, help="per-image steps actually run (default %(default)s)")
    parser.add_argument("--typical-steps", type=int, default=100,
                        help="steps per image to extrapolate to (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    results = [measure(name, device, args.steps, args.typical_steps, args.repeats) for name in args.shapes]
    where = results[0].get("gpu", f"CPU, {torch.get_num_threads()} threads")
    print(f"device: {device} ({where})")
    print(f"{'shape':>14} {'Grad-CAM s':>11} {'amortised s':>12} {'amort/GC':>9} {'per-image s/step':>17} "
          f"{'per-image s @' + str(args.typical_steps):>18} {'per-image/amort':>16}")
    for r in results:
        print(f"{'x'.join(map(str, r['shape'])):>14} {r['gradcam_s']:11.4f} {r['amortized_s']:12.4f} "
              f"{r['amortized_over_gradcam']:9.2f} {r['per_image_s_per_step']:17.4f} {r['per_image_s_typical']:18.2f} "
              f"{r['per_image_typical_over_amortized']:16.0f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
