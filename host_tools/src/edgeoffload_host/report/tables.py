"""Rows of an evaluation results file, ordered like the study's figures, as CSV and a Markdown table.

Groups are architecture × input size (``Mobilenet 32``) in the order first seen; within a group the
variants go float, Q, PQ, PWQ, then any others in the order first seen.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

VARIANT_ORDER = ("float", "Q", "PQ", "PWQ", "WQ", "P", "W", "PW")
STATS = ("mean_ms", "p50_ms", "p99_ms", "stdev_ms")


@dataclass(frozen=True)
class Row:
    """One model of the results file."""

    group: str  # "Mobilenet 32"
    variant: str  # float, Q, PQ, PWQ
    name: str
    file: str
    size_bytes: int
    gzip_size_bytes: int
    accuracy: float
    float_accuracy: float | None
    latency_ms: dict[int, dict[str, float]]  # threads -> stats


def rows_from_results(results: dict[str, Any]) -> list[Row]:
    rows = [Row(f"{m['architecture_name']} {m['input_px']}", m["label"], m["name"], str(m.get("file", "")),
                m["size_bytes"], m["gzip_size_bytes"], float(m["accuracy"]),
                m.get("float_accuracy") if isinstance(m.get("float_accuracy"), (int, float)) else None,
                {int(t): s for t, s in m["latency_ms"].items()})
            for m in results["models"]]
    groups = list(dict.fromkeys(r.group for r in rows))
    seen = list(dict.fromkeys(r.variant for r in rows))
    order = [v for v in VARIANT_ORDER if v in seen] + [v for v in seen if v not in VARIANT_ORDER]
    return sorted(rows, key=lambda r: (groups.index(r.group), order.index(r.variant)))


def groups_and_variants(rows: Sequence[Row]) -> tuple[list[str], list[str]]:
    return list(dict.fromkeys(r.group for r in rows)), list(dict.fromkeys(
        v for v in [*VARIANT_ORDER, *(r.variant for r in rows)] if any(r.variant == v for r in rows)))


def thread_counts(rows: Sequence[Row]) -> list[int]:
    return sorted({t for r in rows for t in r.latency_ms})


def _float_row(rows: Sequence[Row], row: Row) -> Row | None:
    return next((r for r in rows if r.group == row.group and r.variant == "float"), None)


def table(rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by CSV and Markdown: sizes, ratios to float, accuracy, latency per threads."""
    threads = thread_counts(rows)
    header = ["model", "variant", "name", "file", "size_bytes", "size_vs_float", "gzip_size_bytes",
              "gzip_vs_float", "accuracy", "accuracy_drop_points"]
    header += [f"{stat}_{t}t" for t in threads for stat in STATS]
    cells = []
    for row in rows:
        base = _float_row(rows, row)
        cells.append([
            row.group, row.variant, row.name, row.file, str(row.size_bytes),
            _ratio(row.size_bytes, base.size_bytes if base else None), str(row.gzip_size_bytes),
            _ratio(row.gzip_size_bytes, base.gzip_size_bytes if base else None), f"{row.accuracy:.4f}",
            "" if base is None else f"{100 * (base.accuracy - row.accuracy):.1f}",
            *[_stat(row, t, stat) for t in threads for stat in STATS],
        ])
    return header, cells


def _ratio(value: int, base: int | None) -> str:
    return "" if not base else f"{value / base:.3f}"


def _stat(row: Row, threads: int, stat: str) -> str:
    stats = row.latency_ms.get(threads)
    return "" if stats is None else f"{stats[stat]:.3f}"


def to_csv(rows: Sequence[Row]) -> str:
    header, cells = table(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(cells)
    return out.getvalue()


def to_markdown(rows: Sequence[Row], title: str) -> str:
    """A readable table: sizes in MB with ratios to float, accuracy, mean latency per thread count."""
    threads = thread_counts(rows)
    header = ["model", "variant", "size MB", "× float", "gzip MB", "× float", "accuracy", "drop (points)"]
    header += [f"mean ms, {t} thread{'s' if t > 1 else ''}" for t in threads]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        base = _float_row(rows, row)
        cells = [row.group, row.variant, f"{row.size_bytes / 1e6:.2f}",
                 _ratio(row.size_bytes, base.size_bytes if base else None), f"{row.gzip_size_bytes / 1e6:.2f}",
                 _ratio(row.gzip_size_bytes, base.gzip_size_bytes if base else None), f"{row.accuracy:.3f}",
                 "" if base is None else f"{100 * (base.accuracy - row.accuracy):.1f}"]
        cells += [_stat(row, t, "mean_ms") for t in threads]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
