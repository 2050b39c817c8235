"""Clients for the D-Bus tests: our own (pydbus on a private connection) and foreign ones (gdbus, busctl).

Nothing here knows the daemon's internals: it speaks D-Bus to whatever owns org.edgeoffload.Daemon1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

import pytest

if os.environ.get("EDGEOFFLOAD_REQUIRE_DBUS") != "1":  # CI sets it: there a missing library is an error
    pytest.importorskip("gi", reason="the D-Bus tests need PyGObject (pip install 'edgeoffload[dbus]')")
    pytest.importorskip("pydbus", reason="the D-Bus tests need pydbus (pip install 'edgeoffload[dbus]')")

import pydbus  # noqa: E402
from gi.repository import Gio, GLib  # noqa: E402

import edgeoffload.api  # noqa: E402
from edgeoffload.api.dbus_client import private_connection  # noqa: E402
from support import wait_until  # noqa: E402,F401  (the tests import it from here)

BUS_NAME = IFACE = "org.edgeoffload.Daemon1"
OBJECT_PATH = "/org/edgeoffload/Daemon1"
ERROR = "org.edgeoffload.Error."
XML_FILE = Path(edgeoffload.api.__file__).parent / "org.edgeoffload.Daemon1.xml"  # the checked-in interface
GONE = ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner")
CALL_TIMEOUT_S = 60


def interface_members(xml_text: str) -> dict[str, tuple]:
    """Our interface's members as {"method Infer": (in sig, out sig), "property X": (type,), ...}."""
    node = ET.fromstring(xml_text)
    iface = next(i for i in node.iter("interface") if i.get("name") == IFACE)
    out: dict[str, tuple] = {}
    for m in iface:
        args = [a for a in m if a.tag == "arg"]
        if m.tag == "method":
            sig = ("".join(a.get("type") for a in args if a.get("direction") == "in"),
                   "".join(a.get("type") for a in args if a.get("direction") == "out"))
        elif m.tag == "signal":
            sig = ("".join(a.get("type") for a in args),)
        elif m.tag == "property":
            sig = (m.get("type"), m.get("access"))
        else:
            continue
        out[f"{m.tag} {m.get('name')}"] = sig
    return out


_BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={folder}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class PrivateBus:
    """`dbus-daemon --nofork` with a session-type config of our own; `.address` once it listens."""

    START_TIMEOUT_S = 10.0

    def __init__(self, binary: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="eo-bus-"))  # short: a socket path must fit in 108 bytes
        conf, self.log = self.folder / "bus.conf", self.folder / "bus.log"
        conf.write_text(_BUS_CONF.format(folder=self.folder))
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen([binary, f"--config-file={conf}", "--print-address", "--nofork"],
                                          stdout=subprocess.PIPE, stderr=log, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(self._proc.stdout.readline().strip()), daemon=True)
        reader.start()
        reader.join(self.START_TIMEOUT_S)
        if not lines or not lines[0]:
            self.stop()
            raise RuntimeError(f"dbus-daemon printed no address within {self.START_TIMEOUT_S} s:\n"
                               f"{self.log.read_text(errors='replace')}")
        self.address = lines[0]

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()
        shutil.rmtree(self.folder, ignore_errors=True)


# --- our client ------------------------------------------------------------------------------------
class Client:
    """A private pydbus connection to the bus at `address` (closed by `close`)."""

    def __init__(self, address: str) -> None:
        self.bus = pydbus.bus.Bus(private_connection(address))  # never pydbus.connect(): it can deadlock

    def proxy(self):
        return self.bus.get(BUS_NAME, OBJECT_PATH)

    def properties(self) -> dict[str, Any]:
        return self.bus.get(BUS_NAME, OBJECT_PATH)["org.freedesktop.DBus.Properties"].GetAll(IFACE)

    def call(self, method: str, *args: Any) -> Any:
        """Call one of our methods through a fresh proxy (no cached introspection)."""
        return getattr(self.proxy(), method)(*args, timeout=CALL_TIMEOUT_S)

    def name_has_owner(self) -> bool:
        return self.bus.dbus.NameHasOwner(BUS_NAME)

    def close(self) -> None:
        self.bus.con.close_sync(None)


def remote_error(exc: GLib.Error) -> tuple[str, str]:
    """(D-Bus error name, message) of a failed call."""
    name = Gio.DBusError.get_remote_error(exc) or f"(not a D-Bus error: {exc.domain} {exc.code})"
    match = re.match(r"GDBus\.Error:[\w.]+: (.*)", exc.message, re.S)
    return name, match.group(1) if match else exc.message


def call_error(fn: Callable, *args: Any) -> tuple[str, str]:
    """(error name, message) of a call that must fail; AssertionError if it succeeds."""
    try:
        result = fn(*args, timeout=CALL_TIMEOUT_S)
    except GLib.Error as exc:
        return remote_error(exc)
    raise AssertionError(f"the call succeeded with {result!r:.300}")


class SignalRecorder:
    """Records every signal from our object path on a connection; `wait_for` pumps its own main context."""

    def __init__(self, bus) -> None:
        self.context = GLib.MainContext()
        self.signals: list[tuple[str, str, tuple]] = []  # (interface, member, arguments)
        self.context.push_thread_default()  # the subscription delivers into the thread-default context
        try:
            self._subscription = bus.subscribe(object=OBJECT_PATH, signal_fired=self._fired)
        finally:
            self.context.pop_thread_default()

    def _fired(self, sender, path, iface, member, params) -> None:
        self.signals.append((iface, member, tuple(params)))

    def pump(self) -> None:
        while self.context.iteration(False):
            pass

    def named(self, member: str) -> list[tuple]:
        self.pump()
        return [args for _, m, args in self.signals if m == member]

    def wait_for(self, member: str, predicate: Callable[[tuple], bool] = lambda a: True,
                 timeout: float = 30.0) -> tuple:
        """The first `member` signal whose arguments match; AssertionError listing what came otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            for args in self.named(member):
                if predicate(args):
                    return args
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching {member} signal within {timeout} s; got "
                                     f"{[(m, a) for _, m, a in self.signals]!r:.2000}")
            time.sleep(0.01)

    def close(self) -> None:
        self._subscription.unsubscribe()
        self.pump()


# --- foreign clients -------------------------------------------------------------------------------
def tool(name: str) -> str:
    """Path of a foreign client; skips the test without it (fails with EDGEOFFLOAD_REQUIRE_DBUS=1)."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (apt-get install {'systemd' if name == 'busctl' else 'libglib2.0-bin'})"
        if os.environ.get("EDGEOFFLOAD_REQUIRE_DBUS") == "1":
            pytest.fail(f"EDGEOFFLOAD_REQUIRE_DBUS=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return path


def gdbus_call(address: str, method: str, *args: str, interface: str = IFACE) -> subprocess.CompletedProcess:
    return subprocess.run([tool("gdbus"), "call", "--address", address, "--dest", BUS_NAME, "--object-path",
                           OBJECT_PATH, "--timeout", str(CALL_TIMEOUT_S), "--method", f"{interface}.{method}",
                           *args], capture_output=True, text=True, timeout=CALL_TIMEOUT_S + 30)


def gdbus_value(proc: subprocess.CompletedProcess, signature: str) -> Any:
    """What `gdbus call` printed, parsed as the GVariant text of type `signature` and unpacked."""
    assert proc.returncode == 0, proc.stderr
    return GLib.Variant.parse(GLib.VariantType.new(signature), proc.stdout.strip(), None, None).unpack()


def gdbus_error(proc: subprocess.CompletedProcess) -> tuple[str, str]:
    """(error name, message) from what a failed `gdbus call` wrote on stderr."""
    assert proc.returncode != 0, proc.stdout
    match = re.search(r"GDBus\.Error:([\w.]+): (.*)", proc.stderr, re.S)
    assert match, proc.stderr
    return match.group(1), match.group(2).strip()


def gdbus_bytes(data: bytes) -> str:
    """An `ay` argument for `gdbus call`, in GVariant text form."""
    return "[" + ", ".join(f"byte 0x{b:02x}" for b in data) + "]" if data else "@ay []"


def busctl(address: str, *args: str, json_output: bool = True) -> Any:
    """Run `busctl --address=... ARGS`; its JSON output parsed (or the text), AssertionError if it failed."""
    cmd = [tool("busctl"), f"--address={address}", *(["--json=short"] if json_output else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CALL_TIMEOUT_S + 30)
    assert proc.returncode == 0, f"{cmd[2:]} failed: {proc.stderr}"
    return json.loads(proc.stdout) if json_output else proc.stdout


def busctl_failure(address: str, *args: str) -> str:
    """The message of a `busctl` call that must fail (busctl prints only the message, not the name)."""
    proc = subprocess.run([tool("busctl"), f"--address={address}", *args], capture_output=True, text=True,
                          timeout=CALL_TIMEOUT_S + 30)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr.strip()


def busctl_members(table: str) -> dict[str, tuple]:
    """`busctl introspect` rows of our interface, as interface_members returns them."""
    out = {}
    for line in table.splitlines():
        cols = line.split()
        if len(cols) >= 4 and cols[0].startswith(".") and cols[1] in ("method", "signal", "property"):
            name, kind, sig = cols[0][1:], cols[1], "" if cols[2] == "-" else cols[2]
            if kind == "method":
                out[f"{kind} {name}"] = (sig, "" if cols[3] == "-" else cols[3])
            elif kind == "property":
                out[f"{kind} {name}"] = (sig, "readwrite" if "writable" in cols[-1] else "read")
            else:
                out[f"{kind} {name}"] = (sig,)
    return out


class Monitor:
    """`gdbus monitor --dest org.edgeoffload.Daemon1`, its output collected line by line."""

    def __init__(self, address: str) -> None:
        self.lines: list[str] = []
        self._proc = subprocess.Popen([tool("gdbus"), "monitor", "--address", address, "--dest", BUS_NAME],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for(f"The name {BUS_NAME} is owned by")  # subscribed before it looks the owner up

    def _read(self) -> None:
        for line in self._proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        return wait_until(lambda: next((l for l in self.lines if text in l), None), timeout,
                          f"gdbus monitor printing {text!r} (it printed {self.lines!r:.1000})")

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._reader.join(5)
        self._proc.stdout.close()


# --- edgeoffloadctl --------------------------------------------------------------------------------
def ctl(capsys, *argv: str) -> tuple[int, str, str]:
    """`edgeoffloadctl ARGV` in this process: (exit status, stdout, stderr)."""
    from edgeoffload import cli

    capsys.readouterr()  # what came before is not this command's
    status = cli.ctl_main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def ctl_script() -> str:
    """The installed console script beside this interpreter; skips the test without it."""
    import sys

    path = Path(sys.executable).parent / "edgeoffloadctl"
    if not path.exists():
        pytest.skip(f"{path} is not installed (pip install -e daemon)")
    return str(path)


def one_error_line(err: str, *fragments: str) -> str:
    """The single `edgeoffloadctl: ...` line of stderr, checked to contain every fragment."""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeoffloadctl: "), err
    assert all(f in lines[0] for f in fragments), (fragments, lines[0])
    return lines[0]


def wait_for_subscriber(address: str, pid: int, timeout: float = 30.0) -> str:
    """Wait until process `pid` has a match rule for our daemon's signals on the bus; its unique name.

    Uses dbus-daemon's Debug.Stats interface (skips the test on a bus built without it)."""
    con = private_connection(address)

    def bus_call(interface: str, method: str, args: GLib.Variant | None = None):
        return con.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", interface, method, args, None,
                             Gio.DBusCallFlags.NONE, CALL_TIMEOUT_S * 1000, None).unpack()[0]

    def subscribed() -> str | None:
        try:
            rules = bus_call("org.freedesktop.DBus.Debug.Stats", "GetAllMatchRules")
        except GLib.Error as exc:
            pytest.skip(f"this dbus-daemon cannot list match rules (Debug.Stats): {exc.message}")
        for name, patterns in rules.items():
            if any(f"sender='{BUS_NAME}'" in p and "NameOwnerChanged" not in p for p in patterns):
                try:
                    owner_pid = bus_call("org.freedesktop.DBus", "GetConnectionUnixProcessID",
                                         GLib.Variant("(s)", (name,)))
                except GLib.Error:
                    continue  # gone meanwhile
                if owner_pid == pid:
                    return name
        return None

    try:
        return wait_until(subscribed, timeout, f"process {pid} subscribing to {BUS_NAME}'s signals")
    finally:
        con.close_sync(None)
