"""systemd notify datagrams, received on a real unix datagram socket."""

import os
import socket

import pytest

from edgeoffload.api.sdnotify import Notifier


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield path, sock
    sock.close()


def received(sock) -> dict[str, str]:
    return dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())


def test_ready_status_watchdog_stopping_reach_the_socket(notify_socket):
    path, sock = notify_socket
    n = Notifier({"NOTIFY_SOCKET": str(path)})
    assert n.enabled
    assert n.ready("2 models;\n  targets cpu1")
    assert received(sock) == {"READY": "1", "STATUS": "2 models; targets cpu1"}  # one line, always
    n.status("degraded")
    assert received(sock) == {"STATUS": "degraded"}
    n.watchdog()
    assert received(sock) == {"WATCHDOG": "1"}
    n.stopping()
    assert received(sock) == {"STOPPING": "1", "STATUS": "stopping"}


def test_abstract_socket_names(tmp_path):
    name = f"edgeoffload-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"


def test_without_systemd_everything_is_a_no_op(tmp_path, caplog):
    n = Notifier({})
    assert not n.enabled and not n.ready("x") and n.watchdog_interval_s is None
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    assert not gone.watchdog() and not gone.watchdog()
    assert sum("cannot notify systemd" in r.message for r in caplog.records) == 1  # said once


@pytest.mark.parametrize("env, interval", [
    ({"WATCHDOG_USEC": "4000000"}, 2.0),
    ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
])
def test_watchdog_interval_is_half_of_watchdogsec(env, interval):
    assert Notifier(env).watchdog_interval_s == interval
