"""Small declarative validators: each check turns a plain YAML value into a typed one or reports why not.

A check is `check(value, path, ctx) -> typed value | INVALID`. It reports every problem it finds
through `ctx` and never raises for bad input. Config sections are frozen dataclasses whose fields
carry their check (`spec(...)`); `record(cls)` validates a mapping against them. A dataclass may
define `complete(values, given)`, a static method that fills defaults which depend on other keys
and yields `(key, message)` for cross-key problems; it also runs when some values are INVALID
(compare only what `valid(...)` says is valid). No I/O: paths are only resolved against the config's folder.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, Problem
from .yamlsrc import FILE_PATH, INVALID, join, parent_path

Check = Callable[[Any, str, "Ctx"], Any]
SECRET_KEYS = frozenset({"password", "passwd", "secret", "token", "api_key"})


class Ctx:
    """Where problems go, and what they need: file name, key lines, the folder relative paths start from."""

    def __init__(self, source: str, lines: Mapping[str, int], base_dir: Path | None = None):
        self.source = source
        self.lines = lines
        self.base_dir = base_dir
        self.problems: list[Problem] = []

    def line(self, path: str) -> int:
        """The line of `path`, or of its nearest parent that has one (a missing key: its mapping's line)."""
        while path not in self.lines and path:
            path = parent_path(path)
        return self.lines.get(path, 1)

    def report(self, path: str, message: str, line: int | None = None) -> Any:
        self.problems.append(Problem(self.source, line or self.line(path), path or FILE_PATH, message))
        return INVALID

    def raise_if_problems(self) -> None:
        if self.problems:
            raise ConfigError(sorted(self.problems, key=lambda p: p.line))


def valid(*values: Any) -> bool:
    """True when none of `values` has a problem reported (for `complete` hooks that compare keys)."""
    return all(x is not INVALID for x in values)


def apply(check: Check, value: Any, path: str, ctx: Ctx) -> Any:
    """Run `check` unless the value already has a problem reported."""
    return INVALID if value is INVALID else check(value, path, ctx)


def spec(check: Check, default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field validated by `check`; no default and no factory means the key is required."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"check": check})


def fmt(x: float) -> str:
    """A number as a person would write it: 600000, 0.1, 2.5."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return str(x)


def describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if value is None:
        return "null"
    return "a list" if isinstance(value, list) else "a mapping"


def _range_message(gt: float | None, ge: float | None, le: float | None) -> str:
    low = f"greater than {fmt(gt)}" if gt is not None else None
    if ge is not None and le is not None:
        return f"between {fmt(ge)} and {fmt(le)}"
    low = low or (f"at least {fmt(ge)}" if ge is not None else None)
    high = f"at most {fmt(le)}" if le is not None else None
    return " and ".join(p for p in (low, high) if p)


def _in_range(v: float, path: str, ctx: Ctx, gt=None, ge=None, le=None) -> Any:
    if (gt is not None and v <= gt) or (ge is not None and v < ge) or (le is not None and v > le):
        return ctx.report(path, f"must be {_range_message(gt, ge, le)}, got {fmt(v)}")
    return v


def integer(ge: int | None = None, le: int | None = None) -> Check:
    def check(v: Any, path: str, ctx: Ctx) -> Any:
        if isinstance(v, bool) or not isinstance(v, int):
            return ctx.report(path, f"expected an integer, got {describe(v)}")
        return _in_range(v, path, ctx, ge=ge, le=le)

    return check


def number(gt: float | None = None, ge: float | None = None, le: float | None = None) -> Check:
    """A finite float; an integer is accepted and converted, a float is never accepted where an int is due."""

    def check(v: Any, path: str, ctx: Ctx) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return ctx.report(path, f"expected a number, got {describe(v)}{_number_hint(v)}")
        try:
            v = float(v)
        except OverflowError:
            return ctx.report(path, "number is too large")
        if not math.isfinite(v):
            return ctx.report(path, f"must be a finite number, got {v}")
        return _in_range(v, path, ctx, gt=gt, ge=ge, le=le)

    return check


def _number_hint(v: Any) -> str:
    """YAML 1.1 reads `2e6` as text: say how to write it as a number."""
    try:
        x = float(v) if isinstance(v, str) else math.nan
    except ValueError:
        return ""
    if not math.isfinite(x):
        return ""
    text = fmt(x)
    if "e" in text and "." not in text:
        text = text.replace("e", ".0e")
    return f" (YAML reads it as text; write {text})"


def boolean(v: Any, path: str, ctx: Ctx) -> Any:
    if not isinstance(v, bool):
        return ctx.report(path, f"expected true or false, got {describe(v)}")
    return v


def string(pattern: str | None = None, hint: str = "") -> Check:
    """A non-empty string; with `pattern`, it must match it whole (`hint` says what is allowed)."""
    regex = re.compile(pattern) if pattern else None

    def check(v: Any, path: str, ctx: Ctx) -> Any:
        if not isinstance(v, str):
            return ctx.report(path, f"expected a string, got {describe(v)}")
        if not v:
            return ctx.report(path, "must not be empty")
        if regex and not regex.fullmatch(v):
            return ctx.report(path, f"invalid value {v[:70]!r}: {hint or 'must match ' + regex.pattern}")
        return v

    return check


def choice(allowed: Iterable[str], convert: Callable[[str], Any] | None = None) -> Check:
    allowed = tuple(allowed)

    def check(v: Any, path: str, ctx: Ctx) -> Any:
        if not isinstance(v, str) or v not in allowed:
            return ctx.report(path, f"must be one of: {', '.join(allowed)}; got {describe(v)}")
        return convert(v) if convert else v

    return check


def path_value(v: Any, path: str, ctx: Ctx) -> Any:
    """A file system path; a relative one is taken from the config file's folder. Nothing is opened."""
    v = string()(v, path, ctx)
    if v is INVALID:
        return v
    if "\0" in v:
        return ctx.report(path, "a path must not contain a NUL character")
    p = Path(v)
    return ctx.base_dir / p if ctx.base_dir is not None and not p.is_absolute() else p


def optional(check: Check) -> Check:
    def check_optional(v: Any, path: str, ctx: Ctx) -> Any:
        return None if v is None else check(v, path, ctx)

    return check_optional


def list_of(item: Check, min_len: int = 0, unique: bool = False) -> Check:
    """A list, returned as a tuple; `unique` reports repeated items."""

    def check(v: Any, path: str, ctx: Ctx) -> Any:
        if not isinstance(v, list):
            return ctx.report(path, f"expected a list, got {describe(v)}")
        if len(v) < min_len:
            return ctx.report(path, f"must list at least {min_len} item{'s' * (min_len != 1)}")
        items = tuple(apply(item, x, f"{path}[{i}]", ctx) for i, x in enumerate(v))
        if unique:
            _report_repeats(items, path, ctx)
        return INVALID if any(x is INVALID for x in items) else items

    return check


def _report_repeats(items: tuple, path: str, ctx: Ctx) -> None:
    first: dict[Any, int] = {}
    for i, x in enumerate(items):
        if x is INVALID:
            continue
        if x in first:
            ctx.report(f"{path}[{i}]", f"{x!r} is listed twice (first as {path}[{first[x]}])")
        first.setdefault(x, i)


def map_of(value: Check, key: Check | None = None) -> Check:
    """A mapping with free-form keys (checked by `key` if given), returned as a dict."""

    def check(v: Any, path: str, ctx: Ctx) -> Any:
        if not isinstance(v, dict):
            return ctx.report(path, f"expected a mapping, got {describe(v)}")
        out = {}
        for k, x in v.items():
            child = join(path, k)
            k = key(k, child, ctx) if key else k
            out[k] = apply(value, x, child, ctx)
        return INVALID if any(x is INVALID for x in (*out, *out.values())) else out

    return check


def unknown_key_message(key: str, valid: Iterable[str]) -> str:
    valid = tuple(valid)
    if key.lower() in SECRET_KEYS:
        how = "use a systemd credential (LoadCredential=)"
        if f"{key}_file" in valid:
            how = f"put it in a file and give that file's path as {key}_file, or {how}"
        return f"secrets must not be written in YAML: {how}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean '{close[0]}'?"
    return f"unknown key; valid keys here: {', '.join(valid)}"


@functools.cache
def record(cls: type) -> Check:
    """Validate a mapping against the `spec` fields of dataclass `cls` and build it. null means {}."""
    fields = [f for f in dataclasses.fields(cls) if "check" in f.metadata]
    names = [f.name for f in fields]
    complete = getattr(cls, "complete", None)

    def check(v: Any, path: str, ctx: Ctx) -> Any:
        v = {} if v is None else v
        if not isinstance(v, dict):
            return ctx.report(path, f"expected a mapping, got {describe(v)}")
        for key in v:
            if key not in names:
                ctx.report(join(path, key), unknown_key_message(key, names))
        values = {f.name: _field_value(f, v, path, ctx) for f in fields}
        problems = list(complete(values, frozenset(v))) if complete else []
        for key, message in problems:
            ctx.report(join(path, key), message)
        if problems or any(x is INVALID for x in values.values()) or len(v.keys() - names):
            return INVALID
        return cls(**values)

    return check


def _field_value(f: dataclasses.Field, given: dict, path: str, ctx: Ctx) -> Any:
    child = join(path, f.name)
    if f.name in given:
        return apply(f.metadata["check"], given[f.name], child, ctx)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return ctx.report(child, "required key is missing", line=ctx.line(path))


def version(supported: int = 1) -> Check:
    def check(v: Any, path: str, ctx: Ctx) -> Any:
        v = integer()(v, path, ctx)
        if v is not INVALID and v != supported:
            return ctx.report(path, f"unsupported version {v}: this edgeoffload reads version {supported}")
        return v

    return check


def tagged(registry: Mapping[str, type], default: str) -> Check:
    """A section whose `type:` key (default `default`) picks the dataclass from `registry`."""
    choices = choice(registry)

    def check(v: Any, path: str, ctx: Ctx) -> Any:
        v = {} if v is None else v
        if not isinstance(v, dict):
            return ctx.report(path, f"expected a mapping, got {describe(v)}")
        kind = choices(v.get("type", default), join(path, "type"), ctx)
        return INVALID if kind is INVALID else record(registry[kind])(v, path, ctx)

    return check
