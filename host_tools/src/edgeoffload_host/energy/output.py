"""What `edgeoffload-host energy` writes: CSV, a Markdown table, a PNG bar chart and the energy profile
(``edgeoffloadctl profile import FILE`` reads it), each written atomically and never over an existing file
unless asked to.

Profile (``"schema": 1``)::

    {"schema": 1, "kind": "edgeoffload.energy-profile", "source": "joulescope", "recording": "run1.jls",
     "created_utc": "...Z", "alignment": "gpi" | "utc",
     "entries": [{"model", "target", "n", "energy_mj_mean", "energy_mj_stdev", "active_energy_mj_mean" | null,
                  "latency_ms_mean", "idle_power_w" | null}]}
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeoffload_host.energy.errors import EnergyError
from edgeoffload_host.energy.measure import Entry, Idle
from edgeoffload_host.files import write_new_or_replace

PROFILE_SCHEMA = 1
PROFILE_KIND = "edgeoffload.energy-profile"
CSV_COLUMNS = ("model", "target", "n", "energy_mj_mean", "energy_mj_stdev", "active_energy_mj_mean",
               "latency_ms_mean", "window_ms_mean", "power_w_mean", "idle_power_w")
DPI = 120


def _significant(value: float | None) -> float | None:
    """Six significant digits: what the instruments resolve, without float noise in the files."""
    return None if value is None else float(f"{value:.6g}")


def entry_values(entry: Entry, idle: Idle) -> dict[str, Any]:
    values: dict[str, Any] = {"model": entry.model, "target": entry.target, "n": entry.n}
    for key in CSV_COLUMNS[3:-1]:
        values[key] = _significant(getattr(entry, key))
    values["idle_power_w"] = _significant(idle.power_w)
    return values


def to_csv(entries: Sequence[Entry], idle: Idle) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for entry in entries:
        writer.writerow({k: "" if v is None else v for k, v in entry_values(entry, idle).items()})
    return out.getvalue()


def to_markdown(entries: Sequence[Entry], idle: Idle, title: str) -> str:
    idle_text = "none" if idle.power_w is None else f"{idle.power_w:.4f} W"
    lines = [f"# {title}", "", f"Idle power: {idle_text} ({idle.source}).", "",
             "| model | target | n | energy mJ | stdev mJ | active mJ | latency ms | window ms | mean W |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for e in entries:
        active = "–" if e.active_energy_mj_mean is None else f"{e.active_energy_mj_mean:.4f}"
        lines.append(f"| {e.model} | {e.target} | {e.n} | {e.energy_mj_mean:.4f} | {e.energy_mj_stdev:.4f} | "
                     f"{active} | {e.latency_ms_mean:.3f} | {e.window_ms_mean:.3f} | {e.power_w_mean:.4f} |")
    return "\n".join(lines) + "\n"


def to_png(entries: Sequence[Entry], title: str) -> bytes:
    """Energy per inference (mean ± stdev) per (model, target), active energy beside it when known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [f"{e.model}\n{e.target}" for e in entries]
    x = np.arange(len(entries))
    has_active = any(e.active_energy_mj_mean is not None for e in entries)
    width = 0.4 if has_active else 0.7
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(entries) + 2), 4.5))
    bars = ax.bar(x - (width / 2 if has_active else 0), [e.energy_mj_mean for e in entries], width,
                  yerr=[e.energy_mj_stdev for e in entries], capsize=3, label="total")
    ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=2)
    if has_active:
        active = [np.nan if e.active_energy_mj_mean is None else e.active_energy_mj_mean for e in entries]
        bars = ax.bar(x + width / 2, active, width, label="active (above idle)")
        ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=2)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("energy per inference (mJ)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.margins(y=0.15)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def profile_document(entries: Sequence[Entry], idle: Idle, *, recording: str, alignment: str) -> dict[str, Any]:
    keep = ("model", "target", "n", "energy_mj_mean", "energy_mj_stdev", "active_energy_mj_mean",
            "latency_ms_mean", "idle_power_w")
    return {
        "schema": PROFILE_SCHEMA, "kind": PROFILE_KIND, "source": "joulescope", "recording": recording,
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "alignment": alignment,
        "entries": [{k: v for k, v in entry_values(e, idle).items() if k in keep} for e in entries],
    }


def profile_bytes(entries: Sequence[Entry], idle: Idle, *, recording: str, alignment: str) -> bytes:
    """The profile file, read back as the daemon will (edgeoffloadctl profile import): EnergyError, before
    anything is written, when the daemon would refuse it (a window that measured no energy, say)."""
    from edgeoffload.engine.energy_import import parse_energy_profile
    from edgeoffload.errors import RequestError

    data = (json.dumps(profile_document(entries, idle, recording=recording, alignment=alignment), indent=2)
            + "\n").encode()
    try:
        parse_energy_profile(data, where="--profile")
    except RequestError as exc:
        raise EnergyError(f"{exc}; the daemon would refuse this profile, so it is not written") from None
    return data


def check_outputs(outputs: dict[str, Path | None], inputs: Sequence[Path], force: bool) -> None:
    """Before any work: every output is new (or --force), distinct, not an input, in an existing folder."""
    seen: dict[Path, str] = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        resolved = path.resolve()
        if resolved in seen:
            raise EnergyError(f"{flag}: {path} is also given to {seen[resolved]}; give each output its own file")
        if any(resolved == p.resolve() for p in inputs):
            raise EnergyError(f"{flag}: {path} is an input of this command; choose another file")
        seen[resolved] = flag
        if path.is_dir():
            raise EnergyError(f"{flag}: {path} is a directory; give a file name")
        if path.exists() and not force:
            raise EnergyError(f"{flag}: {path} already exists; pass --force to replace it or choose another file")
        if not path.parent.is_dir():
            raise EnergyError(f"{flag}: folder {path.parent} does not exist")


def write_atomic(path: Path, data: bytes, force: bool) -> int:
    """Write an output atomically, never over an existing file unless `force` (EnergyError otherwise)."""
    return write_new_or_replace(path, data, force, EnergyError)
