"""Counters and histograms rendered in the Prometheus text exposition format (no dependency).

Kept in-process and tiny: the router and each service replica own their numbers, and ``/metrics``
renders them on request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    """Cumulative-bucket histogram as Prometheus defines it (``le`` upper bounds, +Inf, sum, count)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1

    def to_dict(self) -> dict:
        return {
            "buckets": list(self.buckets),
            "counts": list(self.counts),
            "sum": self.sum,
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Histogram:
        h = cls(data["buckets"])
        h.counts, h.sum, h.count = list(data["counts"]), float(data["sum"]), int(data["count"])
        return h


def _labels(labels: dict[str, str] | None) -> str:
    if not labels:
        return ""
    body = ",".join(
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in sorted(labels.items())
    )
    return "{" + body + "}"


def _num(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


class PromText:
    """Builds one exposition document; each metric family gets its HELP and TYPE lines once."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._seen: set[str] = set()

    def _header(self, name: str, kind: str, help_text: str) -> None:
        if name not in self._seen:
            self._seen.add(name)
            self.lines.append(f"# HELP {name} {help_text}")
            self.lines.append(f"# TYPE {name} {kind}")

    def counter(
        self, name: str, help_text: str, samples: Iterable[tuple[dict[str, str] | None, float]]
    ) -> None:
        self._header(name, "counter", help_text)
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {_num(value)}")

    def gauge(self, name: str, help_text: str, value: float, labels: dict[str, str] | None = None) -> None:
        self._header(name, "gauge", help_text)
        self.lines.append(f"{name}{_labels(labels)} {_num(value)}")

    def histogram(
        self, name: str, help_text: str, hist: Histogram, labels: dict[str, str] | None = None
    ) -> None:
        self._header(name, "histogram", help_text)
        running = 0
        for bound, count in zip(hist.buckets, hist.counts):
            running += count
            self.lines.append(
                f"{name}_bucket{_labels({**(labels or {}), 'le': _num(float(bound))})} {running}"
            )
        running += hist.counts[-1]
        self.lines.append(f"{name}_bucket{_labels({**(labels or {}), 'le': '+Inf'})} {running}")
        self.lines.append(f"{name}_sum{_labels(labels)} {_num(float(hist.sum))}")
        self.lines.append(f"{name}_count{_labels(labels)} {hist.count}")

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"
