"""`edgeoffload-host <subcommand>`: subcommands are small classes in one literal list.

Each has `name`, `help`, `add_arguments(parser)` and `run(args) -> int`; `main(argv) -> int` so tests call it
in-process. Parsing and error mapping are the daemon CLI's: EdgeOffloadError -> one line on stderr, exit 2;
anything else -> exit 1.
"""

from __future__ import annotations

import sys

from edgeoffload.cli import command_parser, run_command
from edgeoffload_host import __version__
from edgeoffload_host.demo import DemoCommand
from edgeoffload_host.energy import EnergyCommand
from edgeoffload_host.evaluate import EvaluateCommand
from edgeoffload_host.export import ExportTritonCommand
from edgeoffload_host.joulescope import JoulescopeCommand
from edgeoffload_host.models.command import BuildCommand
from edgeoffload_host.report import ReportCommand
from edgeoffload_host.serve.command import ServeCommand

PROG = "edgeoffload-host"
COMMANDS = (BuildCommand, EvaluateCommand, ReportCommand, ExportTritonCommand, ServeCommand, DemoCommand,
            JoulescopeCommand, EnergyCommand)


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(PROG, "edgeoffload host tools: build, evaluate and report models, export them for Triton, serve them for offloading, run the demo.",
                            __version__, COMMANDS)
    return run_command(PROG, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
