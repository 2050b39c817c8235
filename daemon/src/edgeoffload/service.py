"""The one place that wires everything and owns the start/stop order.

Start: power source → policy → local backends (models loaded, profiled) → endpoints → D-Bus → MQTT → ready.
Stop: D-Bus first (no new calls; in-flight ones finish), then the reverse of the rest; each step logs and
continues on error.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
import uuid

from edgeoffload.api import messages
from edgeoffload.api.mqtt import MqttReporter
from edgeoffload.api.sdnotify import Notifier
from edgeoffload.backends.remote_target import RemoteTarget
from edgeoffload.config import load_config, policy_warnings
from edgeoffload.engine.executor import Executor, ModelEntry, Outcome
from edgeoffload.engine.loading import load_models, open_local_targets
from edgeoffload.engine.policy_watch import PolicyHolder
from edgeoffload.engine.energy_import import EnergyImports, parse_energy_profile
from edgeoffload.engine.profiler import Profiler, environment
from edgeoffload.engine.profiles import Profile, ProfileStore
from edgeoffload.errors import EdgeOffloadError, NotReadyError, PolicyInvalidError, RequestError, SensorError
from edgeoffload.profiling.tally import DecisionTally
from edgeoffload.decide.types import IdleMode
from edgeoffload.engine.decision_log import DecisionLog
from edgeoffload.sensors.gpio_marker import create_marker
from edgeoffload.sensors.registry import create_energy

log = logging.getLogger(__name__)

_NUMBERS = re.compile(r"\d+(\.\d+)?")


class Service:
    def __init__(self, config, *, boot_id: str | None = None, config_path=None) -> None:
        self.config = config
        self.config_path = config_path  # ReloadConfig re-checks it (None: only the policy is reloaded)
        self.boot_id = boot_id or uuid.uuid4().hex
        self.state = "starting"
        self.started_unix_s = time.time()
        self.runtime_version = "unknown"
        self.energy = create_energy(config, on_health=self._energy_health)
        self.decision_log: DecisionLog | None = None
        self.marker_error: str | None = None
        self._energy_known = True
        self._energy_reason_shape = ""
        self.policy = PolicyHolder(config.policy_file, on_change=self._policy_changed)
        self.local: dict = {}
        self.remote: dict[str, RemoteTarget] = {}
        self.model_errors: dict[str, str] = {}
        self.profiles: dict[tuple[str, str], Profile] = {}
        self.model_files: dict = {}  # name -> verified ModelFile
        self.imports = EnergyImports(config.state_dir)
        self.profiler: Profiler | None = None
        self.store = ProfileStore(config.state_dir)
        self.executor: Executor | None = None
        self.tally = DecisionTally()
        self.reporter = MqttReporter(config.mqtt, config.device_id, self.boot_id)
        self._stop = threading.Event()
        self._summary_thread: threading.Thread | None = None
        self._profile_lock = threading.Lock()
        self.notifier = Notifier()
        self.dbus = None
        self.dbus_error: str | None = None

    # --- start -----------------------------------------------------------------------------------
    def start(self) -> None:
        self.energy.start()
        self._start_decision_log()
        self.policy.load_initial()
        self._warn_policy_names(self.policy.current)
        self.local = open_local_targets(self.config)
        versions = [b.runtime_version for b in self.local.values() if b.available]
        self.runtime_version = versions[-1] if versions else "unknown"
        entries = load_models(self.config, self.local, model_files=self.model_files, errors=self.model_errors)
        self.executor = Executor(models=entries, local_targets=self.local, remote_targets=self.remote,
                                 energy=self.energy, policy=lambda: self.policy.current, on_outcome=self._outcome,
                                 marker=self._marker())
        self._apply_imports(self.imports.load())
        self.profiler = Profiler(config=self.config, local=self.local, executor=self.executor, energy=self.energy,
                                 store=self.store, model_files=self.model_files)
        self.state = "profiling"
        self.profile(force=False)
        self._start_endpoints(entries)
        self._start_dbus()
        self.reporter.start()
        self.policy.start()
        self.state = "running"
        self._energy_known = self.energy.unknown_reason() is None
        self.publish_status()
        self.reporter.set_profile(messages.profile_message(self.profiles.values()))
        self._summary_thread = threading.Thread(target=self._summary_loop, name="summary", daemon=True)
        self._summary_thread.start()
        if self.config.mqtt.power_interval_s > 0:
            threading.Thread(target=self._power_loop, name="power", daemon=True).start()
        self.notifier.ready(self._one_line_status())
        if self.notifier.watchdog_interval_s:
            threading.Thread(target=self._watchdog_loop, name="watchdog", daemon=True).start()
        log.info("edgeoffload %s ready: %d models, targets %s", self.config.device_id, len(entries),
                 ", ".join(t["name"] + ("" if t["available"] else " (unavailable)") for t in self.describe_targets()))

    def _marker(self):
        """The GPIO marker the config asks for; one that cannot be had is reported and requests run unmarked."""
        try:
            return create_marker(self.config.gpio_marker)
        except SensorError as exc:
            self.marker_error = str(exc)
            log.error("no GPIO marker: %s", exc)
            return create_marker(None)

    def _start_decision_log(self) -> None:
        path = self.config.logging.decisions_file
        if path is None:
            return
        self.decision_log = DecisionLog(path, meter=self.energy.meter,
                                        idle_power_w=lambda: self.energy.idle_power_w(IdleMode.LOW))
        try:
            self.decision_log.start()
        except OSError as exc:
            log.error("no decision log: cannot open %s: %s", path, exc.strerror or exc)
            self.decision_log = None

    def _energy_health(self, known: bool, reason: str | None) -> None:
        """The meter lost or regained its sensor (or its reason changed): decisions are redone, status
        republished, and a change of known/unknown is an event (not before the service runs: status says it)."""
        flipped = known != self._energy_known
        if self.executor is not None and flipped:
            self.executor.epoch.bump()
        if self.state != "running":
            return
        shape = _NUMBERS.sub("#", reason or "")
        if not flipped and shape == self._energy_reason_shape:
            return  # only a number in the reason moved (e.g. "for 3.4 s" of silence): no new status each read
        if flipped:
            self.reporter.publish_event({"event": "energy_known" if known else "energy_unknown", "reason": reason})
        self._energy_known, self._energy_reason_shape = known, shape
        self.publish_status()

    def _start_endpoints(self, entries: dict[str, ModelEntry]) -> None:
        wanted = sorted({e.remote_name for e in entries.values()})
        for ecfg in self.config.endpoints:
            target = RemoteTarget(ecfg, self.policy.current.network, epoch=self.executor.epoch)
            target.on_change = lambda _t: self.publish_status()
            self.remote[ecfg.name] = target
            target.start(wanted)

    def _start_dbus(self) -> None:
        if self.config.dbus.bus == "none":
            return
        try:
            from edgeoffload.api.dbus import DbusApi

            api = DbusApi(self, self.config.dbus)
            api.start()
        except ImportError as exc:
            self.dbus_error = (f"the D-Bus API needs pydbus and PyGObject (python3-pydbus, python3-pygobject; "
                               f"pip install 'edgeoffload[dbus]'): {exc}")
        except EdgeOffloadError as exc:
            self.dbus_error = str(exc)
        else:
            self.dbus = api
            return
        log.error("no D-Bus API: %s (set dbus.bus: none to run without one)", self.dbus_error)

    # --- profiling -------------------------------------------------------------------------------
    def profile(self, *, model: str | None = None, target: str | None = None, force: bool = True) -> list[Profile]:
        """Profile models on available local targets; reuse fresh stored profiles unless `force`."""
        with self._profile_lock:
            done = self.profiler.run(self.profiles, model, target, force)
        if self.state == "running":
            self.reporter.set_profile(messages.profile_message(self.profiles.values()))
        return done

    # --- requests and reporting ------------------------------------------------------------------
    def infer(self, model: str, x, request_id: str | None = None) -> Outcome:
        self._check_running()
        return self.executor.run(model, x, request_id=request_id)

    def decide(self, model: str):
        self._check_running()
        return self.executor.decide(model)

    def _check_running(self) -> None:
        if self.executor is None or self.state != "running":
            raise NotReadyError(f"the daemon is {self.state}, not accepting requests; try again once it runs")

    def set_policy(self, text: str):
        """Validate like the file, write the policy file atomically, apply (SetPolicy); errors change nothing."""
        return self.policy.replace(text, "SetPolicy")

    def reload_config(self) -> tuple[str, list[str]]:
        """Re-read the policy file; check the daemon config file and list the sections a restart would change."""
        if not self.policy.reload():
            raise PolicyInvalidError(f"policy file rejected, the previous policy stays in force: {self.policy.error}")
        changed: list[str] = []
        if self.config_path is not None:
            fresh = load_config(self.config_path)  # ConfigError: nothing changes, the message names the lines
            changed = [f.name for f in dataclasses.fields(fresh)
                       if getattr(fresh, f.name) != getattr(self.config, f.name)]
            if changed:
                log.warning("config %s changed in %s: restart the service to apply", self.config_path,
                            ", ".join(changed))
        return self.policy.current.digest, changed

    def _outcome(self, o: Outcome) -> None:
        self.tally.add(o.target, predicted_ms=o.predicted_latency_ms, actual_ms=o.latency_ms,
                       energy_mj=o.energy_mj, deadline_ms=o.decision.deadline_ms, fallback=o.fallback)
        self.reporter.publish_decision(messages.decision_message(o))
        if self.decision_log is not None:
            self.decision_log.add(o)
        if self.dbus is not None:
            self.dbus.decision(o)

    def environment_now(self) -> dict | None:
        """Thermal zones and cpufreq policies as they are now (in status and with every profile)."""
        return environment(self.profiler.sysfs) if self.profiler is not None else None

    def sensors(self) -> dict:
        """What the power source discovered with its latest readings, and the thermal/cpufreq state."""
        return {"energy": self.energy.describe(), "channels": self.energy.sensors(),
                "environment": self.environment_now()}

    def import_energy(self, text: str | bytes) -> list[dict]:
        """Energy per inference measured elsewhere (format C): validated whole, then used and kept."""
        entries = parse_energy_profile(text, "energy profile")
        unknown = [f"{e.model} on {e.target}" for e in entries
                   if e.model not in self.executor.models or e.target not in self.local]
        if unknown:
            raise RequestError(f"energy profile: no such model/local target here: {', '.join(unknown)} (models: "
                               f"{', '.join(sorted(self.executor.models))}; targets: {', '.join(self.local)})")
        self.imports.add(entries)
        self._apply_imports(entries)
        log.info("imported measured energy for %s", ", ".join(f"{e.model} on {e.target}" for e in entries))
        self.publish_status()  # status carries energy.imported
        return [e.to_dict() for e in entries]

    def _apply_imports(self, entries) -> None:
        for e in entries:
            self.energy.set_imported(e.model, e.target, e.power_w, e.label)
        if self.executor is not None:
            self.executor.epoch.bump()

    def describe_targets(self) -> list[dict]:
        out = [{"name": n, "kind": "local", "available": b.available, "reason": b.unavailable_reason}
               for n, b in self.local.items()]
        return out + [t.describe() for t in self.remote.values()]

    def degraded_reasons(self) -> list[str]:
        reasons = [f"target {n}: {b.unavailable_reason}" for n, b in self.local.items() if not b.available]
        reasons += [f"endpoint {n}: {t.reason}" for n, t in self.remote.items() if not t.reachable]
        reasons += [f"model {m}: {e}" for m, e in self.model_errors.items()]
        if self.policy.error:
            reasons.append(f"policy rejected, previous in force: {self.policy.error}")
        if self.dbus_error:
            reasons.append(f"no D-Bus API: {self.dbus_error}")
        if self.marker_error:
            reasons.append(f"no GPIO marker: {self.marker_error}")
        if self.energy.unknown_reason():
            reasons.append(f"energy unknown, energy/EDP decided on latency: {self.energy.unknown_reason()}")
        return reasons

    def publish_status(self) -> None:
        if self.executor is not None:
            self.reporter.set_status(messages.status_message(self))
            self.notifier.status(self._one_line_status())
        if self.dbus is not None:
            self.dbus.status_changed()

    def _warn_policy_names(self, policy) -> None:
        for warning in policy_warnings(policy, self.config):
            log.warning("%s", warning)

    def request_profile(self) -> None:
        """Re-profile every model on every target now, off the caller's thread (SIGUSR1, later D-Bus)."""
        threading.Thread(target=self._profile_now, name="profile", daemon=True).start()

    def _profile_now(self) -> None:
        try:
            done = self.profile(force=True)
            log.info("re-profiled %d model/target pairs on demand", len(done))
        except Exception:
            log.exception("on-demand profiling failed")

    def _policy_changed(self, policy, error: str | None) -> None:
        if policy is not None:
            self._warn_policy_names(policy)
            for target in self.remote.values():
                target.link.set_prior(policy.network)
            self.executor.epoch.bump()
            self.reporter.publish_event({"event": "policy_applied", "digest": policy.digest})
        else:
            self.reporter.publish_event({"event": "policy_rejected", "error": error})
        if self.dbus is not None:
            self.dbus.policy_changed(policy, error)
        self.publish_status()

    def _one_line_status(self) -> str:
        usable = [t["name"] for t in self.describe_targets() if t["available"]]
        degraded = self.degraded_reasons()
        text = f"{len(self.executor.models)} models; targets {', '.join(usable) or 'none'}"
        return text + (f"; degraded: {degraded[0]}" if degraded else "")

    def _watchdog_loop(self) -> None:
        """Ping systemd's watchdog while the service is healthy enough to answer (it stops when we hang)."""
        while not self._stop.wait(self.notifier.watchdog_interval_s):
            self.notifier.watchdog()

    def _summary_loop(self) -> None:
        while not self._stop.wait(self.config.mqtt.summary_interval_s):
            self.publish_summary()

    def _power_loop(self) -> None:
        while not self._stop.wait(self.config.mqtt.power_interval_s):
            self.reporter.publish_power(messages.power_message(self.energy))

    def publish_summary(self) -> None:
        self.reporter.publish_summary(self.tally.summary())

    # --- stop ------------------------------------------------------------------------------------
    def stop(self) -> None:
        self.state = "stopping"
        self.notifier.stopping()
        self._stop.set()
        steps = [("D-Bus API", self.dbus.stop)] if self.dbus is not None else []
        steps += [("summary", self.publish_summary), ("policy watcher", self.policy.stop),
                 ("mqtt", self.reporter.stop)]
        steps += [(f"endpoint {n}", t.stop) for n, t in self.remote.items()]
        steps += [(f"target {n}", b.close) for n, b in self.local.items()]
        steps += [("decision log", self.decision_log.stop)] if self.decision_log is not None else []
        steps += [("GPIO marker", self.executor.marker.close)] if self.executor is not None else []
        steps += [("power source", self.energy.stop)]
        for what, step in steps:
            try:
                step()
                log.debug("stopped %s", what)
            except Exception:
                log.exception("stopping %s failed; continuing", what)
        self.state = "stopped"
