"""Compare Med-CAM settings across benchmark runs on the same classifiers and images.

    medcam-dicom benchmark --classifiers plain --split tuning --images 10 --out runs/default
    medcam-dicom benchmark --classifiers plain --split tuning --images 10 --methods medcam gradcam \\
        --set warm_start=none --out runs/none
    python scripts/benchmark_compare.py runs/default runs/none

One row per run and explainer (medcam, amortized, ...), aggregated over every classifier of the run, then
the ranking baselines of the first run that has them. The columns from "lesion area" to "random keep" are
on the lesion decisions (lesion images explained as "lesion"): a "normal" decision is kept by an empty
mask. The smallest faithful top-k area of a ranking method does not depend on Med-CAM's settings, so the
minimality ratio of every run is taken against the best ranking method of *all* runs on the same
classifier and image ("min ratio": the smallest top-k keeping the decision; "min ratio p": keeping the
target's probability at least at the full image's, as Med-CAM's stopping rule asks; lesion decisions).
"precision gap" is Med-CAM's precision minus that of the ranking method most precise at its area in the
same run, as the mean of the per-image differences with a 95 % bootstrap interval over classifiers
(:mod:`medcam_dicom.benchmark.gaps`); "level" when the interval holds 0. "precision gap, equal evidence"
is the same against each ranking method's smallest top-k mask whose target log-odds reach those of
Med-CAM's mask ("prec. equal evidence" and "area equal evidence" in the ranking methods' rows). A
``lesion`` row (``--methods ... lesion``) is the finding itself as the mask.

A run given as ``DIR+DIR...`` pools folders run with the same settings on different classifiers (e.g.
``--zoo-archs`` runs made while the rest of the zoo was training) into one row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from medcam_dicom.benchmark.gaps import gaps_to_baselines
from medcam_dicom.benchmark.names import ORACLE_METHODS, RANKING_METHODS
from medcam_dicom.benchmark.pooled import PRESERVING_AREA, RunNotFoundError, best_ranking_areas, pooled_run, run_name

# (heading, per-image key, aggregation, on the lesion decisions only)
COLUMNS = (
    ("kept %", "faithful", "pct", False),
    ("m>=p %", "preserved", "pct", False),
    ("lesion area", "area_fraction", "mean", True),
    ("precision", "precision", "mean", True),
    ("prec. equal evidence", "equal_evidence_precision", "mean", True),
    ("area equal evidence", "equal_evidence_area", "mean", True),
    ("IoU", "iou", "mean", True),
    ("p removed", "removed_probability", "mean", True),
    ("flips %", "removal_flips", "pct", True),
    ("random keep %", "random_keep", "pct", True),
    ("s/image", "seconds", "mean", False),
    ("steps", "steps", "median", False),
)


def _aggregate(rows: list[dict], key: str, how: str) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return "-"
    if how == "pct":
        return f"{100.0 * statistics.fmean(float(v) for v in values):.1f}"
    if how == "median":
        return f"{statistics.median(values):.0f}"
    return f"{statistics.fmean(values):.3f}"


def _precision_gap(rows: list[dict], method: str, baseline_key: str | None = None) -> str:
    """Precision of ``method`` minus the most precise ranking method at equal area (at equal evidence with
    ``baseline_key="equal_evidence_precision"``), with its interval."""
    gaps = gaps_to_baselines(rows, method, RANKING_METHODS, baseline_key=baseline_key)
    if not gaps:
        return "-"
    baseline, gap = min(gaps.items(), key=lambda item: item[1].mean)
    return f"{gap} vs {baseline}: {gap.settled}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="benchmark output folders (with benchmark.json); DIR+DIR pools")
    args = parser.parse_args(argv)
    try:
        reports = {run_name(run): pooled_run(run) for run in args.runs}
    except RunNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    every_row = [r for report in reports.values() for r in report["images"]]
    best = best_ranking_areas(every_row)
    best_preserving = best_ranking_areas(every_row, PRESERVING_AREA)
    header = ["run", "method", *[c[0] for c in COLUMNS], "min ratio", "min ratio p", "precision gap",
              "precision gap, equal evidence"]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    shown_rankers: set[str] = set()
    for run, report in reports.items():
        shown = ("warm_start", "warm_start_occlusion", "prune_ranking", "prune_start_weight", "prune_parts", "weights")
        settings = {k: v for k, v in report["config"].items() if k in shown}
        for r in report["images"]:
            r["preserved"] = r["masked_probability"] >= r["probability"]
        methods = sorted({r["method"] for r in report["images"]}, key=lambda m: (m in RANKING_METHODS, m))
        for method in methods:
            if method in RANKING_METHODS and method in shown_rankers:
                continue
            rows = [r for r in report["images"] if r["method"] == method]
            lesion = [r for r in rows if r.get("iou") is not None]
            ratios = [r["area_fraction"] / max(best[(r["dataset"], r["index"])], 1e-9) for r in lesion
                      if r["faithful"] and (r["dataset"], r["index"]) in best]
            ratio = f"{statistics.median(ratios):.2f}" if ratios and method not in RANKING_METHODS else "-"
            ratios_p = [r["area_fraction"] / max(best_preserving[(r["dataset"], r["index"])], 1e-9) for r in lesion
                        if r["faithful"] and (r["dataset"], r["index"]) in best_preserving]
            ratio_p = f"{statistics.median(ratios_p):.2f}" if ratios_p and method not in RANKING_METHODS else "-"
            cells = [_aggregate(lesion if on_lesion else rows, key, how) for _, key, how, on_lesion in COLUMNS]
            medcam = method not in RANKING_METHODS + ORACLE_METHODS
            gap = _precision_gap(report["images"], method) if medcam else "-"
            evidence_gap = (_precision_gap(report["images"], method, "equal_evidence_precision") if medcam
                            else "-")
            print(" | ".join([run, method, *cells, ratio, ratio_p, gap, evidence_gap]))
            if method in RANKING_METHODS:
                shown_rankers.add(method)
        print(f"<!-- {run}: {len(report['datasets'])} classifiers, settings {json.dumps(settings)} -->")
    lesion_keys = {(r["dataset"], r["index"]) for report in reports.values() for r in report["images"]
                   if r.get("iou") is not None}
    smallest = [area for key, area in best.items() if key in lesion_keys]
    if smallest:
        print(f"\nbest ranking method's smallest faithful area on the lesion decisions, median: "
              f"{statistics.median(smallest):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
