"""The D-Bus API: `org.edgeoffload.Daemon1` at `/org/edgeoffload/Daemon1`, published with pydbus.

The daemon owns a private connection and a GLib main loop in its own thread. Method calls are answered
from a small worker pool, so a long Infer or Profile never blocks Decide or property reads; beyond
`dbus.max_pending_calls` a call is refused as Busy. Our errors map once, here, to named D-Bus errors.
Stopping refuses new calls (NotReady), lets in-flight calls finish for a grace period, answers any still
running with an error, then leaves the bus.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

from edgeoffload.errors import (
    BackendError, ConfigError, EdgeOffloadError, NotReadyError, PolicyInvalidError, RequestError, SensorError,
    ServiceError, TransportError, UnknownModelError,
)

log = logging.getLogger(__name__)

BUS_NAME = INTERFACE = "org.edgeoffload.Daemon1"
OBJECT_PATH = "/org/edgeoffload/Daemon1"
ERROR_PREFIX = "org.edgeoffload.Error."
XML = resources.files("edgeoffload.api").joinpath("org.edgeoffload.Daemon1.xml").read_text(encoding="utf-8")
# most specific first: the first class an exception is an instance of names the D-Bus error
ERROR_NAMES: tuple[tuple[type[BaseException], str], ...] = (
    (UnknownModelError, "UnknownModel"),
    (RequestError, "InvalidArgument"),
    (PolicyInvalidError, "PolicyInvalid"),
    (ConfigError, "ConfigInvalid"),
    (NotReadyError, "NotReady"),
    (BackendError, "BackendUnavailable"),
    (TransportError, "BackendUnavailable"),
    (SensorError, "Failed"),
    (ServiceError, "Failed"),
)
INLINE = frozenset({"Decide", "GetPolicy", "GetProfiles", "ListModels"})  # quick: answered on the loop thread
STOP_GRACE_S = 10.0


def error_name(exc: BaseException) -> str:
    for cls, name in ERROR_NAMES:
        if isinstance(exc, cls):
            return ERROR_PREFIX + name
    return ERROR_PREFIX + "Failed"


class RateLimit:
    """A token bucket: `rate_per_s` on average, bursts up to `burst`; counts what it refused since the last pass."""

    def __init__(self, rate_per_s: float, burst: float | None = None, clock=time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst if burst is not None else max(1.0, rate_per_s)
        self._tokens = self.burst
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()
        self.dropped = 0

    def take(self) -> int | None:
        """None when refused; else the number refused since the previous pass (and the count restarts)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate_per_s)
            self._last = now
            if self.rate_per_s <= 0 or self._tokens < 1.0:
                self.dropped += 1
                return None
            self._tokens -= 1.0
            dropped, self.dropped = self.dropped, 0
            return dropped


class DbusApi:
    """Publishes the service on the configured bus; `start` raises ServiceError when the bus refuses."""

    def __init__(self, service, config) -> None:
        from .dbus_object import Daemon1  # imports gi and pydbus: only when a bus is configured

        self.config = config
        self.service = service
        self.object = Daemon1(service)
        self.decisions = RateLimit(config.decision_signals_per_s)
        self._pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="dbus-call")
        self._pending: dict[int, object] = {}  # id -> invocation not yet answered
        self._pending_lock = threading.Condition()
        self._accepting = False
        self._loop = None
        self._thread: threading.Thread | None = None
        self._bus = None
        self._published: list = []
        self._last_targets: dict[str, tuple[bool, str]] = {}

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(ready, failure), name="dbus", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            failure.append(TimeoutError("the bus did not answer within 30 s"))
        if failure:
            self._thread.join(5)
            raise ServiceError(f"cannot publish {BUS_NAME} on the {self.config.bus} bus: {failure[0]}")
        self.object.remember("Status", "Degraded", "PolicyVersion", "Objective", "PolicyError", "Targets")
        self._accepting = True
        self._last_targets = {t["name"]: (t["available"], t["reason"] or "") for t in self.service.describe_targets()}
        log.info("D-Bus API %s published on the %s bus", BUS_NAME, self.config.bus)

    def _run(self, ready: threading.Event, failure: list) -> None:
        from gi.repository import GLib

        context = GLib.MainContext()
        context.push_thread_default()
        try:
            self._publish()
        except Exception as exc:  # a missing bus, a name already taken, a policy that denies us
            failure.append(_describe_bus_error(exc))
            self._unpublish()
            context.pop_thread_default()
            ready.set()
            return
        self._loop = GLib.MainLoop(context)
        ready.set()
        self._loop.run()
        self._unpublish()
        context.pop_thread_default()

    def _publish(self) -> None:
        from gi.repository import Gio
        from pydbus.bus import Bus
        from pydbus.registration import ObjectRegistration

        from .dbus_client import private_connection
        from .dbus_object import Wrapper

        kind = Gio.BusType.SYSTEM if self.config.bus == "system" else Gio.BusType.SESSION
        address = Gio.dbus_address_get_for_bus_sync(kind, None)
        # a private connection (closing it leaves the bus cleanly), not pydbus.connect(): see private_connection
        self._bus = Bus(private_connection(address))
        node = Gio.DBusNodeInfo.new_for_xml(XML)
        wrapper = Wrapper(self.object, node.interfaces, self)
        self._published.append(ObjectRegistration(self._bus, OBJECT_PATH, node.interfaces, wrapper, own_wrapper=True))
        self._published.append(self._bus.request_name(BUS_NAME, allow_replacement=False, replace=False))

    def _unpublish(self) -> None:
        from gi.repository import GLib

        context = GLib.MainContext.ref_thread_default()
        for item in reversed(self._published):  # the name first: the bus routes no more calls to us
            try:
                item.__exit__(None, None, None)
            except Exception:
                log.debug("leaving the bus: %s", item, exc_info=True)
            while context.iteration(False):  # calls routed to us before that: answered (NotReady)
                pass
        self._published.clear()
        if self._bus is not None:
            try:
                self._bus.con.flush_sync(None)  # close() drops queued replies otherwise
                self._bus.con.close_sync(None)
            except Exception:
                log.debug("closing the D-Bus connection", exc_info=True)
            self._bus = None

    def stop(self) -> None:
        """Refuse new calls, let running ones finish (STOP_GRACE_S), answer the rest with NotReady, leave."""
        deadline = time.monotonic() + STOP_GRACE_S
        with self._pending_lock:
            self._accepting = False  # under the lock: dispatch() adds no call stop() would not see
            while self._pending and time.monotonic() < deadline:
                self._pending_lock.wait(0.05)
            left = list(self._pending.items())
            self._pending.clear()
        for _, invocation in left:
            invocation.return_dbus_error(ERROR_PREFIX + "NotReady", "the daemon is stopping; the request was "
                                         "not finished: send it again once the daemon is back")
        if left:
            log.warning("stopped with %d D-Bus calls unfinished; answered them with NotReady", len(left))
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._loop is not None:
            self._loop.quit()
        if self._thread is not None:
            self._thread.join(5)

    # --- calls -----------------------------------------------------------------------------------
    def dispatch(self, method: str, handler, parameters, invocation) -> None:
        """Answer one call of our interface: inline if quick, else on the pool; never raises."""
        if not self._accepting:
            state = self.service.state
            invocation.return_dbus_error(ERROR_PREFIX + "NotReady", f"the daemon is {state}; try again when "
                                         "its Status property says running")
            return
        if method in INLINE:
            self._answer(method, handler, parameters, invocation)
            return
        key = id(invocation)
        with self._pending_lock:
            if not self._accepting:  # stop() began after the check above
                invocation.return_dbus_error(ERROR_PREFIX + "NotReady", "the daemon is stopping; try again when "
                                             "its Status property says running")
                return
            if len(self._pending) >= self.config.max_pending_calls:
                busy = True
            else:
                busy = False
                self._pending[key] = invocation
        if busy:
            invocation.return_dbus_error(ERROR_PREFIX + "Busy", f"{len(self._pending)} calls are in progress "
                                         f"(dbus.max_pending_calls {self.config.max_pending_calls}); retry shortly")
            return
        self._pool.submit(self._answer, method, handler, parameters, invocation, key)

    def _answer(self, method: str, handler, parameters, invocation, key: int | None = None) -> None:
        try:
            result, error = handler(parameters), None
        except EdgeOffloadError as exc:
            result, error = None, (error_name(exc), " ".join(str(exc).split("\n")))
            log.info("D-Bus %s refused: %s: %s", method, error[0].rsplit(".", 1)[1], error[1])
        except Exception as exc:
            log.exception("D-Bus %s failed", method)
            result, error = None, (ERROR_PREFIX + "Failed", f"internal error (a bug, please report it): "
                                   f"{type(exc).__name__}: {exc}")
        if key is None:
            _reply(invocation, result, error)
            return
        with self._pending_lock:
            if self._pending.pop(key, None) is None:
                return  # stop() already answered it
            _reply(invocation, result, error)  # queued before stop() can see the call done and close
            self._pending_lock.notify_all()

    # --- signals (any thread) --------------------------------------------------------------------
    def decision(self, outcome) -> None:
        dropped = self.decisions.take()
        if dropped is not None and self._accepting:
            self.object.Decision(outcome.model, outcome.target, outcome.latency_ms, outcome.energy_mj,
                                 outcome.fallback, dropped)

    def policy_changed(self, policy, error: str | None) -> None:
        if not self._accepting:
            return
        if policy is not None:
            self.object.PolicyChanged(policy.digest, policy.objective.value)
            self.object.changed("PolicyVersion", "Objective", "PolicyError", "Status", "Degraded")
        else:
            self.object.PolicyRejected(error or "")
            self.object.changed("PolicyError", "Status", "Degraded")

    def status_changed(self) -> None:
        """Called when anything in status may have moved: signals availability flips and changed properties."""
        if not self._accepting:
            return
        now = {t["name"]: (t["available"], t["reason"] or "") for t in self.service.describe_targets()}
        flips = [(n, v) for n, v in now.items() if self._last_targets.get(n, (None,))[0] != v[0]]
        self._last_targets = now
        for name, (available, reason) in flips:
            self.object.TargetAvailabilityChanged(name, available, reason)
        self.object.changed("Targets", "Status", "Degraded")


def _reply(invocation, result, error: tuple[str, str] | None) -> None:
    if error is None:
        invocation.return_value(result)
    else:
        invocation.return_dbus_error(*error)


def _describe_bus_error(exc: Exception) -> str:
    text = str(exc)
    if "name already exists" in text:
        return f"another process owns {BUS_NAME} (is a second edgeoffloadd running?)"
    if "AccessDenied" in text or "not allowed to own" in text:
        return (f"the bus policy does not let this user own {BUS_NAME}: install org.edgeoffload.Daemon1.conf "
                "into /usr/share/dbus-1/system.d/ and run as the edgeoffload user")
    return text.replace("\n", " ")
