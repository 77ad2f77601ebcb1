"""The server's counters, histograms and gauges, written in Prometheus' text format 0.0.4.

Small on purpose: a counter is a dict of label tuples to numbers, a histogram a list of
bucket counts; updates come from the event loop and the worker threads, under one lock.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from typing import ClassVar

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

Labels = tuple[tuple[str, str], ...]


class _Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1


def _fmt_labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Metrics:
    """``inc(name, labels)``, ``observe(name, value)``, gauges read by callables at scrape.

    >>> m = Metrics(); m.inc("lakeloop_serve_requests_total", (("route", "predict"),))
    >>> "lakeloop_serve_requests_total{route=\\"predict\\"} 1" in m.render()
    True
    """

    _HELP: ClassVar[dict[str, tuple[str, str]]] = {
        "lakeloop_serve_requests_total": ("counter", "HTTP requests answered, by route"),
        "lakeloop_serve_errors_total": ("counter", "error answers, by route and HTTP status"),
        "lakeloop_serve_predictions_total": ("counter", "instances predicted, by model version"),
        "lakeloop_serve_request_seconds": ("histogram", "seconds from request to answer"),
        "lakeloop_serve_batch_size": ("histogram", "instances per micro-batch run by the model"),
        "lakeloop_serve_swaps_total": ("counter", "hot swaps to a new model version, by role"),
        "lakeloop_serve_swap_failures_total": (
            "counter",
            "model versions that failed to load or warm (the old one kept serving)",
        ),
        "lakeloop_serve_load_failing": (
            "gauge",
            "failed tries in a row to load the version an alias points at, by role and version"
            " (present while it is retried)",
        ),
        "lakeloop_serve_rejected_total": (
            "counter",
            "requests answered 503 because serve_max_queue instances were waiting, by route",
        ),
        "lakeloop_serve_log_events_total": ("counter", "events written to the inference log"),
        "lakeloop_serve_log_errors_total": (
            "counter",
            "events the inference log failed to write",
        ),
        "lakeloop_serve_shadow_skipped_total": (
            "counter",
            "instances the shadow model skipped because its queue was full",
        ),
        "lakeloop_serve_feedback_total": ("counter", "feedback items durably accepted"),
        "lakeloop_serve_feedback_replaced_total": (
            "counter",
            "feedback items that replaced an earlier label for the same prediction",
        ),
        "lakeloop_serve_model_version": ("gauge", "the model version serving, by role"),
        "lakeloop_serve_queue_depth": ("gauge", "instances waiting for the model"),
        "lakeloop_serve_log_queue_depth": ("gauge", "events waiting for the inference log"),
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {}
        self._histograms: dict[str, _Histogram] = {
            "lakeloop_serve_request_seconds": _Histogram(_LATENCY_BUCKETS),
            "lakeloop_serve_batch_size": _Histogram(tuple(float(b) for b in _BATCH_BUCKETS)),
        }
        self._gauges: dict[str, Callable[[], dict[Labels, float]]] = {}

    def inc(self, name: str, labels: Labels = (), by: float = 1) -> None:
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[labels] = series.get(labels, 0) + by

    def observe(self, name: str, value: float) -> None:
        with self._lock:
            self._histograms[name].observe(value)

    def gauge(self, name: str, read: Callable[[], dict[Labels, float]]) -> None:
        self._gauges[name] = read

    def value(self, name: str, labels: Labels = ()) -> float:
        with self._lock:
            return self._counters.get(name, {}).get(labels, 0)

    def render(self) -> str:
        """Everything in Prometheus' text exposition format (version 0.0.4)."""
        lines: list[str] = []
        with self._lock:
            counters = {k: dict(v) for k, v in self._counters.items()}
            hists = {
                k: (h.bounds, list(h.counts), h.total, h.n) for k, h in self._histograms.items()
            }
        for name, (kind, text) in self._HELP.items():
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            if kind == "counter":
                for labels, value in sorted(counters.get(name, {}).items()):
                    lines.append(f"{name}{_fmt_labels(labels)} {_num(value)}")
            elif kind == "gauge":
                read = self._gauges.get(name)
                for labels, value in sorted((read() if read else {}).items()):
                    lines.append(f"{name}{_fmt_labels(labels)} {_num(value)}")
            else:
                bounds, counts, total, n = hists[name]
                running = 0
                for bound, count in zip(bounds, counts[:-1], strict=True):
                    running += count
                    lines.append(f'{name}_bucket{{le="{_num(bound)}"}} {running}')
                lines.append(f'{name}_bucket{{le="+Inf"}} {n}')
                lines.append(f"{name}_sum {_num(total)}")
                lines.append(f"{name}_count {n}")
        return "\n".join(lines) + "\n"
