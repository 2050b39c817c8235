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
