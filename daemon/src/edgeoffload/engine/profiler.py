"""Profiling models on local targets: latency (the NPU's in a child process), energy with a meter, and the
thermal and cpufreq state it was measured in. Stored profiles are reused while fresh and measured the same way.

Per model and target: latency first (warm-up apart; the NPU's first invoke, its graph compile, reported on
its own), then, when a meter is configured, the idle baseline and an energy run of
`profiling.energy_duration_s` (engine/energy_profile.py). A failed energy run leaves the latency profile
standing, labelled with the figure it fell back to.
"""

from __future__ import annotations

import logging
import time

from edgeoffload.backends.registry import target_signature
from edgeoffload.config.power import DEFAULT_SYSFS
from edgeoffload.engine.energy_profile import measure_energy
from edgeoffload.engine.profiles import Profile, ProfileStore, profile_key, sample_input, time_runs
from edgeoffload.errors import EdgeOffloadError, SensorError
from edgeoffload.sensors.sysfs import SysfsRoot
from edgeoffload.sensors.thermal import read_cpufreq, read_thermal

log = logging.getLogger(__name__)


def environment(sysfs: SysfsRoot) -> dict:
    """Thermal zones and cpufreq policies now (missing files are reported inside, never raised)."""
    return {"thermal": read_thermal(sysfs).to_dict(), "cpufreq": read_cpufreq(sysfs).to_dict()}


class Profiler:
    """Owns no threads; the service serialises calls (its profile lock)."""

    def __init__(self, *, config, local: dict, executor, energy, store: ProfileStore, model_files: dict) -> None:
        self.config = config
        self.local = local
        self.executor = executor
        self.energy = energy
        self.store = store
        self.model_files = model_files  # model name -> verified ModelFile (the NPU probe runs the file's bytes)
        self.sysfs = SysfsRoot(getattr(config.power, "sysfs", DEFAULT_SYSFS))
        self.errors: dict[tuple[str, str], str] = {}

    def run(self, profiles: dict, model: str | None, target: str | None, force: bool) -> list[Profile]:
        """Profile (or reuse) every loaded model on every available target matching the filters."""
        self.store.load()
        done = []
        for entry in self.executor.models.values():
            if model is not None and entry.name != model:
                continue
            for name, backend in self.local.items():
                if (target is not None and name != target) or not backend.available or not backend.loaded(entry.name):
                    continue
                prof = self._one(entry, name, backend, force)
                if prof is None:
                    continue
                profiles[(entry.name, name)] = prof
                self._use(prof)
                done.append(prof)
        return done

    def _one(self, entry, name: str, backend, force: bool) -> Profile | None:
        pcfg = self.config.profiling
        tcfg = next(t for t in self.config.targets if t.name == name)
        sig, rt = target_signature(tcfg), backend.runtime_version
        prof = None if force else self.store.get(profile_key(entry.sha256, sig, rt), max_age_s=pcfg.max_age_s,
                                                 now_s=time.time())
        if prof is not None and self._energy_current(prof):
            log.info("profile of %s on %s reused from %s", entry.name, name, self.store.path)
            return prof
        if not (force or pcfg.on_start):
            log.warning("%s on %s has no stored profile and profiling.on_start is off: "
                        "not used until profiled on demand", entry.name, name)
            return None
        try:
            prof = self._measure(entry, name, backend, sig, rt)
        except EdgeOffloadError as e:  # an NPU probe that hung or crashed: the target is marked already
            self.errors[(entry.name, name)] = str(e)
            log.error("profiling %s on %s failed: %s", entry.name, name, e)
            return None
        self.errors.pop((entry.name, name), None)
        self.store.put(prof)
        return prof

    def _energy_current(self, prof: Profile) -> bool:
        """A stored profile is reused only if it has energy from the meter configured now (or none is)."""
        if self.energy.meter is None:
            return True
        return prof.energy is not None and prof.energy.get("source") == self.energy.label

    def _use(self, prof: Profile) -> None:
        self.executor.seed_local(prof.model, prof.target, prof.latency.mean_ms)
        if prof.energy is not None and self.energy.meter is not None:
            self.energy.set_measured(prof.model, prof.target, prof.power_w, prof.energy_source)
            if prof.energy.get("idle_power_w") is not None:
                self.energy.set_idle(float(prof.energy["idle_power_w"]))

    def _measure(self, entry, name: str, backend, sig: str, rt: str) -> Profile:
        pcfg = self.config.profiling
        env = environment(self.sysfs)
        x = sample_input(entry.input_shape, entry.input_dtype)
        if hasattr(backend, "probe"):  # the NPU: in a child process, first invoke timed on its own
            result = backend.probe(self.model_files[entry.name], warmup_runs=pcfg.warmup_runs, runs=pcfg.runs,
                                   duration_s=pcfg.duration_s)
            warm, lat, first_ms = result.warmup, result.latency, result.first_invoke_ms
        else:
            warm, lat = time_runs(lambda v: backend.run(entry.name, v), x, warmup_runs=pcfg.warmup_runs,
                                  runs=pcfg.runs, duration_s=pcfg.duration_s)
            first_ms = warm.first_ms if warm.n else None
        log.info("profiled %s on %s: first run %s ms, warm-up %d runs %.1f ms; mean %.3f ms p50 %.3f p99 %.3f "
                 "stdev %.3f over %d runs", entry.name, name, "-" if first_ms is None else f"{first_ms:.1f}",
                 warm.n, warm.total_ms, lat.mean_ms, lat.p50_ms, lat.p99_ms, lat.stdev_ms, lat.n)
        figure, energy = self.energy.local(entry.name, name), None
        power_w, label = figure.power_w, figure.label
        if self.energy.meter is not None:
            try:
                run = measure_energy(self.energy.meter, lambda v: backend.run(entry.name, v), x,
                                     idle_s=pcfg.idle_baseline_s, duration_s=pcfg.energy_duration_s)
            except SensorError as e:
                log.warning("no energy for %s on %s: %s; using %s", entry.name, name, e, label)
            else:
                energy, power_w, label = run.to_dict(), run.power_w, run.source
                log.info("energy of %s on %s: %.3f mJ per inference (active %.3f mJ, idle %.3f W, %s over %.1f s)",
                         entry.name, name, run.per_inference.total_mj, run.per_inference.active_mj or 0.0,
                         run.idle.power_w, run.source, run.window.duration_s)
        return Profile(entry.name, entry.sha256, name, sig, rt, time.time(), warm, lat, power_w, label, energy,
                       first_ms, env)
