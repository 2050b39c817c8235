"""The published object: one handler per method (GLib.Variant in, GLib.Variant out), the properties, signals.

Handlers read and build variants directly: pydbus's generic conversion turns a 49 KB `ay` into a list of
49 152 Python ints (about 0.2 s each way); taking the bytes from the variant costs microseconds.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
from gi.repository import GLib
from pydbus.generic import signal
from pydbus.registration import ObjectWrapper

from edgeoffload import __version__
from edgeoffload.engine.profiles import utc_iso
from edgeoffload.errors import BackendError, RequestError, UnknownModelError

from .dbus_tensor import tensor_from_wire, tensor_to_wire

log = logging.getLogger(__name__)

INTERFACE = "org.edgeoffload.Daemon1"
PROFILE_TYPE = "a(ssddddddus)"
_AY = GLib.VariantType.new("ay")


def _bytes_variant(data: bytes) -> GLib.Variant:
    return GLib.Variant.new_from_bytes(_AY, GLib.Bytes.new(data), True)


def _tuple(*values: GLib.Variant) -> GLib.Variant:
    return GLib.Variant.new_tuple(*values)


class Wrapper(ObjectWrapper):
    """pydbus's wrapper, with our interface's calls routed to DbusApi.dispatch (pool, limits, named errors)."""

    def __init__(self, obj, interfaces, api) -> None:
        super().__init__(obj, interfaces)
        self._api = api

    def call_method(self, connection, sender, object_path, interface_name, method_name, parameters, invocation):
        handler = getattr(self.object, "call_" + method_name, None) if interface_name == INTERFACE else None
        if handler is None:  # Properties, Introspectable: pydbus answers them
            return super().call_method(connection, sender, object_path, interface_name, method_name,
                                       parameters, invocation)
        self._api.dispatch(method_name, handler, parameters, invocation)
        return None


class Daemon1:
    """org.edgeoffload.Daemon1 over a Service; the XML lives beside this file."""

    PropertiesChanged = signal()
    PolicyChanged = signal()
    PolicyRejected = signal()
    TargetAvailabilityChanged = signal()
    Decision = signal()

    def __init__(self, service) -> None:
        self.service = service
        self._sent: dict[str, object] = {}  # property values as last announced

    def remember(self, *names: str) -> None:
        """Take the current values as announced (at start: clients read them, nothing changed yet)."""
        self._sent.update({n: getattr(self, n) for n in names})

    def changed(self, *names: str) -> None:
        """Emit PropertiesChanged for those of the named properties whose value moved since last announced."""
        now = {n: getattr(self, n) for n in dict.fromkeys(names)}
        moved = {n: v for n, v in now.items() if self._sent.get(n, _UNSET) != v}
        if moved:
            self._sent.update(moved)
            self.PropertiesChanged(INTERFACE, moved, [])

    # --- methods ---------------------------------------------------------------------------------
    def call_Infer(self, params: GLib.Variant) -> GLib.Variant:
        model = params.get_child_value(0).get_string()
        entry = self._entry(model)
        data = params.get_child_value(1).get_data_as_bytes().get_data() or b""
        shape = params.get_child_value(2).unpack()
        dtype = params.get_child_value(3).get_string()
        x = tensor_from_wire(model, entry.input_shape, entry.input_dtype, data, shape, dtype)
        o = self.service.infer(model, x)
        out, out_shape, out_dtype = tensor_to_wire(o.output)
        return _tuple(_bytes_variant(out), GLib.Variant("at", out_shape), GLib.Variant("s", out_dtype),
                      GLib.Variant("s", o.target), GLib.Variant("d", o.latency_ms), GLib.Variant("d", o.energy_mj),
                      GLib.Variant("s", o.energy_source))

    def call_Decide(self, params: GLib.Variant) -> GLib.Variant:
        (model,) = params.unpack()
        self._entry(model)
        d = self.service.decide(model)
        options = [(p.target, p.kind, p.latency_ms, p.energy_mj, p.meets_deadline) for p in d.predictions]
        return GLib.Variant("(ssa(ssddb))", (d.target or "", d.reason, options))

    def call_Profile(self, params: GLib.Variant) -> GLib.Variant:
        model, target = params.unpack()
        if model:
            self._entry(model)
        if target:
            backend = self.service.local.get(target)
            if backend is None:
                known = ", ".join(self.service.local) or "none"
                raise RequestError(f"no local target named {target!r} (local targets: {known}); endpoints are "
                                   "not profiled, their costs come from measured requests")
            if not backend.available:
                raise BackendError(f"target {target} is unavailable: {backend.unavailable_reason}")
        done = self.service.profile(model=model or None, target=target or None, force=True)
        return GLib.Variant(f"({PROFILE_TYPE})", ([_profile_row(p) for p in done],))

    def call_GetProfiles(self, params: GLib.Variant) -> GLib.Variant:
        rows = [_profile_row(p) for _, p in sorted(self.service.profiles.items())]
        return GLib.Variant(f"({PROFILE_TYPE})", (rows,))

    def call_ListModels(self, params: GLib.Variant) -> GLib.Variant:
        rows = [(m.name, m.sha256, [int(d) for d in m.input_shape], np.dtype(m.input_dtype).name, m.remote_name)
                for m in self.service.executor.models.values()]
        return GLib.Variant("(a(ssatss))", (rows,))

    def call_GetPolicy(self, params: GLib.Variant) -> GLib.Variant:
        return GLib.Variant("(s)", (self.service.policy.current.text,))

    def call_SetPolicy(self, params: GLib.Variant) -> GLib.Variant:
        (text,) = params.unpack()
        policy = self.service.set_policy(text)
        return GLib.Variant("(s)", (policy.digest,))

    def call_ReloadConfig(self, params: GLib.Variant) -> GLib.Variant:
        digest, restart_needed = self.service.reload_config()
        return GLib.Variant("(sas)", (digest, restart_needed))

    def call_GetSensors(self, params: GLib.Variant) -> GLib.Variant:
        return GLib.Variant("(s)", (to_json(self.service.sensors()),))

    def call_ImportEnergyProfile(self, params: GLib.Variant) -> GLib.Variant:
        (text,) = params.unpack()
        entries = self.service.import_energy(text)  # RequestError (InvalidArgument): nothing changed
        self.service.publish_status()  # the status (energy.imported) moved: MQTT and our properties follow
        return GLib.Variant("(s)", (to_json(entries),))

    def _entry(self, model: str):
        entry = self.service.executor.models.get(model)
        if entry is None:
            known = ", ".join(sorted(self.service.executor.models)) or "none"
            raise UnknownModelError(f"unknown model {model[:80]!r}; this daemon serves: {known} "
                                    "(edgeoffloadctl models lists them)")
        return entry

    # --- properties (read on the loop thread by pydbus) ------------------------------------------
    @property
    def Status(self) -> str:
        s = self.service
        return "degraded" if s.state == "running" and s.degraded_reasons() else s.state

    @property
    def Degraded(self) -> list[str]:
        return self.service.degraded_reasons()

    @property
    def DeviceId(self) -> str:
        return self.service.config.device_id

    @property
    def Version(self) -> str:
        return __version__

    @property
    def PolicyVersion(self) -> str:
        return self.service.policy.current.digest

    @property
    def Objective(self) -> str:
        return self.service.policy.current.objective.value

    @property
    def PolicyError(self) -> str:
        return self.service.policy.error or ""

    @property
    def EnergySource(self) -> str:
        return self.service.energy.label

    @property
    def Models(self) -> list[str]:
        return list(self.service.executor.models)

    @property
    def Targets(self) -> list[tuple[str, str, bool, str]]:
        return [(t["name"], t["kind"], bool(t["available"]), t["reason"] or "")
                for t in self.service.describe_targets()]


_UNSET = object()


def to_json(data: object) -> str:
    """JSON for a string reply: NaN and infinities become null (JSON has none), other odd values their str."""
    return json.dumps(_finite(data), allow_nan=False, default=str, separators=(",", ":"))


def _finite(v: object) -> object:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _profile_row(p) -> tuple:
    lat = p.latency
    return (p.model, p.target, lat.mean_ms, lat.p50_ms, lat.p99_ms, lat.stdev_ms, p.energy_mj, p.warmup.first_ms,
            lat.n, utc_iso(p.measured_unix_s))
