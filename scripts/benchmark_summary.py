"""Re-print and pool the tables of one or more ``benchmark.json`` files (from ``medcam-dicom benchmark``).

    python scripts/benchmark_summary.py benchmark-output/benchmark.json [more.json ...]

Recomputes every row from the per-image records, prints the table per dataset, and a pooled row per
method over all datasets: the figures the issue's targets are stated in.
"""

from __future__ import annotations

import argparse
import json
import statistics

from medcam_dicom.benchmark.names import METHODS
from medcam_dicom.benchmark.run import TABLE_COLUMNS, ImageResult, print_report, summarise


def print_markdown(report: dict) -> None:
    """The same table as Markdown (for docs/benchmark.md)."""
    print("| dataset | method | " + " | ".join(heading for heading, _, _ in TABLE_COLUMNS) + " |")
    print("|---|---|" + "---:|" * len(TABLE_COLUMNS))
    for dataset, entry in report["datasets"].items():
        for method, row in entry["methods"].items():
            cells = ["-" if row.get(key) is None else f"{row[key]:.{digits}f}" for _, key, digits in TABLE_COLUMNS]
            print(f"| {dataset} | {method} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead")
    args = parser.parse_args()
    merged = {"arch": None, "images_per_dataset": None, "datasets": {}}
    results: list[ImageResult] = []
    for path in args.reports:
        report = json.loads(open(path).read())
        merged["arch"] = report["arch"]
        merged["images_per_dataset"] = report["images_per_dataset"]
        rows = [ImageResult(**row) for row in report["images"]]
        results.extend(rows)
        for dataset, entry in report["datasets"].items():
            methods = sorted({r.method for r in rows if r.dataset == dataset}, key=METHODS.index)
            merged["datasets"][dataset] = {
                "methods": {m: summarise([r for r in rows if r.dataset == dataset and r.method == m])
                            for m in methods},
                "quantus": entry.get("quantus"),
            }
    merged["datasets"]["ALL"] = {"methods": {m: summarise([r for r in results if r.method == m])
                                             for m in METHODS
                                             if any(r.method == m for r in results)}}
    if args.markdown:
        print_markdown(merged)
    else:
        print_report(merged)
    medcam = [r for r in results if r.method == "medcam"]
    print(f"Med-CAM over {len(medcam)} images: median steps {statistics.median(r.steps for r in medcam):.0f}, "
          f"median seconds {statistics.median(r.seconds for r in medcam):.1f}")


if __name__ == "__main__":
    main()
