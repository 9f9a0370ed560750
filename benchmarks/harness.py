"""Ratio timing in one run: conditions interleaved (A B C A B C ...), warmed up, fixed threads.

Machines here are noisy; absolute times drift, ratios measured side by side in one run do not
(much). Every condition runs once per round, the order rotating each round; the report gives the
median and the interquartile range per condition and the median of per-round ratios to a baseline.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


def sync(device: str) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


@dataclass
class Timing:
    name: str
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def iqr(self) -> tuple[float, float]:
        q = statistics.quantiles(self.times, n=4) if len(self.times) >= 4 else [min(self.times), 0, max(self.times)]
        return q[0], q[2]


def interleaved(
    conditions: dict[str, Callable[[], object]], *, rounds: int = 15, warmup: int = 2, device: str = "cpu",
    baseline: str | None = None,
) -> list[dict[str, float | str]]:
    """Time each condition ``rounds`` times, interleaved and rotating; returns table rows."""
    names = list(conditions)
    for _ in range(warmup):
        for n in names:
            conditions[n]()
    timings = {n: Timing(n) for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            sync(device)
            t0 = time.perf_counter()
            conditions[n]()
            sync(device)
            timings[n].times.append(time.perf_counter() - t0)
    base = baseline or names[0]
    rows: list[dict[str, float | str]] = []
    for n in names:
        ratios = [a / b for a, b in zip(timings[n].times, timings[base].times)]
        lo, hi = timings[n].iqr
        rows.append({
            "condition": n, "median_ms": 1e3 * timings[n].median, "iqr_ms": f"{1e3 * lo:.1f}-{1e3 * hi:.1f}",
            "ratio": statistics.median(ratios), "vs": base,
        })
    return rows


def machine() -> dict[str, str]:
    import transformer_lens

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": str(torch.get_num_threads()), "python": platform.python_version(),
        "torch": torch.__version__, "transformer_lens": getattr(transformer_lens, "__version__", "?"),
    }


def markdown(rows: list[dict[str, float | str]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            cells.append(f"{v:.3f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
