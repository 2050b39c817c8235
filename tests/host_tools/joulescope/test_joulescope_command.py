"""`edgeoffload-host joulescope`: options, no instrument, a missing package; the bridge with no broker."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path

import pytest
from support import free_port

sys.path.insert(0, str(Path(__file__).parent))

from joulescope_fakes import FakeJoulescope, Pulse  # noqa: E402

from edgeoffload.errors import SensorError  # noqa: E402
from edgeoffload_host.cli import main  # noqa: E402
from edgeoffload_host.joulescope.bridge import Bridge, BrokerSettings  # noqa: E402
from edgeoffload_host.joulescope.command import broker_address  # noqa: E402
from edgeoffload_host.joulescope.instrument import load_joulescope, open_instrument  # noqa: E402


def run(capsys, *argv):
    code = main(["joulescope", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_without_an_instrument_it_says_so_and_exits_2(capsys):
    joulescope = load_joulescope()
    if joulescope.scan():
        pytest.skip("a Joulescope is connected here")
    code, out, err = run(capsys, "--device-id", "board1", "--broker", "127.0.0.1:1883")
    assert code == 2
    assert err.startswith("edgeoffload-host: error: no Joulescope found: connect one over USB")
    assert out == ""


def test_a_missing_joulescope_package_names_the_install_command(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "joulescope", None)  # what Python does when the import fails
    code, _, err = run(capsys, "--device-id", "board1", "--broker", "localhost")
    assert code == 2
    assert "needs the joulescope package, which is not installed" in err
    assert "pip install 'edgeoffload-host[joulescope]'" in err


def test_a_folder_named_joulescope_is_not_taken_for_the_package(tmp_path, monkeypatch):
    (tmp_path / "joulescope").mkdir()  # a namespace package, as a stray folder on sys.path would make
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "joulescope", raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "site-packages" not in p])
    with pytest.raises(SensorError, match=r"is not the Joulescope package \(it has no scan\(\)\)"):
        load_joulescope()


@pytest.mark.parametrize("argv, message", [
    (["--device-id", "a/b", "--broker", "h"], "argument --device-id: 'a/b' cannot be used in an MQTT topic"),
    (["--device-id", "a", "--broker", "h:0"], "argument --broker: port '0' in 'h:0' is not a number in 1..65535"),
    (["--device-id", "a", "--broker", ":1883"], "argument --broker: ':1883' names no host"),
    (["--device-id", "a", "--broker", "h", "--rate", "3"], "argument --rate: invalid choice: 3"),
    (["--device-id", "a", "--broker", "h", "--gpi", "2"], "argument --gpi: invalid choice: 2"),
    (["--device-id", "a", "--broker", "h", "--duration", "-1"], "argument --duration: -1 must be a positive"),
    (["--device-id", "a", "--broker", "h", "--duration", "nan"], "argument --duration: nan must be a positive"),
])
def test_bad_options_are_usage_errors(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err


def test_an_existing_recording_is_never_overwritten(capsys, tmp_path):
    existing = tmp_path / "run1.jls"
    existing.write_bytes(b"earlier recording")
    code, _, err = run(capsys, "--device-id", "a", "--broker", "h", "--jls", str(existing))
    assert code == 2
    assert f"--jls {existing}: the file exists; recordings are never overwritten" in err
    assert existing.read_bytes() == b"earlier recording"
    code, _, err = run(capsys, "--device-id", "a", "--broker", "h", "--jls", str(tmp_path / "nope" / "r.jls"))
    assert code == 2 and f"folder {tmp_path / 'nope'} does not exist" in err


def test_an_unreadable_password_file_is_named(capsys, tmp_path):
    code, _, err = run(capsys, "--device-id", "a", "--broker", "h", "--password-file", str(tmp_path / "pw"))
    assert code == 2
    assert f"--password-file {tmp_path / 'pw'}: cannot read it: No such file or directory" in err


@pytest.mark.parametrize("text, expected", [("broker", ("broker", 1883)), ("10.0.0.2:8883", ("10.0.0.2", 8883)),
                                            ("[::1]", ("::1", 1883)), ("[fe80::1]:1884", ("fe80::1", 1884))])
def test_broker_addresses(text, expected):
    assert broker_address(text) == expected


def test_broker_address_refuses_garbage():
    with pytest.raises(argparse.ArgumentTypeError, match="is not HOST"):
        broker_address("[::1")


def test_rates_and_inputs_the_v1_api_cannot_do_are_refused_before_looking_for_an_instrument():
    with pytest.raises(SensorError, match="statistics rate 3 Hz is not one the Joulescope offers"):
        open_instrument(None, 3)
    with pytest.raises(SensorError, match="GPI 2 cannot be streamed through the joulescope v1 API: use GPI 0 or 1"):
        open_instrument(None, 10, gpi=2)


def test_without_a_broker_the_bridge_keeps_the_instrument_running_and_stops_it_at_the_end(caplog):
    fake = FakeJoulescope(stats_rate_hz=50, pulses=(Pulse(1_100_000, 5000, 1.5),))
    bridge = Bridge(fake, BrokerSettings("127.0.0.1", free_port()), "board1", gpi=0)
    with caplog.at_level(logging.WARNING, logger="edgeoffload_host.joulescope.bridge"):
        summary = bridge.run(threading.Event(), duration_s=0.5)
    assert fake.started.is_set() and fake.stopped.is_set()
    assert summary.statistics_published == 0
    assert summary.statistics_dropped == fake.statistics_sent > 5
    assert "not reachable; retrying in the background" in caplog.text
    assert not bridge.connected
