"""PNG plots for the evaluation reports (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def plot_f1_sweep(sweep: list[dict], threshold: float, path: str | os.PathLike, title: str = "") -> Path:
    """Macro and per-class F1 against the decision threshold, with the reported threshold marked."""
    ts = [r["threshold"] for r in sweep]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(ts, [r["macro_f1"] * 100 for r in sweep], label="macro F1", linewidth=2)
    ax.plot(ts, [r["f1_correct"] * 100 for r in sweep], label="F1 correct steps", linestyle="--")
    ax.plot(ts, [r["f1_incorrect"] * 100 for r in sweep], label="F1 incorrect steps", linestyle=":")
    ax.axvline(threshold, color="grey", linewidth=1)
    ax.text(threshold, 2, f" t={threshold:g}", color="grey")
    ax.set_xlabel("threshold on P('+')  (step predicted correct when score > t)")
    ax.set_ylabel("F1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or "VisualProcessBench: F1 vs threshold")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_judge_accuracy(report: dict, path: str | os.PathLike, title: str = "") -> Path:
    """Accuracy per category for each candidate order, plus the first-position pick rate."""
    orders = [k for k in ("original_order", "swapped_order") if k in report]
    cats = sorted({c for k in orders for c in report[k]["by_category"]})
    labels = cats + ["overall", "macro"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    width = 0.8 / max(len(orders), 1)
    for j, key in enumerate(orders):
        r = report[key]
        vals = [r["by_category"].get(c, {}).get("accuracy", 0) for c in cats]
        vals += [r["overall"]["accuracy"], r["macro_accuracy"]]
        xs = [i + j * width for i in range(len(labels))]
        ax.bar(xs, [v * 100 for v in vals], width=width, label=key.replace("_", " "))
    ax.set_xticks([i + width * (len(orders) - 1) / 2 for i in range(len(labels))], labels)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    stats = report.get("order_stats", {})

    def rate(key: str) -> str:
        value = stats.get(key)
        return "n/a" if value is None or value != value else f"{value:.2f}"

    subtitle = (
        f"first-position picks {rate('first_position_rate')}, swap flips {rate('swap_flip_rate')}, "
        f"parse failures {rate('parse_failure_rate')}"
    )
    ax.set_title(f"{title or 'VL-RewardBench'}\n{subtitle}", fontsize="medium")
    ax.legend(loc="best")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_bon(curves: dict[str, list[tuple[int, float]]], path: str | os.PathLike, title: str = "") -> Path:
    """Accuracy against N for each selector."""
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    for name, points in curves.items():
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        style = "--" if name in ("oracle (pass@N)", "pass@1") else "-"
        ax.plot(xs, [y * 100 for y in ys], style, marker="o", label=name)
    ax.set_xscale("log", base=2)
    ticks = sorted({n for pts in curves.values() for n, _ in pts})
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.minorticks_off()
    ax.set_xlabel("N (responses per question)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "Best-of-N accuracy")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)
