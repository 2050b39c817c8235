"""`edgeoffload-host <subcommand>`: subcommands are small classes in one literal list.

Each has `name`, `help`, `add_arguments(parser)` and `run(args) -> int`; `main(argv) -> int` so tests call it
in-process. Errors are mapped once: EdgeOffloadError -> one line on stderr, exit 2; anything else -> exit 1.
"""

from __future__ import annotations

import argparse
import logging
import sys

from edgeoffload.errors import ConfigError, EdgeOffloadError
from edgeoffload_host import __version__
from edgeoffload_host.demo import DemoCommand
from edgeoffload_host.models.command import BuildCommand
from edgeoffload_host.serve.command import ServeCommand

PROG = "edgeoffload-host"
COMMANDS = (BuildCommand, ServeCommand, DemoCommand)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="edgeoffload host tools: build models, serve them "
                                     "for offloading, run the demo.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cls in COMMANDS:
        command = cls()
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except ConfigError as e:
        for line in [str(p) for p in e.problems] or [str(e)]:
            print(f"{PROG}: {line}", file=sys.stderr)
        return 2
    except EdgeOffloadError as e:
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        print(f"{PROG}: internal error (a bug, please report it): {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
