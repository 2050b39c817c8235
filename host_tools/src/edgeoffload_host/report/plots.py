"""Bar charts of an evaluation, grouped like the study's figures: one group per architecture and input size,
one bar per variant; latency has one panel per thread count. Each figure is returned as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from edgeoffload_host.report.tables import Row, groups_and_variants, thread_counts  # noqa: E402

DPI = 120


def _bars(ax, rows: Sequence[Row], value: Callable[[Row], float | None], ylabel: str, fmt: str,
          error: Callable[[Row], float | None] | None = None) -> None:
    groups, variants = groups_and_variants(rows)
    width = 0.8 / max(len(variants), 1)
    x = np.arange(len(groups))
    for i, variant in enumerate(variants):
        by_group = {r.group: value(r) for r in rows if r.variant == variant}
        heights = [by_group.get(g) for g in groups]
        heights = [np.nan if h is None else h for h in heights]
        errors = None
        if error is not None:
            by_group_err = {r.group: error(r) for r in rows if r.variant == variant}
            upper = [np.nan if by_group_err.get(g) is None else by_group_err[g] for g in groups]
            errors = [np.minimum(upper, heights), upper]  # the lower bar stops at zero
        bars = ax.bar(x - 0.4 + width * (i + 0.5), heights, width, label=variant, yerr=errors, capsize=2)
        ax.bar_label(bars, labels=["" if np.isnan(h) else fmt.format(h) for h in heights], fontsize=7,
                     padding=2)
    ax.set_xticks(x, groups)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, title="variant", title_fontsize=8)
    ax.margins(y=0.15)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def _single(rows: Sequence[Row], value: Callable[[Row], float | None], ylabel: str, title: str,
            fmt: str) -> bytes:
    groups, _ = groups_and_variants(rows)
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(groups) + 2), 4.5))
    _bars(ax, rows, value, ylabel, fmt)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def size_png(rows: Sequence[Row], where: str) -> bytes:
    return _single(rows, lambda r: r.size_bytes / 1e6, ".tflite size (MB)", "Model size per variant",
                   "{:.2f}")


def gzip_size_png(rows: Sequence[Row], where: str) -> bytes:
    return _single(rows, lambda r: r.gzip_size_bytes / 1e6, "gzip size (MB)",
                   "Compressed (gzip -9) size per variant", "{:.2f}")


def accuracy_png(rows: Sequence[Row], where: str) -> bytes:
    return _single(rows, lambda r: 100 * r.accuracy, "top-1 accuracy, held-out (%)",
                   f"Accuracy per variant ({where})", "{:.1f}")


def latency_png(rows: Sequence[Row], where: str) -> bytes:
    """One panel per thread count, mean latency with the standard deviation as error bars."""
    threads = thread_counts(rows)
    groups, _ = groups_and_variants(rows)
    fig, axes = plt.subplots(1, len(threads), figsize=(max(6.0, 2.2 * len(groups) + 2) * len(threads), 4.5),
                             squeeze=False)
    for ax, t in zip(axes[0], threads, strict=True):
        _bars(ax, rows, lambda r, t=t: r.latency_ms[t]["mean_ms"] if t in r.latency_ms else None,
              "mean latency per inference (ms)", "{:.2f}",
              error=lambda r, t=t: r.latency_ms[t]["stdev_ms"] if t in r.latency_ms else None)
        ax.set_title(f"{t} thread{'s' if t > 1 else ''} ({where})", fontsize=10)
    return _png(fig)


PLOTS: dict[str, Callable[[Sequence[Row], str], bytes]] = {
    "size.png": size_png,
    "gzip_size.png": gzip_size_png,
    "accuracy.png": accuracy_png,
    "latency.png": latency_png,
}
