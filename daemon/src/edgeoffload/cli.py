"""Command-line front ends: `edgeoffloadd` (the daemon) and `edgeoffloadctl` (tools around it).

`edgeoffloadctl` subcommands are small classes listed in CTL_COMMANDS; each has `name`, `help`,
`add_arguments(parser)` and `run(args) -> int`. Errors are mapped once, in `run_mapped`: an EdgeOffloadError
is the user's to fix (one line per problem on stderr, exit 2), anything else is a bug (one line, exit 1).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from . import __version__
from .errors import ConfigError, EdgeOffloadError

log = logging.getLogger(__name__)

CTL_PROG = "edgeoffloadctl"
EXIT_OK, EXIT_BUG, EXIT_USER = 0, 1, 2


class CheckConfig:
    name = "check-config"
    help = "validate daemon config and policy files (exit 2 if any has a problem)"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE", help="a daemon config or a policy (YAML)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from .config import check_files

        return check_files(args.files)


def _ctl_commands() -> tuple[type, ...]:
    from . import ctl_commands

    return (CheckConfig, *ctl_commands.COMMANDS)


CTL_COMMANDS: tuple[type, ...] = _ctl_commands()


class OneLineParser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (like every other error) instead of usage + error."""

    def error(self, message: str):
        self.exit(EXIT_USER, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def command_parser(prog: str, description: str, version: str, commands) -> argparse.ArgumentParser:
    """A parser whose subcommands are the given command classes (`name`, `help`, `add_arguments`, `run`)."""
    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cls in commands:
        command = cls()
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def run_command(prog: str, parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse, set up logging, run the chosen subcommand and map its errors to one line and an exit code."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors: argparse already printed why
        return e.code if isinstance(e.code, int) else EXIT_OK if e.code is None else EXIT_USER
    level = logging.DEBUG if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return run_mapped(prog, lambda: args.run(args))


def ctl_main(argv: list[str] | None = None) -> int:
    """Entry point of `edgeoffloadctl`; returns the exit status (tests call it in-process)."""
    parser = command_parser(CTL_PROG, "Inspect and control the edgeoffload daemon.", __version__, CTL_COMMANDS)
    return run_command(CTL_PROG, parser, argv)


def run_mapped(prog: str, action: Callable[[], int]) -> int:
    """Run `action`; EdgeOffloadError -> one line per problem, exit 2 (1 for failures that are not the user's
    input, e.g. the daemon is not running); anything else -> one line, exit 1."""
    try:
        return action()
    except ConfigError as e:
        for line in [str(p) for p in e.problems] or [str(e)]:
            print(f"{prog}: {line}", file=sys.stderr)
        return EXIT_USER
    except EdgeOffloadError as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the last line of defence: a bug, reported in one line
        log.debug("unexpected error", exc_info=True)
        print(f"{prog}: internal error (a bug, please report it): {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_BUG


DAEMON_PROG = "edgeoffloadd"
DEFAULT_CONFIG = "/etc/edgeoffload/edgeoffloadd.yaml"


def _daemon_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=DAEMON_PROG, description="The edgeoffload daemon: profiles models, "
                                     "decides per request where to run them, runs them and reports over MQTT.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"daemon config (default {DEFAULT_CONFIG})")
    parser.add_argument("--requests", type=int, default=None, metavar="N",
                        help="run the built-in workload with N requests (overrides workload.requests)")
    parser.add_argument("--exit-after-workload", action="store_true",
                        help="stop once the workload is done instead of serving until a stop signal")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None,
                        help="overrides logging.level")
    return parser


def daemon_main(argv: list[str] | None = None) -> int:
    """Entry point of `edgeoffloadd`; returns the exit status."""
    try:
        args = _daemon_parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_OK if e.code is None else EXIT_USER
    if args.requests is not None and args.requests < 0:
        print(f"{DAEMON_PROG}: --requests must be 0 or more", file=sys.stderr)
        return EXIT_USER
    return run_mapped(DAEMON_PROG, lambda: _serve(args))


def _setup_logging(level: str) -> None:
    # Under systemd journald adds timestamps; elsewhere we do.
    under_systemd = "JOURNAL_STREAM" in os.environ or "INVOCATION_ID" in os.environ
    fmt = "%(levelname)s %(name)s: %(message)s" if under_systemd else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, force=True)


def _serve(args: argparse.Namespace) -> int:
    from .config import load_config
    from .engine.workload import WorkloadRunner
    from .service import Service

    config = load_config(args.config)
    _setup_logging(args.log_level or config.logging.level)
    service = Service(config, config_path=args.config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: service.policy.request_reload())
    signal.signal(signal.SIGUSR1, lambda *_: service.request_profile())
    requests = config.workload.requests if args.requests is None else args.requests
    rc = EXIT_OK
    try:
        service.start()
        if requests:
            # A replayed workload is short: give the broker a moment so its first decisions are reported.
            service.reporter.wait_connected(timeout_s=3.0)
            wl = config.workload
            runner = WorkloadRunner(service.executor, models=list(wl.models or service.executor.models),
                                    requests=requests, inputs=wl.inputs, interval_ms=wl.interval_ms,
                                    seed=wl.seed, stop=stop)
            result = runner.run()
            log.info("workload done: %d completed, %d failed, %d fell back to local",
                     result.completed, result.failed, result.fallbacks)
            rc = EXIT_OK if result.failed == 0 else EXIT_BUG
        if not (requests and args.exit_after_workload):
            stop.wait()
    finally:
        service.stop()
    return rc
