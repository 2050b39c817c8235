"""The daemon config (`/etc/edgeoffload/edgeoffloadd.yaml`): schema, cross-key checks, loading."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from .power import ModelledPowerConfig, PowerConfig, power_section
from .schema import (
    Ctx, apply, boolean, choice, describe, fmt, integer, list_of, map_of, number, optional, path_value, record,
    spec, string, valid, version,
)
from .yamlsrc import INVALID, Document, read_document

log = logging.getLogger(__name__)

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
NAME_HINT = (
    "use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit (names appear in MQTT topics)"
)
name_value = string(NAME_PATTERN, NAME_HINT)
DEFAULT_DELEGATE = Path("/usr/lib/libvx_delegate.so")
TARGET_TYPES = ("tflite_cpu", "tflite_npu")
DBUS_BUSES = ("system", "session", "none")
SHA256_HINT = "expected a sha256: 64 lowercase hex digits"


def _url(v: Any, path: str, ctx: Ctx) -> Any:
    """An http(s) URL with a host and optional port and path; checked by parsing only (no I/O)."""
    v = string()(v, path, ctx)
    if v is INVALID:
        return v
    parts = urlsplit(v)
    rules = (
        (not any(c.isspace() for c in v), "must not contain spaces"),
        (parts.scheme in ("http", "https"), "must start with http:// or https://"),
        (bool(parts.hostname), "has no host"),
        (_port_ok(parts), "has an invalid port"),
        (not (parts.username or parts.password), "must not contain a user or password (secrets never go in YAML)"),
        (not (parts.query or parts.fragment), "must not have a query (?...) or fragment (#...)"),
    )
    problem = next((message for ok, message in rules if not ok), None)
    return ctx.report(path, f"URL {problem}: {v!r}") if problem else v


def _port_ok(parts: SplitResult) -> bool:
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        return False
    return True


def _option_value(v: Any, path: str, ctx: Ctx) -> Any:
    """A delegate option: a string, number or boolean, passed to the delegate as a string."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        v = number()(v, path, ctx)
        return v if v is INVALID else fmt(v)
    if isinstance(v, str):
        return v
    return ctx.report(path, f"expected a string, number or boolean, got {describe(v)}")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    name: str = spec(name_value)
    file: Path = spec(path_value)
    manifest: Path | None = spec(optional(path_value), None)
    remote_name: str = spec(string(), "")  # the model's name at the endpoints; "" (not given): `name`
    sha256: str | None = spec(optional(string("[0-9a-f]{64}", SHA256_HINT)), None)

    def __post_init__(self) -> None:
        if not self.remote_name:
            object.__setattr__(self, "remote_name", self.name)

    @property
    def manifest_path(self) -> Path:
        """The manifest to read: the configured one, else `<file>.manifest.json` beside the model."""
        return self.manifest or self.file.with_name(self.file.name + ".manifest.json")


@dataclass(frozen=True, kw_only=True)
class TargetConfig:
    name: str = spec(name_value)
    type: str = spec(choice(TARGET_TYPES))
    threads: int = spec(integer(1, 64), 1)
    delegate: Path | None = spec(path_value, None)  # tflite_npu: DEFAULT_DELEGATE when not given
    delegate_options: dict[str, str] = spec(map_of(_option_value, key=string()), factory=dict)
    # tflite_npu: loading the delegate, the first invoke (graph compile) and profiling run in a child process;
    # one that takes longer than this (plus the profiling time; loading the delegate: at most 30 s) is killed
    # and the target marked unavailable.
    probe_timeout_s: float = spec(number(ge=1, le=3600), 120.0)

    @staticmethod
    def complete(values: dict[str, Any], given: frozenset[str]) -> Iterator[tuple[str, str]]:
        if values["type"] == "tflite_npu" and values["delegate"] is None:
            values["delegate"] = DEFAULT_DELEGATE
        if values["type"] == "tflite_cpu":
            for key in ("delegate", "delegate_options", "probe_timeout_s"):
                if key in given:
                    yield key, f"{key} is only for tflite_npu targets; this one is tflite_cpu"


DEFAULT_TARGETS = (
    TargetConfig(name="cpu1", type="tflite_cpu", threads=1),
    TargetConfig(name="cpu4", type="tflite_cpu", threads=4),
    TargetConfig(name="npu", type="tflite_npu", delegate=DEFAULT_DELEGATE),
)


@dataclass(frozen=True, kw_only=True)
class EndpointConfig:
    name: str = spec(name_value)
    url: str = spec(_url)
    timeout_ms: float = spec(number(ge=1, le=600000), 2000.0)
    min_timeout_ms: float = spec(number(ge=1, le=600000), 20.0)
    health_interval_s: float = spec(number(ge=0.1, le=3600), 5.0)
    binary: str = spec(choice(("auto", "always", "never")), "auto")

    @staticmethod
    def complete(values: dict[str, Any], given: frozenset[str]) -> Iterator[tuple[str, str]]:
        low, high = values["min_timeout_ms"], values["timeout_ms"]
        if valid(low, high) and low > high:
            yield "min_timeout_ms", f"must be at most timeout_ms ({fmt(high)}), got {fmt(low)}"


@dataclass(frozen=True, kw_only=True)
class ProfilingConfig:
    warmup_runs: int = spec(integer(0, 10000), 3)
    runs: int = spec(integer(1, 1000000), 30)
    duration_s: float | None = spec(optional(number(gt=0)), None)  # if set, profile this long instead of `runs`
    max_age_s: float = spec(number(gt=0), 604800.0)
    on_start: bool = spec(boolean, True)
    # With a measured power source: board energy over a run of this length per model and target (warm-up
    # excluded; the study used 150 s), after measuring the idle baseline for idle_baseline_s.
    energy_duration_s: float = spec(number(gt=0, le=3600), 30.0)
    idle_baseline_s: float = spec(number(ge=0.5, le=600), 5.0)

    @staticmethod
    def complete(values: dict[str, Any], given: frozenset[str]) -> Iterator[tuple[str, str]]:
        if "runs" in given and values["duration_s"] not in (None, INVALID):
            yield "duration_s", "give either runs or duration_s, not both"


@dataclass(frozen=True, kw_only=True)
class MqttConfig:
    enabled: bool = spec(boolean, True)
    host: str = spec(string(), "localhost")
    port: int = spec(integer(1, 65535), 1883)
    username: str | None = spec(optional(string()), None)
    password_file: Path | None = spec(optional(path_value), None)
    tls: bool = spec(boolean, False)
    ca_file: Path | None = spec(optional(path_value), None)
    keepalive_s: int = spec(integer(5, 3600), 30)
    summary_interval_s: float = spec(number(ge=0.5, le=86400), 10.0)
    queue_max: int = spec(integer(1, 1000000), 1000)
    client_id: str | None = spec(optional(string()), None)
    power_interval_s: float = spec(number(ge=0, le=86400), 5.0)  # `power` messages (per rail, W); 0: none


@dataclass(frozen=True, kw_only=True)
class WorkloadConfig:
    requests: int = spec(integer(0, 1000000000), 0)
    models: tuple[str, ...] | None = spec(optional(list_of(string(), min_len=1, unique=True)), None)
    inputs: Path | None = spec(optional(path_value), None)
    interval_ms: float = spec(number(ge=0), 0.0)
    seed: int = spec(integer(ge=0), 0)


@dataclass(frozen=True, kw_only=True)
class DbusConfig:
    bus: str = spec(choice(DBUS_BUSES), "system")  # "none": no D-Bus API (a PC demo without a bus)
    decision_signals_per_s: float = spec(number(ge=0, le=1000), 5.0)  # 0: no Decision signals
    workers: int = spec(integer(1, 64), 4)  # method calls served at once (Infer, Profile, SetPolicy, ...)
    max_pending_calls: int = spec(integer(1, 4096), 32)  # beyond this, calls are refused as Busy


@dataclass(frozen=True, kw_only=True)
class LoggingConfig:
    level: str = spec(choice(("debug", "info", "warning", "error")), "info")
    # Every executed request as a JSON line (UTC start/end, sequence number, target, measured energy):
    # `edgeoffload-host energy` aligns it with a Joulescope recording.
    decisions_file: Path | None = spec(optional(path_value), None)


@dataclass(frozen=True, kw_only=True)
class GpioMarkerConfig:
    """A GPIO line driven high during each executed request, wired to a Joulescope GPI input."""

    chip: Path = spec(path_value)  # the kernel GPIO character device, e.g. /dev/gpiochip0
    line: int = spec(integer(0, 1023))


@dataclass(frozen=True, kw_only=True)
class DaemonConfig:
    version: int = spec(version(1))
    device_id: str = spec(name_value)
    state_dir: Path = spec(path_value, Path("/var/lib/edgeoffload"))
    policy_file: Path = spec(path_value, Path("/etc/edgeoffload/policy.yaml"))
    models: tuple[ModelConfig, ...] = spec(list_of(record(ModelConfig), min_len=1))
    targets: tuple[TargetConfig, ...] = spec(list_of(record(TargetConfig), min_len=1), DEFAULT_TARGETS)
    endpoints: tuple[EndpointConfig, ...] = spec(list_of(record(EndpointConfig)), ())
    profiling: ProfilingConfig = spec(record(ProfilingConfig), factory=ProfilingConfig)
    power: PowerConfig = spec(power_section, factory=ModelledPowerConfig)
    mqtt: MqttConfig = spec(record(MqttConfig), factory=MqttConfig)
    dbus: DbusConfig = spec(record(DbusConfig), factory=DbusConfig)
    workload: WorkloadConfig = spec(record(WorkloadConfig), factory=WorkloadConfig)
    logging: LoggingConfig = spec(record(LoggingConfig), factory=LoggingConfig)
    gpio_marker: GpioMarkerConfig | None = spec(optional(record(GpioMarkerConfig)), None)


def load_config(path: str | Path) -> DaemonConfig:
    """Read and validate a daemon config; raises ConfigError listing every problem in the file."""
    return build_daemon_config(read_document(path), Path(path).absolute().parent)


def build_daemon_config(doc: Document, base_dir: Path) -> DaemonConfig:
    """Validate a parsed document; relative paths are taken from `base_dir`."""
    ctx = Ctx(doc.source, doc.lines, base_dir)
    ctx.problems.extend(doc.problems)
    config = apply(record(DaemonConfig), doc.value, "", ctx)
    if isinstance(doc.value, dict):
        _cross_checks(doc.value, ctx)
    ctx.raise_if_problems()
    log.debug("%s: daemon config ok (%d models)", doc.source, len(config.models))
    return config


def _names(raw: Any, section: str) -> list[tuple[str, str]]:
    """(name, path) of every item of a raw list section that has a string name; robust to any shape."""
    items = raw if isinstance(raw, list) else []
    return [
        (item["name"], f"{section}[{i}]") for i, item in enumerate(items)
        if isinstance(item, dict) and isinstance(item.get("name"), str)
    ]


def _cross_checks(raw: dict[str, Any], ctx: Ctx) -> None:
    """Checks across sections, on the raw values so they run even when other keys have problems."""
    models = _names(raw.get("models"), "models")
    _report_clashes(models, "model names must be unique", ctx)
    if "targets" in raw:
        targets = _names(raw["targets"], "targets")
    else:
        targets = [(t.name, f"the default target {t.name!r} (no targets: given)") for t in DEFAULT_TARGETS]
    _report_clashes(targets + _names(raw.get("endpoints"), "endpoints"),
                    "target and endpoint names must be unique together", ctx)
    _report_unknown(_section(raw, "workload", "models"), "workload.models", [m for m, _ in models], "model", ctx)
    active = _section(raw, "power", "active_w")
    if isinstance(active, dict):
        _report_unknown(list(active), "power.active_w", [t for t, _ in targets], "target", ctx, keys=True)
    if _section(raw, "power", "type") == "joulescope" and _section(raw, "mqtt", "enabled") is False:
        ctx.report("power.type", "joulescope statistics arrive over MQTT (edgeoffload-host joulescope publishes "
                                  "them): set mqtt.enabled: true or choose another power type")


def _section(raw: dict[str, Any], section: str, key: str) -> Any:
    value = raw.get(section)
    return value.get(key) if isinstance(value, dict) else None


def _report_clashes(named: list[tuple[str, str]], rule: str, ctx: Ctx) -> None:
    first: dict[str, str] = {}
    for name, path in named:
        if name not in first:
            first[name] = path
            continue
        used_by = first[name]
        if used_by in ctx.lines:
            used_by += f" (line {ctx.lines[used_by]})"
        ctx.report(f"{path}.name", f"name {name!r} is already used by {used_by}: {rule}")


def _report_unknown(names: Any, path: str, known: list[str], what: str, ctx: Ctx, keys: bool = False) -> None:
    """Report names that are not in `known`: list items (`path[i]`) or mapping keys (`path.name`)."""
    if not isinstance(names, list):
        return
    choices = ", ".join(dict.fromkeys(known)) or "none"
    for i, name in enumerate(names):
        if isinstance(name, str) and name not in known:
            where = f"{path}.{name}" if keys else f"{path}[{i}]"
            ctx.report(where, f"no {what} named {name!r}; configured {what}s: {choices}")
