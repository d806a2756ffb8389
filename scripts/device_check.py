"""The GPU check: one command that exercises and measures the explainer on a device and writes the figures
to ``<out>/device_check.json`` (progress on stderr, a summary on stdout).

    python scripts/device_check.py --device cuda --out device-check          # a GPU machine: < 8 min on an H200
    python scripts/device_check.py --device cpu --quick --out /tmp/check     # its CPU run (CI): about 2 min

Stages, each in a process of its own (so a crash or a hang in one leaves the others' figures, and peak
memory is per stage):

* ``tests``: the tests marked ``device`` (``tests/test_device.py``) with ``MEDCAM_TEST_DEVICE`` set to the
  device (skipped on the CPU: CI runs them there anyway);
* ``speed``: ``scripts/benchmark_amortized.py``'s costs on a full-width ResNet-18, randomly initialised:
  Grad-CAM, amortised Med-CAM and per-image Med-CAM steps at 224 x 224 and 128^3;
* ``demo``: the shipped demo classifiers (trained; four 2D datasets and the 3D CT one) on benchmark test
  images with a lesion: per-image Med-CAM with the defaults (seconds, steps, decision kept, area, IoU with
  the lesion), the shipped amortised explainers (forward only and with ``refine_steps="auto"``) and
  Grad-CAM, per image;
* ``series``: a CT series of clinical size (200 slices of 512 x 512, real CT anatomy with a planted finding,
  :func:`medcam_dicom.dicom.examples.write_ct_volume_series`) through the DICOM path with ``demo-ct3d``,
  each step timed (read, assemble, pixels, explain, SEG/SC/SR written), the process's peak RSS, the SEG's
  frame count and the evidence's overlap with the planted finding.

Timings synchronise CUDA before the clock is read; every figure comes from this one run. ``--quick``
shrinks every size so that the CPU run finishes in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("tests", "speed", "demo", "series")
#: sizes of the full check and of its ``--quick`` CPU run
SIZES = {
    "full": {"speed_2d": 224, "speed_3d": 128, "steps": 20, "repeats": 5, "images": 6, "medcam": {},
             "slices": 200, "size": 512},
    "quick": {"speed_2d": 64, "speed_3d": 24, "steps": 2, "repeats": 1, "images": 1,
              "medcam": {"max_steps": 8, "min_steps": 2}, "slices": 24, "size": 128},
}
DEMO_DATASETS = ("ct", "mr", "fundus", "histology", "ct3d")
#: seconds a stage may run before it is stopped (the whole check must fit a 10-minute device call)
STAGE_TIMEOUT_S = {"tests": 240, "speed": 150, "demo": 200, "series": 200}


def _python_path() -> str:
    """The repository first, then whatever ``PYTHONPATH`` held (a GPU machine's carried packages)."""
    return os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def _clock(device: Any) -> float:
    """``time.perf_counter()`` after the device's queued work is done."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from benchmark_amortized import synchronise

    synchronise(device)
    return time.perf_counter()


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kilobytes on Linux


def _memory(device: Any) -> dict[str, float]:
    import torch

    figures = {"peak_rss_gib": round(_peak_rss_gib(), 3)}
    if device.type == "cuda":
        figures["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return figures


def stage_speed(device: Any, sizes: dict[str, Any]) -> dict[str, Any]:
    """Costs on a full-width ResNet-18 (see ``scripts/benchmark_amortized.py``)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from benchmark_amortized import measure_spatial

    shapes = {"2d": (sizes["speed_2d"],) * 2, "3d": (sizes["speed_3d"],) * 3}
    figures: dict[str, Any] = {
        name: measure_spatial(spatial, device, sizes["steps"], 100, sizes["repeats"], label=name)
        for name, spatial in shapes.items()
    }
    figures.update(_memory(device))
    return figures


def stage_demo(device: Any, sizes: dict[str, Any]) -> dict[str, Any]:
    """The shipped demo classifiers on lesion images: per-image, amortised and Grad-CAM, per image."""
    import torch
    from tqdm.auto import tqdm

    from medcam_dicom import AmortizedMedCAM, MedCAM, MedCAMConfig
    from medcam_dicom.benchmark.metrics import iou
    from medcam_dicom.benchmark.training import TEST_SEED
    from medcam_dicom.data.synthetic import generate
    from medcam_dicom.explain.comparison import GradCAMSaliency
    from medcam_dicom.models.demo import demo_explainer_path, load_demo_classifier

    config = MedCAMConfig(**sizes["medcam"])
    results: dict[str, Any] = {}
    for dataset in DEMO_DATASETS:
        classifier = load_demo_classifier(dataset, device)
        test = generate(dataset, 2 * sizes["images"], seed=TEST_SEED)
        lesion = test.labels == 1
        images, truths = classifier.preprocess(test.images[lesion]), test.lesions[lesion]
        per_image = MedCAM(classifier.network, config=config, device=device)
        gradcam = GradCAMSaliency(classifier.network)
        rows = []
        for image, truth in tqdm(list(zip(images, truths)), desc=f"demo {dataset}", file=sys.stderr):
            started = _clock(device)
            explanation = per_image.explain(image, target=1)
            seconds = _clock(device) - started
            started = _clock(device)
            gradcam.saliency(image.to(device), 1)
            rows.append({
                "seconds": seconds, "gradcam_s": _clock(device) - started, "steps": explanation.steps,
                "kept": explanation.faithful, "area": explanation.area_fraction,
                "iou": iou(explanation.mask, truth),
            })
        figures = {
            "images": len(rows),
            "shape": list(images.shape[2:]),
            "per_image_s": statistics.median(r["seconds"] for r in rows),
            "per_image_steps": statistics.median(r["steps"] for r in rows),
            "per_image_kept_pct": 100.0 * sum(r["kept"] for r in rows) / len(rows),
            "per_image_area": statistics.mean(r["area"] for r in rows),
            "per_image_iou": statistics.mean(r["iou"] for r in rows),
            "gradcam_s": statistics.median(r["gradcam_s"] for r in rows),
        }
        path = demo_explainer_path(dataset)
        if path.is_file():
            amortized = AmortizedMedCAM.load(path, classifier.network, config=config, device=device)
            amortized.explain_batch(images[:1], refine_steps=0)  # warm-up: cuDNN picks its kernels
            for refine, key in ((0, "amortized"), ("auto", "amortized_refine")):
                started = _clock(device)
                explained = amortized.explain_batch(images, refine_steps=refine)
                figures[f"{key}_s"] = (_clock(device) - started) / len(images)
                figures[f"{key}_kept_pct"] = 100.0 * sum(e.faithful for e in explained) / len(explained)
                figures[f"{key}_iou"] = statistics.mean(iou(e.mask, t) for e, t in zip(explained, truths))
        results[dataset] = figures
        del classifier
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"classifiers": results, **_memory(device)}


def stage_series(device: Any, sizes: dict[str, Any]) -> dict[str, Any]:
    """A CT series of clinical size through the DICOM path with ``demo-ct3d``, step by step."""
    import numpy as np
    import torch

    from medcam_dicom.benchmark.metrics import iou
    from medcam_dicom.dicom.examples import write_ct_volume_series
    from medcam_dicom.dicom.pipeline import explain_frames, select_model, write_results
    from medcam_dicom.dicom.read import scan_inputs
    from medcam_dicom.dicom.results import SeriesResult
    from medcam_dicom.dicom.series import assemble_series
    from medcam_dicom.dicom.settings import OutputSettings
    from medcam_dicom.models.description import load_description
    from medcam_dicom.models.loading import load_model

    with tempfile.TemporaryDirectory(prefix="medcam-series-") as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        paths, finding = write_ct_volume_series(folder / "in", slices=sizes["slices"], size=sizes["size"])
        inputs_s = time.perf_counter() - started
        description = load_description("demo-ct3d")
        if sizes["medcam"]:
            description = description.with_medcam(**sizes["medcam"])
        model = load_model(description, device)
        stages: dict[str, float] = {}

        def timed(name: str, function: Any) -> Any:
            began = _clock(device)
            value = function()
            stages[name] = round(_clock(device) - began, 3)
            return value

        scan = timed("read", lambda: scan_inputs([folder / "in"]))
        (instances,) = scan.series.values()
        series = timed("assemble", lambda: assemble_series(list(instances)))
        chosen, why = select_model(series, [model])
        if chosen is None:
            raise RuntimeError(why)
        pixels = timed("pixels", lambda: series.pixels(description.max_pixels))
        evidence = timed("explain", lambda: explain_frames(series, pixels, model))
        result = SeriesResult(series_uid=series.series_uid, label=series.describe(), status="explained")
        # overlays="all": the SEG of all 200 frames is written (and timed) whatever the decision
        timed("write", lambda: write_results([(series, pixels, evidence)], model, OutputSettings(overlays="all"),
                                             folder / "out", result))
        (first,) = evidence
        import highdicom as hd

        segmentation = hd.seg.segread(next(p for p in result.outputs if p.name.startswith("SEG")))
        mask = np.asarray(first.mask, dtype=bool)
        overlap = iou(torch.from_numpy(mask), torch.from_numpy(finding))
        return {
            "slices": sizes["slices"], "size": sizes["size"], "inputs_written_s": round(inputs_s, 2),
            "stages_s": stages, "end_to_end_s": round(sum(stages.values()), 3),
            "model_grid": list(description.input.size), "explainer": first.explanation.method,
            "steps": first.explanation.steps, "decision_kept": first.explanation.faithful,
            "evidence_voxels": int(mask.sum()), "planted_voxels": int(finding.sum()),
            "iou_with_planted": round(overlap, 3), "seg_frames": int(segmentation.NumberOfFrames),
            "outputs": [p.name for p in result.outputs], **_memory(device),
        }


def stage_tests(device: Any, sizes: dict[str, Any]) -> dict[str, Any]:
    """``pytest -m device`` with ``MEDCAM_TEST_DEVICE``; the counts from its JUnit report."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "junit.xml"
        environment = {**os.environ, "MEDCAM_TEST_DEVICE": str(device), "PYTHONPATH": _python_path()}
        command = [sys.executable, "-m", "pytest", "-m", "device", "-k", "not device_check_script", "-q",
                   "-p", "no:randomly", "-p", "no:cacheprovider", f"--junitxml={report}", "tests/test_device.py"]
        completed = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)
        sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-2000:])
        suite = ElementTree.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
        failed = [case.get("name") for case in suite.iter("testcase")
                  if case.find("failure") is not None or case.find("error") is not None]
        if completed.returncode != 0:
            raise RuntimeError(f"pytest -m device failed: {counts}, {failed}\n{completed.stdout[-2000:]}")
        return {**counts, "failed": failed}


RUNNERS = {"tests": stage_tests, "speed": stage_speed, "demo": stage_demo, "series": stage_series}


def run_stage(name: str, device_name: str, quick: bool, output: Path) -> None:
    """Run one stage in this process and write ``{"ok": ..., ...figures}`` to ``output``."""
    import torch

    device = torch.device(device_name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {device_name}: torch sees no CUDA device")
        torch.backends.cudnn.benchmark = True
    started = time.perf_counter()
    try:
        figures = {"ok": True, **RUNNERS[name](device, SIZES["quick" if quick else "full"])}
    except Exception as error:  # noqa: BLE001 - the check reports every stage, whatever fails
        import traceback

        traceback.print_exc()
        figures = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    figures["stage_s"] = round(time.perf_counter() - started, 2)
    output.write_text(json.dumps(figures, indent=2, default=str))


def _environment(device_name: str) -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
                             "python": sys.version.split()[0]}
    if device_name.startswith("cuda") and torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(torch.device(device_name))
        facts["cuda"] = torch.version.cuda
    return facts


def _summary(figures: dict[str, Any]) -> str:
    lines = [f"device {figures['device']} ({figures['environment'].get('gpu', 'CPU')}), "
             f"torch {figures['environment']['torch']}"]
    for name, stage in figures["stages"].items():
        lines.append(f"  {name:7s} {'ok' if stage['ok'] else 'FAILED'} in {stage['stage_s']} s"
                     + ("" if stage["ok"] else f": {stage['error'][:300]}"))
    speed = figures["stages"].get("speed", {})
    for shape in ("2d", "3d"):
        if shape in speed:
            s = speed[shape]
            lines.append(f"  speed {shape} {s['shape']}: Grad-CAM {s['gradcam_s']:.4f} s, amortised "
                         f"{s['amortized_s']:.4f} s ({s['amortized_core_s']:.4f} s without the null check), "
                         f"per-image {s['per_image_s_per_step']:.4f} s/step")
    for dataset, d in figures["stages"].get("demo", {}).get("classifiers", {}).items():
        amortized = f", amortised {d['amortized_s']:.4f} s" if "amortized_s" in d else ""
        lines.append(f"  demo {dataset:9s}: per-image {d['per_image_s']:.2f} s ({d['per_image_steps']} steps, "
                     f"kept {d['per_image_kept_pct']:.0f} %, IoU {d['per_image_iou']:.2f}){amortized}")
    series = figures["stages"].get("series", {})
    if series.get("ok"):
        lines.append(f"  series {series['slices']} x {series['size']}^2: {series['end_to_end_s']} s end to end "
                     f"{series['stages_s']}, peak RSS {series['peak_rss_gib']} GiB, SEG {series['seg_frames']} "
                     f"frames, IoU with the planted finding {series['iou_with_planted']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: %(default)s)")
    parser.add_argument("--out", default="device-check", help="folder for device_check.json (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="small sizes: the CPU run CI can afford")
    parser.add_argument("--stages", nargs="+", choices=STAGES,
                        help="stages to run (default: all; 'tests' only off the CPU)")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # internal: one stage, this process
    parser.add_argument("--stage-output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        run_stage(args.stage, args.device, args.quick, Path(args.stage_output))
        return 0
    stages = args.stages or [s for s in STAGES if s != "tests" or not args.device.startswith("cpu")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"device": args.device, "quick": args.quick, "environment": _environment(args.device),
                               "stages": {}}
    for name in stages:
        print(f"== {name}", file=sys.stderr, flush=True)
        output = out / f"stage-{name}.json"
        output.unlink(missing_ok=True)
        command = [sys.executable, __file__, "--stage", name, "--device", args.device, "--stage-output", str(output)]
        command += ["--quick"] if args.quick else []
        environment = {**os.environ, "PYTHONPATH": _python_path()}
        limit = STAGE_TIMEOUT_S[name] * (3 if args.quick else 1)  # the CPU is slower, even at small sizes
        try:
            subprocess.run(command, cwd=ROOT, env=environment, timeout=limit)
            stage = json.loads(output.read_text()) if output.is_file() else {
                "ok": False, "error": "the stage's process ended without figures (crashed?)"}
        except subprocess.TimeoutExpired:
            stage = {"ok": False, "error": f"stopped after {limit} s", "stage_s": limit}
        stage.setdefault("stage_s", None)
        figures["stages"][name] = stage
        output.unlink(missing_ok=True)
        (out / "device_check.json").write_text(json.dumps(figures, indent=2))
    print(_summary(figures))
    return 0 if all(stage["ok"] for stage in figures["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
