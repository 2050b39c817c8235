"""Latency per model and target with the offload threshold marked, in the manner of the study's Figure 4.1."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_latency(latency_ms: dict[str, dict[str, float]], threshold_ms: dict[str, float], out: Path,
                 title: str) -> Path:
    """latency_ms[model][target] -> bar; threshold_ms[model] -> dashed line (offloading pays above it)."""
    models = list(latency_ms)
    targets = sorted({t for per in latency_ms.values() for t in per})
    width = 0.8 / max(len(targets), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(models) + 2), 4.5))
    x = np.arange(len(models))
    for i, target in enumerate(targets):
        vals = [latency_ms[m].get(target, np.nan) for m in models]
        ax.bar(x - 0.4 + width * (i + 0.5), vals, width, label=target)
    for j, m in enumerate(models):
        if m in threshold_ms:
            ax.hlines(threshold_ms[m], j - 0.45, j + 0.45, colors="black", linestyles="dashed")
            ax.annotate(f"offload {threshold_ms[m]:.1f} ms", (j, threshold_ms[m]), textcoords="offset points",
                        xytext=(0, 4), ha="center", fontsize=8)
    ax.set_xticks(x, models, rotation=15)
    ax.set_ylabel("latency per inference (ms)")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
