"""The D-Bus API under load and across its life: concurrent calls, the call pool and its limit, a second
daemon on the same bus, and stopping with calls in flight."""

from __future__ import annotations

import gc
import sys
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dbus_helpers import ERROR, GONE, Client, call_error, remote_error, wait_until  # noqa: E402
from tinymodels import reference_scores  # noqa: E402

from gi.repository import GLib  # noqa: E402

SHAPE = [1, 16, 16, 3]
SLOW_PROFILE_S = 4.0  # profiling.duration_s: one Profile call takes at least this long, however busy the host


def image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, SHAPE, dtype=np.uint8)


def infer(proxy, model: str, x: np.ndarray) -> np.ndarray:
    out, shape, dtype, *_ = proxy.Infer(model, x.tobytes(), SHAPE, "uint8", timeout=60)
    return np.frombuffer(bytes(out), dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


@pytest.fixture
def slow_profiling(dbus_service):
    """make(**dbus) -> a Service whose Profile calls run SLOW_PROFILE_S; it starts quickly on stored profiles."""

    def make(**dbus):
        dbus_service(dbus={"bus": "none"}).stop()  # measures and stores the profiles the next start reuses
        return dbus_service(dbus=dbus, profiling={"warmup_runs": 0, "duration_s": SLOW_PROFILE_S})

    return make


class Background:
    """One call on its own connection in a thread; `.result` or `.error` (name, message) once joined."""

    def __init__(self, address: str, method: str, *args) -> None:
        self.result = self.error = None
        self._thread = threading.Thread(target=self._run, args=(address, method, args), daemon=True)
        self._thread.start()

    def _run(self, address, method, args) -> None:
        client = Client(address)
        try:
            self.result = getattr(client.proxy(), method)(*args, timeout=120)
        except GLib.Error as exc:
            self.error = remote_error(exc)
        finally:
            client.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self):
        self._thread.join(180)
        assert not self._thread.is_alive(), "the call never returned"
        return self


def test_concurrent_infers_all_get_their_own_answer(dbus_service, dbus_session, tiny_models):
    dbus_service()
    cases = [(m, seed) for seed in range(6) for m in ("tiny_16", "tiny_q_16")]
    results: dict[tuple, np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(cases))

    def worker(model: str, seed: int) -> None:
        client = Client(dbus_session)
        try:
            proxy = client.proxy()
            start.wait(60)
            for _ in range(4):
                results[(model, seed)] = infer(proxy, model, image(seed))
        except BaseException as exc:
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=case) for case in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors and len(results) == len(cases), errors
    for (model, seed), got in results.items():
        path = tiny_models["float" if model == "tiny_16" else "q"]
        np.testing.assert_allclose(got, reference_scores(path, image(seed)), rtol=1e-6, atol=1e-7)


def test_decide_is_answered_while_a_slow_profile_runs(slow_profiling, dbus_session, dbus_client):
    svc = slow_profiling()
    profile = Background(dbus_session, "Profile", "tiny_16", "cpu1")
    wait_until(svc._profile_lock.locked, 60, "the Profile call starting")
    proxy = dbus_client.proxy()
    assert proxy.Decide("tiny_16")[0] == "cpu1" and proxy.Status == "degraded"
    assert profile.running, "Decide waited for the Profile call"
    assert infer(proxy, "tiny_16", image()).shape == (1, 10)  # a free worker answers an Infer too
    assert profile.join().error is None and [p[:2] for p in profile.result] == [("tiny_16", "cpu1")]
    assert profile.result[0][8] >= 1


def test_calls_beyond_the_limit_are_refused_as_busy(slow_profiling, dbus_session, dbus_client):
    svc = slow_profiling(workers=1, max_pending_calls=1)
    profile = Background(dbus_session, "Profile", "tiny_16", "cpu1")
    wait_until(svc._profile_lock.locked, 60, "the Profile call starting")
    proxy = dbus_client.proxy()
    busy = "1 calls are in progress (dbus.max_pending_calls 1); retry shortly"
    for method, args in [("Profile", ("tiny_q_16", "cpu1")), ("Infer", ("tiny_16", bytes(768), SHAPE, "uint8"))]:
        name, message = call_error(getattr(proxy, method), *args)
        assert (name, message) == (ERROR + "Busy", busy), method
    assert proxy.Decide("tiny_16")[0] == "cpu1"  # quick calls are answered on the loop, never Busy
    assert profile.join().error is None and len(profile.result) == 1
    assert infer(proxy, "tiny_16", image()).shape == (1, 10)


def test_a_second_service_does_not_take_the_name(dbus_service, dbus_client, tmp_path):
    dbus_service()
    owner = dbus_client.bus.dbus.GetNameOwner("org.edgeoffload.Daemon1")
    second = dbus_service(folder=tmp_path / "second", device_id="second-board")
    assert second.state == "running" and second.dbus is None
    owned = "another process owns org.edgeoffload.Daemon1 (is a second edgeoffloadd running?)"
    assert f"no D-Bus API: cannot publish org.edgeoffload.Daemon1 on the session bus: {owned}" in \
        second.degraded_reasons()
    proxy = dbus_client.proxy()
    assert proxy.DeviceId == "test-board" and infer(proxy, "tiny_16", image()).shape == (1, 10)
    second.stop()
    assert dbus_client.bus.dbus.GetNameOwner("org.edgeoffload.Daemon1") == owner
    assert proxy.DeviceId == "test-board" and infer(proxy, "tiny_16", image()).shape == (1, 10)


def test_stop_refuses_new_calls_finishes_running_ones_and_leaves_the_bus(slow_profiling, dbus_session,
                                                                         dbus_client):
    svc = slow_profiling()
    proxy = dbus_client.proxy()
    profile = Background(dbus_session, "Profile", "tiny_16", "cpu1")
    wait_until(svc._profile_lock.locked, 60, "the Profile call starting")
    stopper = threading.Thread(target=svc.stop)
    stopper.start()
    wait_until(lambda: svc.state == "stopping", 30, "the service stopping")
    assert profile.running, "stop() did not wait for the Profile call in flight"
    name, message = call_error(proxy.Infer, "tiny_16", image().tobytes(), SHAPE, "uint8")
    assert name == ERROR + "NotReady" and "the daemon is stopping" in message
    assert proxy.Status == "stopping"
    assert profile.join().error is None and [p[:2] for p in profile.result] == [("tiny_16", "cpu1")]
    stopper.join(60)
    assert not stopper.is_alive() and svc.state == "stopped"
    wait_until(lambda: not dbus_client.name_has_owner(), 30, "the name leaving the bus")
    name, message = call_error(proxy.Infer, "tiny_16", image().tobytes(), SHAPE, "uint8")
    assert name in GONE and "org.edgeoffload.Daemon1" in message, (name, message)


def hammer(address: str, outcomes: list, started: threading.Semaphore) -> None:
    """Call Infer until the name is gone or a call fails otherwise than NotReady; append what ended it."""
    client = Client(address)
    try:
        proxy, answered = client.proxy(), False
        while True:
            try:
                infer(proxy, "tiny_16", image())
            except GLib.Error as exc:
                name, message = remote_error(exc)
                if name != ERROR + "NotReady":
                    outcomes.append((name, message))
                    return
            if not answered:
                answered = True
                started.release()
    finally:
        client.close()


def test_stopping_under_load_answers_every_call(dbus_service, dbus_session):
    """Calls arriving while the API leaves the bus get NotReady or find no owner; none is left unanswered."""
    outcomes: list[tuple[str, str]] = []
    for _ in range(5):
        svc = dbus_service()
        started = threading.Semaphore(0)
        callers = [threading.Thread(target=hammer, args=(dbus_session, outcomes, started)) for _ in range(8)]
        for t in callers:
            t.start()
        for _ in callers:
            assert started.acquire(timeout=60), "a caller got no first answer"
        svc.stop()
        for t in callers:
            t.join(120)
        assert not any(t.is_alive() for t in callers), "a call never returned"
    assert len(outcomes) == 40
    assert [o for o in outcomes if o[0] not in GONE] == []



def test_no_connection_is_held_by_a_toggle_reference(dbus_service, dbus_session):
    """pydbus.connect() stores its Bus on the connection's Python wrapper; PyGObject then holds the connection
    by a toggle reference, and freeing it (the cycle collector does, in any thread, GIL held) can deadlock
    the process against GDBus's worker thread: a CI run hung so (edgeoffload.api.dbus_client.private_connection
    tells the whole story). A toggle reference keeps the wrapper alive while GLib still holds the connection
    (a closed one, until its 'closed' notice is dispatched); without one the wrapper goes with the last
    Python reference. Both the daemon's connection and our clients' must go."""
    client = Client(dbus_session)
    client_con = weakref.ref(client.bus.con)
    client.close()
    del client
    gc.collect()
    assert client_con() is None, "the client's connection is held by a toggle reference"
    svc = dbus_service()
    daemon_con = weakref.ref(svc.dbus._bus.con)
    svc.stop()
    gc.collect()
    assert svc.dbus._bus is None and daemon_con() is None, "the daemon's connection is held by a toggle reference"
