"""Metric vs sparsity: the figure every lottery-ticket study starts with (paper 001 Fig. 1–3)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def plot_metric_vs_sparsity(rows: list[dict], metrics: list[str], out_png: Path, *, title: str) -> Path:
    """One line per metric against scope sparsity (%), with the dense level as a dashed reference."""
    levels = sorted(rows, key=lambda r: r["level"])
    x = [100.0 * r["sparsity_scope"] for r in levels]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for metric in metrics:
        y = [r[metric] for r in levels]
        line, = ax.plot(x, y, marker="o", label=metric)
        ax.axhline(y[0], color=line.get_color(), linestyle="--", linewidth=0.8)
    ax.set_xlabel("scope sparsity (% of prunable weights removed)")
    ax.set_ylabel("metric")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
