"""Cost of Med-CAM per optimisation step and per image, next to one Grad-CAM call, on this machine.

    python scripts/benchmark_speed.py                      # 128^2 2D and 32x64x64 3D, both classifier sizes
    python scripts/benchmark_speed.py --steps 150 --size 224 --steps-3d 20

Prints seconds per step, seconds for a fixed number of steps, one Grad-CAM call, and their ratio, for the
shipped quarter-width ResNet-18 and the full-width ResNet-18 (untrained weights: the cost of a step does
not depend on them). Runs on CUDA when available. Figures, not assertions: the machines are shared.
"""

from __future__ import annotations

import argparse
import time

import torch
from tqdm.auto import tqdm

from medcam_dicom import MedCAM, MedCAMConfig
from medcam_dicom.explain.comparison import GradCAMSaliency
from medcam_dicom.models.architectures import build_classifier


def _timed(function, repeats: int = 3) -> float:
    function()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="Med-CAM steps per timed 2D run")
    parser.add_argument("--steps-3d", type=int, default=5, help="Med-CAM steps per timed 3D run (seconds each)")
    parser.add_argument("--size", type=int, default=128, help="2D image side")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cases = [("2D", (1, args.size, args.size), args.steps), ("3D", (1, 32, 64, 64), args.steps_3d)]
    rows = []
    for arch in ("resnet18-small", "resnet18"):
        for label, shape, steps in tqdm(cases, desc=arch, leave=False):
            # exactly this many steps, without the warm start's one-off occlusion pass: the cost of a step
            config = MedCAMConfig(max_steps=steps, min_steps=steps, warm_start="none")
            torch.manual_seed(0)
            classifier = build_classifier(arch, len(shape) - 1, shape[0], 2).eval().to(device)
            image = torch.randn(shape, device=device)
            explainer = MedCAM(classifier, config=config, device=device)
            gradcam = GradCAMSaliency(classifier)
            gradcam_seconds = _timed(lambda g=gradcam, x=image: g.saliency(x, 0))
            started = time.perf_counter()
            explanation = explainer.explain(image)
            medcam_seconds = time.perf_counter() - started
            per_step = medcam_seconds / max(explanation.steps, 1)
            rows.append((arch, label, tuple(shape[1:]), per_step, medcam_seconds, explanation.steps,
                         gradcam_seconds))
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), "
          f"torch threads: {torch.get_num_threads()}")
    print(f"{'classifier':16s} {'dims':4s} {'shape':14s} {'s/step':>8s} {'Med-CAM s':>10s} {'steps':>6s} "
          f"{'Grad-CAM s':>11s} {'ratio':>7s}")
    for arch, label, shape, per_step, total, steps, gradcam_seconds in rows:
        print(f"{arch:16s} {label:4s} {str(shape):14s} {per_step:8.4f} {total:10.2f} {steps:6d} "
              f"{gradcam_seconds:11.4f} {total / gradcam_seconds:7.0f}")


if __name__ == "__main__":
    main()
