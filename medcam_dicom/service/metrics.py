"""Counters and latency summaries of the service, rendered in the Prometheus text format."""

from __future__ import annotations

import threading
from collections import defaultdict


class Metrics:
    """Thread-safe counters (``inc``) and summaries (``observe``: count and sum), labelled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple], float] = defaultdict(float)
        self._summaries: dict[tuple[str, tuple], list[float]] = defaultdict(lambda: [0, 0.0])
        self._gauges: dict[tuple[str, tuple], float] = {}
        self._help: dict[str, tuple[str, str]] = {}

    def _key(self, name: str, labels: dict[str, str] | None) -> tuple[str, tuple]:
        return name, tuple(sorted((labels or {}).items()))

    def inc(self, name: str, value: float = 1.0, labels: dict[str, str] | None = None, help: str = "") -> None:
        with self._lock:
            self._counters[self._key(name, labels)] += value
            self._help.setdefault(name, ("counter", help))

    def observe(self, name: str, value: float, labels: dict[str, str] | None = None, help: str = "") -> None:
        with self._lock:
            summary = self._summaries[self._key(name, labels)]
            summary[0] += 1
            summary[1] += value
            self._help.setdefault(name, ("summary", help))

    def set(self, name: str, value: float, labels: dict[str, str] | None = None, help: str = "") -> None:
        with self._lock:
            self._gauges[self._key(name, labels)] = value
            self._help.setdefault(name, ("gauge", help))

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        with self._lock:
            return self._counters.get(self._key(name, labels), 0.0)

    def render(self) -> str:
        """Everything in the Prometheus text exposition format."""

        def label_text(labels: tuple) -> str:
            if not labels:
                return ""
            return "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"

        lines = []
        with self._lock:
            for name, (kind, text) in sorted(self._help.items()):
                lines.append(f"# HELP {name} {text or name}")
                lines.append(f"# TYPE {name} {kind}")
                if kind == "counter":
                    for (metric, labels), value in sorted(self._counters.items()):
                        if metric == name:
                            lines.append(f"{name}{label_text(labels)} {value:g}")
                elif kind == "gauge":
                    for (metric, labels), value in sorted(self._gauges.items()):
                        if metric == name:
                            lines.append(f"{name}{label_text(labels)} {value:g}")
                else:
                    for (metric, labels), (count, total) in sorted(self._summaries.items()):
                        if metric == name:
                            lines.append(f"{name}_count{label_text(labels)} {count:g}")
                            lines.append(f"{name}_sum{label_text(labels)} {total:.6f}")
        return "\n".join(lines) + "\n"
