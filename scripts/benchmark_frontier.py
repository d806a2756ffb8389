"""Whether issue 12's targets can hold together on the masks benchmark runs measured.

    medcam-dicom benchmark --classifiers plain --split held-out --images 10 --no-quantus \\
        --methods medcam gradcam occlusion rise --baseline-area medcam --out runs/preserved
    medcam-dicom benchmark ... --set prune=decision --out runs/decision
    python scripts/benchmark_frontier.py runs/preserved runs/decision

Every folder's rows are pooled (runs on the same classifiers and images: other settings, other
explainers; ``DIR+DIR`` is accepted as in ``benchmark_compare.py``). Per lesion decision: the best ranking
method's smallest top-k area keeping the decision (the minimality ratio's denominator) against the
finding's area, the smallest mask of any method as convincing as the full image, and the lowest
probability after removal among the masks no larger; then whether "masked probability >= original on
90 %", "median minimality <= 1" and "p removed <= 0.3" can hold together on these masks
(:mod:`medcam_dicom.benchmark.frontier`).
"""

from __future__ import annotations

import argparse
import sys

from medcam_dicom.benchmark.frontier import frontier
from medcam_dicom.benchmark.pooled import RunNotFoundError, pooled_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="benchmark output folders (DIR or DIR+DIR)")
    parser.add_argument("--m-share", type=float, default=0.9, help="target share with masked p >= original")
    parser.add_argument("--removed", type=float, default=0.3, help="target mean p after removal")
    args = parser.parse_args(argv)
    try:
        rows = [row for run in args.runs for row in pooled_run(run)["images"]]
    except RunNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in frontier(rows, args.m_share, args.removed).lines():
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
