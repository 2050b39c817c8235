"""How edgeoffloadctl prints: aligned tables for people, JSON for machines, one line per signal for `watch`."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to the widest cell; numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in rows) and bool(rows)
               for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers)] + [line(r) for r in cells])


def _cell(v: object) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    if v is None:
        return "-"
    return str(v)


def pairs(items: Sequence[tuple[str, object]]) -> str:
    """`key   value` lines (status)."""
    width = max(len(k) for k, _ in items)
    return "\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in items)


def emit(data: object, text: str, as_json: bool) -> None:
    print(json.dumps(data, indent=1, allow_nan=False, default=_jsonable) if as_json else text)


def _jsonable(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)


def finite(v: object) -> object:
    """NaN and infinities become None (JSON has no such numbers)."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def signal_line(name: str, args: dict, as_json: bool) -> str:
    now = time.time()
    if as_json:
        return json.dumps({"signal": name, "unix_s": round(now, 3), **{k: finite(v) for k, v in args.items()}})
    stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
    return f"{stamp} {name:<26} " + " ".join(f"{k}={_cell(v)}" for k, v in args.items())


def flush() -> None:
    sys.stdout.flush()


def sensors_text(data: dict) -> str:
    """`edgeoffloadctl sensors`: the rails table, the energy source, then temperatures and CPU clocks."""
    rows = [(c.get("source"), c.get("chip"), c.get("rail"), c.get("unit"), finite(c.get("power_w")),
             finite(c.get("energy_j"))) for c in data.get("channels") or []]
    energy = data.get("energy") or {}
    lines = [table(("SOURCE", "CHIP", "RAIL", "UNIT", "POWER_W", "ENERGY_J"), rows) if rows
             else _no_rails(energy.get("modelled") or {})]
    state = "known" if energy.get("known") else f"unknown: {energy.get('problem')}"
    idle = finite(energy.get("idle_power_w"))
    lines.append(f"energy source: {energy.get('label')} ({state})"
                 + (f", idle baseline {_cell(idle)} W" if idle is not None else ""))
    lines += [f"imported: {i['model']} on {i['target']} {_cell(finite(i['power_w']))} W, {i['label']}"
              for i in energy.get("imported") or []]
    env = data.get("environment")
    if env is None:
        return "\n".join(lines + ["thermal and cpufreq: not read yet (the daemon is starting)"])
    thermal, cpufreq = env.get("thermal") or {}, env.get("cpufreq") or {}
    zones, policies = thermal.get("zones") or [], cpufreq.get("policies") or []
    lines += [f"thermal: {thermal['error']}"] if thermal.get("error") else []
    lines += [f"thermal {z['type'] or '?'} ({z['zone']}): {_celsius(z['temp_c'])}"
              + (f" ({z['error']})" if z.get("error") else "") for z in zones]
    lines += [] if zones or thermal.get("error") else ["thermal: no zones"]
    lines += [f"cpufreq: {cpufreq['error']}"] if cpufreq.get("error") else []
    lines += [_policy_line(p) for p in policies]
    lines += [] if policies or cpufreq.get("error") else ["cpufreq: no policies"]
    return "\n".join(lines)


def _no_rails(modelled: dict) -> str:
    if not modelled:
        return "no power rails"
    return (f"no power rails: modelled figures, {_cell(modelled.get('default_active_w'))} W per target while it "
            f"runs, idle {_cell(modelled.get('idle_low_w'))} W (low) / {_cell(modelled.get('idle_high_w'))} W (high)")


def _celsius(v: object) -> str:
    return "-" if finite(v) is None else f"{v:.1f} °C"


def _mhz(v: object) -> str:
    return "-" if finite(v) is None else f"{v:.0f}"


def _policy_line(p: dict) -> str:
    cpus = ",".join(str(c) for c in p.get("cpus") or []) or "?"
    text = (f"cpufreq {p['policy']} (cpus {cpus}): {_mhz(p['cur_freq_mhz'])} MHz, governor {p['governor'] or '-'} "
            f"(min {_mhz(p['min_freq_mhz'])}, max {_mhz(p['max_freq_mhz'])}, hardware max "
            f"{_mhz(p['hw_max_freq_mhz'])} MHz)")
    return text + (f" ({p['error']})" if p.get("error") else "")
