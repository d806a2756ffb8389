"""Ignite handlers of the bundle's workflows: the explanation report (inference) and the per-epoch
training history (training), both written as files next to the results."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from ignite.engine import Engine, Events

from medcam_dicom.bundle.engines import FIGURES
from medcam_dicom.durable import write_durably

if TYPE_CHECKING:
    from medcam_dicom.explain.amortized import AmortizedMedCAM

REPORT_COLUMNS = ("source", "kind", "status", "target", "class_name", "probability", "masked_probability",
                  "faithful", "area_fraction", "random_keep", "steps", "seconds", "method", "reason", "outputs")


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of one output value (tensors to numbers, NaN to None)."""
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class ExplanationReport:
    """Collects one row per explained image from a :class:`~medcam_dicom.bundle.engines.MedCAMEvaluator`
    (attach it as a handler), takes further rows (DICOM series, files that failed) with :meth:`add`, and
    writes ``report.json`` and ``report.csv`` into ``output_dir`` with :meth:`write`.

    Args:
        output_dir: where the reports go.
        class_names: one name per classifier output (the ``class_name`` column).
    """

    def __init__(self, output_dir: str | Path, class_names: list[str] | tuple[str, ...]) -> None:
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names)
        self.rows: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        """Collect rows after every iteration (after the post-transforms that saved the masks)."""
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)

    def _collect(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for item in outputs:
            image = item.get("image")
            meta = getattr(image, "meta", {}) or {}
            pred_meta = getattr(item.get("pred"), "meta", {}) or {}
            target = int(_plain(item["target"]))
            row = {"source": str(meta.get("filename_or_obj", "")), "kind": "image", "status": "explained",
                   "target": target,
                   "class_name": self.class_names[target] if target < len(self.class_names) else str(target)}
            row.update({key: _plain(item[key]) for key in FIGURES if key != "target" and key in item})
            row["faithful"] = bool(row.get("faithful"))
            row["outputs"] = [str(pred_meta["saved_to"])] if pred_meta.get("saved_to") else []
            self.rows.append(row)

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Add rows made elsewhere (the DICOM path, inputs that could not be read)."""
        self.rows.extend(rows)

    def write(self) -> list[dict[str, Any]]:
        """Write ``report.json`` and ``report.csv``; returns the rows."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_durably(self.output_dir / "report.json", json.dumps(self.rows, indent=2).encode())
        with open(self.output_dir / "report.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=REPORT_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in self.rows:
                writer.writerow({**row, "outputs": " ".join(row.get("outputs", []))})
        return self.rows


class TrainingHistory:
    """Per-epoch figures of an explainer's training: attach to the trainer after its ``ValidationHandler``;
    at the end of every epoch it takes the trainer's last loss, the epoch's mean faithful share and the
    validator's metrics, appends them to ``explainer.history`` (saved with the explainer) and rewrites
    ``path`` (``training.json``: the classifier bundle, the datalist, the epochs, the best one).
    """

    def __init__(self, path: str | Path, explainer: AmortizedMedCAM, validator: Engine | None = None,
                 details: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.explainer = explainer
        self.validator = validator
        self.details = dict(details or {})
        self._started = time.perf_counter()
        self._faithful: list[float] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch)

    def _reset(self, engine: Engine) -> None:
        self._faithful = []

    def _iteration(self, engine: Engine) -> None:
        output = engine.state.output
        if isinstance(output, dict) and "faithful" in output:
            self._faithful.append(float(output["faithful"]))

    def _epoch(self, engine: Engine) -> None:
        output = engine.state.output if isinstance(engine.state.output, dict) else {}
        row: dict[str, Any] = {"epoch": engine.state.epoch, "loss": _plain(output.get("loss")),
                               "train_faithful": sum(self._faithful) / max(len(self._faithful), 1),
                               "seconds": round(time.perf_counter() - self._started, 2)}
        if self.validator is not None:
            row.update({name: _plain(value) for name, value in self.validator.state.metrics.items()})
            row["best"] = self.validator.state.best_metric_epoch == engine.state.epoch
        self.explainer.history.append(row)
        summary = {**self.details, "epochs": self.explainer.history,
                   "best_epoch": getattr(self.validator.state, "best_metric_epoch", None) if self.validator else None,
                   "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_durably(self.path, json.dumps(summary, indent=2).encode())
