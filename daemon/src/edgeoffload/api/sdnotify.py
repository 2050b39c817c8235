"""systemd's notify protocol with the standard library: READY, STATUS, WATCHDOG and STOPPING datagrams to
`$NOTIFY_SOCKET`. Without that variable (not under systemd `Type=notify`) every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading '@'; the kernel wants a NUL byte there.
        self._address = ("\0" + path[1:]) if path.startswith("@") else path
        self._watchdog_s = _watchdog_interval_s(env)
        self._failed = False

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half of `WatchdogSec=` as systemd recommends; None when no watchdog is set."""
        return self._watchdog_s

    def notify(self, **fields: str) -> bool:
        """Send KEY=value lines (keyword arguments, upper-cased); False if not sent. Never raises."""
        if not self._address:
            return False
        message = "\n".join(f"{key.upper()}={' '.join(str(value).split())}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), self._address)
        except OSError as exc:
            if not self._failed:  # say it once, not on every watchdog ping
                log.warning("cannot notify systemd at %s: %s", self._address.replace("\0", "@"), exc)
                self._failed = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(ready="1", status=status)

    def status(self, status: str) -> bool:
        return self.notify(status=status)

    def watchdog(self) -> bool:
        return self.notify(watchdog="1")

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify(stopping="1", status=status)


def _watchdog_interval_s(env: Mapping[str, str]) -> float | None:
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2e6
