"""A client of org.edgeoffload.Daemon1 (edgeoffloadctl and the benchmark use it; any app may).

Calls go through Gio with variants built directly (a tensor travels as one block of bytes, not a list of
ints). D-Bus errors become our exceptions with the daemon's message: the caller's mistakes (unknown model,
invalid argument or policy, access denied) exit 2 on the command line, everything else 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgeoffload.errors import RequestError, ServiceError

from .dbus_tensor import tensor_to_wire

BUS_NAME = INTERFACE = "org.edgeoffload.Daemon1"
OBJECT_PATH = "/org/edgeoffload/Daemon1"
CALLERS_MISTAKES = {"UnknownModel", "InvalidArgument", "PolicyInvalid", "ConfigInvalid", "AccessDenied"}
NOT_RUNNING = {"ServiceUnknown", "NameHasNoOwner"}


def private_connection(address: str):
    """A new Gio.DBusConnection of its own to the bus at `address` (GLib.Error when it cannot connect).

    The daemon wraps it in `pydbus.bus.Bus(...)`; never use `pydbus.connect()`: it stores the Bus on the
    connection's Python wrapper, so PyGObject holds the connection by a toggle reference in a reference
    cycle. The cycle collector then frees it, in any thread, with the GIL held, and the connection's
    dispose waits for GDBus's global lock, which GDBus's worker thread may hold while it waits for the GIL
    (to tell PyGObject about another such connection gaining a reference): the whole process deadlocks.
    A plain connection is freed by reference counting, where PyGObject lets go of the GIL first.
    """
    from gi.repository import Gio

    flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
    return Gio.DBusConnection.new_for_address_sync(address, flags, None, None)


@dataclass(frozen=True)
class InferReply:
    output: np.ndarray
    target: str
    latency_ms: float
    energy_mj: float
    energy_source: str


class DaemonClient:
    """A private connection to the bus the daemon is on ("system", "session", or an address)."""

    def __init__(self, bus: str = "system", *, timeout_s: float = 30.0) -> None:
        try:
            from gi.repository import Gio, GLib
        except ImportError as exc:
            raise ServiceError(f"talking to the daemon needs PyGObject (python3-pygobject; pip install "
                               f"'edgeoffload[dbus]'): {exc}") from None
        self._Gio, self._GLib = Gio, GLib
        self.bus = bus
        self.timeout_s = timeout_s
        try:
            if bus in ("system", "session"):
                kind = Gio.BusType.SYSTEM if bus == "system" else Gio.BusType.SESSION
                address = Gio.dbus_address_get_for_bus_sync(kind, None)
            else:
                address = bus
            self.connection = private_connection(address)
        except GLib.Error as exc:
            raise ServiceError(f"cannot connect to the {bus} bus: {exc.message}") from None

    def close(self) -> None:
        if not self.connection.is_closed():  # the bus may have gone away under us
            self.connection.close_sync(None)

    def __enter__(self) -> "DaemonClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- calls -----------------------------------------------------------------------------------
    def call(self, method: str, signature: str = "()", args: tuple = (), *, timeout_s: float | None = None,
             interface: str = INTERFACE, parameters=None) -> tuple:
        """Call a method; returns the unpacked reply tuple."""
        GLib = self._GLib
        if parameters is None:
            parameters = GLib.Variant(signature, args) if args else None
        reply = self._call_raw(method, parameters, timeout_s, interface)
        return reply.unpack()

    def _call_raw(self, method: str, parameters, timeout_s: float | None, interface: str = INTERFACE):
        GLib, Gio = self._GLib, self._Gio
        timeout_ms = int((timeout_s or self.timeout_s) * 1000)
        try:
            return self.connection.call_sync(BUS_NAME, OBJECT_PATH, interface, method, parameters, None,
                                             Gio.DBusCallFlags.NONE, timeout_ms, None)
        except GLib.Error as exc:
            raise self._error(method, exc) from None

    def _error(self, method: str, exc) -> Exception:
        Gio = self._Gio
        remote = Gio.DBusError.get_remote_error(exc) or ""
        message = exc.message.removeprefix(f"GDBus.Error:{remote}: ") if remote else exc.message
        short = remote.rsplit(".", 1)[-1] if remote else "Error"
        if short in NOT_RUNNING:
            return ServiceError(f"edgeoffloadd is not running on the {self.bus} bus (nobody owns {BUS_NAME}): "
                                "check `systemctl status edgeoffloadd`")
        if short == "AccessDenied":
            return RequestError(f"{method} is not allowed for this user: it needs root or membership of the "
                                f"edgeoffload group ({message})")
        if short in ("NoReply", "Timeout", "TimedOut"):
            return ServiceError(f"{method}: the daemon did not answer in time ({message})")
        cls = RequestError if short in CALLERS_MISTAKES else ServiceError
        err = cls(f"{short}: {message}")
        err.dbus_name = remote
        return err

    def infer(self, model: str, array: np.ndarray, *, timeout_s: float | None = None) -> InferReply:
        GLib = self._GLib
        data, shape, dtype = tensor_to_wire(array)
        params = GLib.Variant.new_tuple(
            GLib.Variant("s", model),
            GLib.Variant.new_from_bytes(GLib.VariantType.new("ay"), GLib.Bytes.new(data), True),
            GLib.Variant("at", shape), GLib.Variant("s", dtype))
        reply = self._call_raw("Infer", params, timeout_s)
        out = reply.get_child_value(0).get_data_as_bytes().get_data() or b""
        out_shape = reply.get_child_value(1).unpack()
        out_dtype = reply.get_child_value(2).get_string()
        rest = [reply.get_child_value(i).unpack() for i in range(3, 7)]
        output = np.frombuffer(out, dtype=np.dtype(out_dtype).newbyteorder("<")).reshape(out_shape)
        return InferReply(output, *rest)

    def properties(self) -> dict:
        (props,) = self.call("GetAll", "(s)", (INTERFACE,), interface="org.freedesktop.DBus.Properties")
        return props

    def get(self, name: str):
        (value,) = self.call("Get", "(ss)", (INTERFACE, name), interface="org.freedesktop.DBus.Properties")
        return value

    # --- signals ---------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[str, str, tuple], None]) -> int:
        """Call `callback(interface, signal, args)` for every signal the daemon emits (run a GLib main loop)."""
        def on_signal(_con, _sender, _path, interface, name, params):
            callback(interface, name, params.unpack())

        return self.connection.signal_subscribe(BUS_NAME, None, None, OBJECT_PATH, None,
                                                self._Gio.DBusSignalFlags.NONE, on_signal)
