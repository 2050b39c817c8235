"""Energy measured elsewhere (a Joulescope recording turned into a profile by `edgeoffload-host energy`),
imported so decisions use it: `edgeoffloadctl profile import FILE`, kept in `<state_dir>/energy-imports.json`.

The file (format C): {"schema": 1, "kind": "edgeoffload.energy-profile", "source": "joulescope",
"recording": ..., "created_utc": ..., "alignment": "gpi" | "utc", "entries": [{"model", "target", "n",
"energy_mj_mean", "energy_mj_stdev", "active_energy_mj_mean" | null, "latency_ms_mean", "idle_power_w" | null}]}.
Every problem is reported at once with the entry it is in; a bad file changes nothing.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeoffload.atomicfile import replace_file
from edgeoffload.errors import RequestError

log = logging.getLogger(__name__)

KIND = "edgeoffload.energy-profile"
MAX_BYTES = 4 * 1024 * 1024
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class ImportedEnergy:
    """One model on one target as measured: energy per inference and the latency it came with."""

    model: str
    target: str
    n: int
    energy_mj_mean: float
    energy_mj_stdev: float
    active_energy_mj_mean: float | None
    latency_ms_mean: float
    idle_power_w: float | None
    source: str
    recording: str

    @property
    def power_w(self) -> float:
        """Mean power while it ran: what decisions multiply by the current latency estimate."""
        return self.energy_mj_mean / self.latency_ms_mean

    @property
    def label(self) -> str:
        return f"{self.source} (imported {self.recording})"

    def to_dict(self) -> dict:
        return {**asdict(self), "power_w": self.power_w}


def parse_energy_profile(text: str | bytes, where: str = "profile") -> list[ImportedEnergy]:
    """RequestError listing every problem, each with the entry and key it is in."""
    if len(text) > MAX_BYTES:
        raise RequestError(f"{where}: {len(text)} bytes is too large for an energy profile (at most {MAX_BYTES})")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise RequestError(f"{where}: not JSON: {e}") from e
    problems: list[str] = []
    if not isinstance(doc, dict):
        raise RequestError(f"{where}: expected a JSON object (an energy profile), got {type(doc).__name__}")
    if doc.get("schema") != 1 or doc.get("kind") != KIND:
        problems.append(f"schema/kind: expected schema 1 and kind {KIND!r}, got {doc.get('schema')!r} and "
                        f"{doc.get('kind')!r} (write it with edgeoffload-host energy --profile FILE)")
    source, recording = doc.get("source"), doc.get("recording")
    entries = doc.get("entries")
    if not isinstance(entries, list) or not entries or len(entries) > MAX_ENTRIES:
        problems.append(f"entries: expected a list of 1 to {MAX_ENTRIES} entries")
        entries = []
    out = [e for i, raw in enumerate(entries) if (e := _entry(raw, f"entries[{i}]", problems,
                                                              str(source or "imported"), str(recording or "?")))]
    if problems:
        raise RequestError(f"{where}: " + "; ".join(problems[:20]) + (" ..." if len(problems) > 20 else ""))
    return out


def _entry(raw: Any, path: str, problems: list[str], source: str, recording: str) -> ImportedEnergy | None:
    if not isinstance(raw, dict):
        problems.append(f"{path}: expected an object")
        return None
    before = len(problems)
    names = {k: raw.get(k) for k in ("model", "target")}
    for key, value in names.items():
        if not isinstance(value, str) or not value:
            problems.append(f"{path}.{key}: expected a name, got {value!r}")
    n = raw.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        problems.append(f"{path}.n: expected a count >= 1, got {n!r}")
    values = {k: _number(raw, k, path, problems, positive=k in ("energy_mj_mean", "latency_ms_mean"),
                         optional=k in ("active_energy_mj_mean", "idle_power_w"))
              for k in ("energy_mj_mean", "energy_mj_stdev", "active_energy_mj_mean", "latency_ms_mean",
                        "idle_power_w")}
    if len(problems) > before:
        return None
    # merged stores keep each entry's own origin
    source = raw["source"] if isinstance(raw.get("source"), str) else source
    recording = raw["recording"] if isinstance(raw.get("recording"), str) else recording
    return ImportedEnergy(names["model"], names["target"], n, values["energy_mj_mean"], values["energy_mj_stdev"],
                          values["active_energy_mj_mean"], values["latency_ms_mean"], values["idle_power_w"],
                          source, recording)


def _number(raw: dict, key: str, path: str, problems: list[str], *, positive: bool, optional: bool) -> float | None:
    value = raw.get(key)
    if value is None and optional:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0) or (not positive and key != "active_energy_mj_mean" and value < 0):
        want = "a finite number > 0" if positive else "a finite number"
        problems.append(f"{path}.{key}: expected {want}{' or null' if optional else ''}, got {value!r}")
        return None
    return float(value)


class EnergyImports:
    """The imported figures in force, persisted atomically; a later import of a pair replaces it."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "energy-imports.json"
        self.entries: dict[tuple[str, str], ImportedEnergy] = {}

    def load(self) -> list[ImportedEnergy]:
        try:
            self.entries = {(e.model, e.target): e for e in parse_energy_profile(self.path.read_bytes(), str(self.path))}
        except FileNotFoundError:
            self.entries = {}
        except (OSError, RequestError) as e:
            log.warning("imported energy %s is unreadable (%s): ignored until the next import", self.path, e)
            self.entries = {}
        return list(self.entries.values())

    def add(self, imported: list[ImportedEnergy]) -> None:
        merged = {**self.entries, **{(e.model, e.target): e for e in imported}}
        doc = {"schema": 1, "kind": KIND, "source": "merged imports", "recording": "several",
               "entries": [{k: v for k, v in asdict(e).items() if k not in ("source", "recording")}
                           | {"source": e.source, "recording": e.recording} for e in merged.values()]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self.path, json.dumps(doc, indent=1).encode())
        self.entries = merged
