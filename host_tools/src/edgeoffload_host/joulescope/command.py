"""``edgeoffload-host joulescope``: bridge a Joulescope to MQTT so the board's daemon can read it."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path

from edgeoffload.errors import ConfigError
from edgeoffload_host.joulescope.bridge import Bridge, BridgeSummary, BrokerSettings
from edgeoffload_host.joulescope.instrument import GPI_FIELDS, STATISTICS_RATES_HZ, open_instrument
from edgeoffload_host.signals import install_stop_handlers, restore_handlers

log = logging.getLogger(__name__)

DEFAULT_PORT = 1883


def broker_address(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]`` or ``[IPv6]:PORT`` -> (host, port)."""
    host, port_text = text, None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise argparse.ArgumentTypeError(f"{text!r} is not HOST[:PORT] ([IPv6]:PORT for IPv6)")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise argparse.ArgumentTypeError(f"{text!r} names no host")
    if port_text is None:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"port {port_text!r} in {text!r} is not a number in 1..65535")
    return host, int(port_text)


def _device_id(text: str) -> str:
    if not text or any(c in text for c in "/+#") or text != text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} cannot be used in an MQTT topic: it must be non-empty "
                                         "and contain no '/', '+', '#' or surrounding spaces")
    return text


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive, finite number of seconds")
    return value


class JoulescopeCommand:
    """Publish a Joulescope's statistics (and GPI-marked windows) for edgeoffloadd's `joulescope` power source."""

    name = "joulescope"
    help = "bridge a Joulescope's power statistics (and GPI-marked inference windows) to the MQTT broker"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--device-id", type=_device_id, required=True,
                            help="the board's mqtt device id (topics edgeoffload/v1/ID/power/joulescope...)")
        parser.add_argument("--broker", type=broker_address, required=True, metavar="HOST[:PORT]",
                            help=f"MQTT broker (port {DEFAULT_PORT} when omitted)")
        parser.add_argument("--rate", type=int, choices=STATISTICS_RATES_HZ, default=10, metavar="HZ",
                            help="statistics messages per second: one of %(choices)s (default: %(default)s)")
        parser.add_argument("--jls", type=Path, metavar="FILE",
                            help="also record the samples to this JLS file (must not exist yet)")
        parser.add_argument("--gpi", type=int, choices=sorted(GPI_FIELDS), metavar="N",
                            help="the general-purpose input wired to the daemon's GPIO marker (0 or 1): "
                                 "publish sample-accurate energy per high window")
        parser.add_argument("--serial", metavar="S", help="the instrument to use (serial number or name such as "
                                                          "JS220-001234; default: the first found)")
        parser.add_argument("--duration", type=_positive_seconds, metavar="S",
                            help="stop after this many seconds (default: until Ctrl-C or SIGTERM)")
        parser.add_argument("--username", help="broker user name")
        parser.add_argument("--password-file", type=Path, metavar="FILE", help="file holding the broker password")

    def run(self, args: argparse.Namespace) -> int:
        jls = _check_new_file(args.jls) if args.jls else None
        password = _read_password(args.password_file) if args.password_file else None
        host, port = args.broker
        instrument = open_instrument(args.serial, args.rate, args.gpi, jls)
        bridge = Bridge(instrument, BrokerSettings(host, port, args.username, password), args.device_id, args.gpi)
        stop = threading.Event()
        previous = install_stop_handlers(stop)
        print(f"bridging {instrument.name} to {host}:{port} on {bridge.topic} at {args.rate} Hz"
              + (f", GPI{args.gpi} windows" if args.gpi is not None else "")
              + (f", recording {jls}" if jls else "") + "; Ctrl-C stops", flush=True)
        try:
            summary = bridge.run(stop, args.duration)
        finally:
            restore_handlers(previous)
        _report(summary, jls)
        return 0


def _check_new_file(path: Path) -> Path:
    if path.exists():
        raise ConfigError(f"--jls {path}: the file exists; recordings are never overwritten: choose a new name")
    if not path.parent.is_dir():
        raise ConfigError(f"--jls {path}: folder {path.parent} does not exist: create it first")
    return path


def _read_password(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"--password-file {path}: cannot read it: {reason}") from exc
    return text.removesuffix("\n").removesuffix("\r")


def _report(summary: BridgeSummary, jls: Path | None) -> None:
    print(f"published {summary.statistics_published} statistics messages ({summary.statistics_dropped} dropped, "
          f"{summary.statistics_malformed} malformed) and {summary.windows_published} windows "
          f"({summary.windows_dropped} dropped) in {summary.duration_s:.1f} s", flush=True)
    if summary.blocks_dropped:
        print(f"warning: {summary.blocks_dropped} sample blocks were lost; windows spanning them have no energy",
              file=sys.stderr)
    if jls is not None:
        size = jls.stat().st_size if jls.exists() else 0
        print(f"recorded {jls} ({size / 1e6:.1f} MB)")
        print(f"next: edgeoffload-host energy {jls} --log DECISIONS.jsonl (the daemon's log.decisions_file)")
