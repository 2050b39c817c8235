"""The demo's view of the daemon: an MQTT subscriber that prints a live table of decisions."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt

HEADER = f"{'#':>4} {'model':<16} {'target':<9} {'pred ms':>8} {'actual ms':>9} {'energy mJ':>9}  reason"


class DaemonWatch:
    """Subscribes to edgeoffload/v1/<device>/#, prints each decision as a table row, keeps the rest."""

    def __init__(self, host: str, port: int, device_id: str, *, out=print) -> None:
        self.prefix = f"edgeoffload/v1/{device_id}/"
        self.out = out
        self.decisions: list[dict] = []
        self.latest: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edgeoffload-demo-{device_id}")
        self._client.on_connect = lambda c, *_: c.subscribe(self.prefix + "#", qos=1)
        self._client.on_message = self._on_message
        self._client.connect(host, port)
        self._client.loop_start()
        self._printed_header = False

    def _on_message(self, _client, _userdata, msg) -> None:
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            return
        sub = msg.topic[len(self.prefix):]
        with self._lock:
            self.latest[sub] = payload
            if sub == "decision":
                self.decisions.append(payload)
                self._print_row(payload)
            elif sub == "events":
                self.out(f"[daemon event] {payload.get('event')}: "
                         f"{payload.get('digest') or payload.get('error', '')}".rstrip())

    def _print_row(self, d: dict) -> None:
        if not self._printed_header:
            self.out(HEADER)
            self._printed_header = True
        pred = d.get("predicted_latency_ms")
        pred_text = f"{pred:.2f}" if pred is not None else "-"
        reason = "fallback, " + d["fallback_reason"] if d.get("fallback") else d.get("reason", "")
        self.out(f"{d['seq']:>4} {d['model']:<16} {d['target']:<9} {pred_text:>8} "
                 f"{d['actual_latency_ms']:>9.2f} {d['energy_mj']:>9.2f}  {reason[:90]}")

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
