"""An offload endpoint as a target: its client, health probes, served models and live estimates.

Health probes (`GET /v2/health/live`) measure the round-trip time; every request reports bytes each way,
the total time and the server's compute time, which feed the link and per-model server-time estimates.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

import numpy as np

from edgeoffload.backends.oip_wire import DATATYPES
from edgeoffload.backends.remote import OipClient, RemoteResult
from edgeoffload.decide.estimators import Epoch, Ewma, LinkEstimator, moved
from edgeoffload.decide.types import NetworkProfile, RemoteOption
from edgeoffload.errors import TransportError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """What the endpoint says about one model: its input and the bytes of its outputs."""

    input_name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    output_bytes: int


class RemoteTarget:
    kind = "remote"

    def __init__(self, config, prior: NetworkProfile, *, client: OipClient | None = None,
                 epoch: Epoch | None = None) -> None:
        self.name = config.name
        self.config = config
        self.client = client or OipClient(config.url, binary=config.binary)
        self.link = LinkEstimator(prior)
        self.reachable = False
        self.reason: str | None = "not probed yet"
        self._served: dict[str, ServedModel | str] = {}
        self._server_ms: dict[str, Ewma] = {}
        self._wire_bytes: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wanted: list[str] = []
        self._used: dict[str, tuple[float, ...]] = {}  # what the last published option was made of
        self.epoch = epoch or Epoch()  # bumped when an option this target gives would change materially
        self.on_change = None  # callable(target) when reachability changes

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self, wanted_models: list[str]) -> None:
        self._wanted = list(dict.fromkeys(wanted_models))
        self.probe()
        self._thread = threading.Thread(target=self._loop, name=f"health-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.client.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.config.health_interval_s):
            self.probe()

    # --- probing ---------------------------------------------------------------------------------
    def probe(self) -> None:
        """One health probe; on becoming reachable, (re)read the served models and seed server times."""
        timeout_s = self.config.timeout_ms / 1000.0
        try:
            rtt = self.client.live(timeout_s)
        except TransportError as exc:
            self._set_reachable(False, str(exc))
            return
        with self._lock:
            self.link.add_rtt(rtt)
            self._bump_if_moved("link", self._link_values())
        if not self.reachable:
            self._discover(timeout_s)
            self._set_reachable(True, None)

    def _discover(self, timeout_s: float) -> None:
        for name in self._wanted:
            try:
                meta = self.client.model_metadata(name, timeout_s)
                self._served[name] = _served_model(meta)
            except (TransportError, KeyError, TypeError, ValueError) as exc:
                self._served[name] = f"endpoint does not serve {name}: {exc}"
                continue
            self._seed_server_time(name, timeout_s)

    def _seed_server_time(self, name: str, timeout_s: float) -> None:
        served = self._served[name]
        x = np.zeros(served.shape, dtype=served.dtype)
        for _ in range(2):  # the first request may pay for connection set-up or lazy loading
            try:
                result = self.client.infer(name, [(served.input_name, x)], timeout_s=timeout_s)
            except TransportError as exc:
                log.warning("endpoint %s: warm-up of %s failed: %s", self.name, name, exc)
                return
        self._record(name, result)

    def _set_reachable(self, reachable: bool, reason: str | None) -> None:
        changed = reachable != self.reachable
        self.reachable, self.reason = reachable, reason
        self.epoch.bump()
        if changed:
            if reachable:
                log.info("endpoint %s at %s is reachable", self.name, self.config.url)
            else:
                log.warning("endpoint %s unreachable: %s", self.name, reason)
            if self.on_change is not None:
                self.on_change(self)

    def mark_failed(self, reason: str) -> None:
        """A request failed: stop offloading here until a health probe succeeds again."""
        self._set_reachable(False, reason)

    # --- decisions and requests ------------------------------------------------------------------
    def option(self, remote_model: str, x_shape: tuple[int, ...], x_dtype: np.dtype) -> RemoteOption | str:
        """The decision core's view of offloading this model here, or why it cannot be offloaded here."""
        if not self.reachable:
            return f"unreachable: {self.reason}"
        served = self._served.get(remote_model)
        if served is None:
            return f"endpoint was not asked for {remote_model}"
        if isinstance(served, str):
            return served
        if tuple(served.shape) != tuple(x_shape) and tuple(served.shape[1:]) != tuple(x_shape):
            return f"endpoint's {remote_model} takes shape {list(served.shape)}, the request is {list(x_shape)}"
        with self._lock:
            server = self._server_ms.get(remote_model)
            sent, received = self._wire_bytes.get(
                remote_model, (math.prod(served.shape) * served.dtype.itemsize, served.output_bytes))
            network = self.link.snapshot()
        return RemoteOption(self.name, network, server.value if server and server.value is not None else 0.0,
                            sent, received, network.name)

    def infer(self, remote_model: str, x: np.ndarray, *, timeout_s: float, request_id: str | None = None
              ) -> RemoteResult:
        served = self._served.get(remote_model)
        if not isinstance(served, ServedModel):
            raise TransportError(f"endpoint {self.name} does not serve {remote_model}")
        x = x.astype(served.dtype, copy=False).reshape(served.shape)
        result = self.client.infer(remote_model, [(served.input_name, x)], timeout_s=timeout_s,
                                   request_id=request_id)
        self._record(remote_model, result)
        return result

    def _record(self, remote_model: str, result: RemoteResult) -> None:
        with self._lock:
            # The server's own figure, trusted only within what we measured around it.
            reported = result.server_ms if result.server_ms is not None else 0.0
            server_ms = min(max(reported, 0.0), result.total_ms) if math.isfinite(reported) else 0.0
            self._server_ms.setdefault(remote_model, Ewma()).update(server_ms)
            self._wire_bytes[remote_model] = (result.bytes_sent, result.bytes_received)
            self.link.add_transfer(result.total_ms, server_ms, result.bytes_sent, result.bytes_received)
            self._bump_if_moved("link", self._link_values())
            self._bump_if_moved(remote_model, (self._server_ms[remote_model].value, *self._wire_bytes[remote_model]))

    def _link_values(self) -> tuple[float, ...]:
        net = self.link.snapshot()
        return (net.one_way_latency_ms, net.upload_bytes_per_s, net.download_bytes_per_s)

    def _bump_if_moved(self, what: str, values: tuple[float, ...]) -> None:
        """Bump `version` when `values` moved by more than the tolerance since the last bump (lock held)."""
        if moved(values, self._used.get(what)):
            self._used[what] = values
            self.epoch.bump()

    def describe(self) -> dict:
        net = self.link.snapshot()
        return {"name": self.name, "kind": "remote", "url": self.config.url, "available": self.reachable,
                "reason": self.reason, "rtt_ms": 2 * net.one_way_latency_ms,
                "upload_bytes_per_s": net.upload_bytes_per_s, "download_bytes_per_s": net.download_bytes_per_s,
                "network_source": net.name,
                "server_ms": {m: e.value for m, e in self._server_ms.items()}}


def _served_model(meta: dict) -> ServedModel:
    """Read OIP model metadata: exactly one input; outputs' total bytes from their shapes and datatypes."""
    inputs = meta["inputs"]
    if len(inputs) != 1:
        raise ValueError(f"expected one input, the endpoint lists {len(inputs)}")
    inp = inputs[0]
    shape = tuple(int(d) if int(d) > 0 else 1 for d in inp["shape"])
    out_bytes = sum(int(np.prod([max(int(d), 1) for d in o["shape"]])) * DATATYPES[o["datatype"]].itemsize
                    for o in meta["outputs"])
    return ServedModel(inp["name"], np.dtype(DATATYPES[inp["datatype"]]), shape, out_bytes)
