"""``edgeoffload-host report EVALUATION.json``: CSV, a Markdown table and PNG plots of an evaluation.

Every output name is checked before anything is written; existing files are replaced only with --force.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from edgeoffload_host.evaluate.results import ResultsError, read_results, write_file

CSV_NAME, MARKDOWN_NAME = "evaluation.csv", "evaluation.md"


class ReportCommand:
    name = "report"
    help = "CSV, Markdown table and PNG plots (size, gzip size, accuracy, latency) of an evaluation"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("results", metavar="EVALUATION.json", help="the file `edgeoffload-host evaluate` wrote")
        parser.add_argument("--out", default=None, metavar="DIR",
                            help="output folder (default: report/ beside the results file)")
        parser.add_argument("--force", action="store_true", help="replace existing report files")
        parser.add_argument("--json", action="store_true", help="print one JSON document instead of lines")

    def run(self, args: argparse.Namespace) -> int:
        """Errors propagate: the CLI maps them once (one line on stderr, exit 2)."""
        from edgeoffload_host.report.plots import PLOTS  # matplotlib only once the input is known good
        from edgeoffload_host.report.tables import rows_from_results, to_csv, to_markdown

        results_path = Path(args.results)
        results = read_results(results_path)
        out = Path(args.out) if args.out else results_path.parent / "report"
        if out.exists() and not out.is_dir():
            raise ResultsError(f"--out: {out} exists and is not a directory")
        rows = rows_from_results(results)
        where = describe_host(results)
        makers: dict[str, Callable[[], bytes]] = {
            CSV_NAME: lambda: to_csv(rows).encode(),
            MARKDOWN_NAME: lambda: to_markdown(rows, f"Evaluation of {len(rows)} models on {where}").encode(),
            **{name: (lambda plot=plot: plot(rows, where)) for name, plot in PLOTS.items()},
        }
        existing = [out / name for name in makers if (out / name).exists()]
        if existing and not args.force:
            raise ResultsError(f"{existing[0]} already exists ({len(existing)} of the report's files do); "
                               "pass --force to replace them or --out another folder")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ResultsError(f"--out: cannot create {out}: {e.strerror or e}") from e
        written = []
        for name, make in makers.items():
            start = time.perf_counter()
            size = write_file(out / name, make(), args.force)
            written.append({"path": str(out / name), "size_bytes": size,
                            "seconds": round(time.perf_counter() - start, 3)})
            if not args.json:
                print(f"wrote {out / name} ({size / 1e3:.1f} kB, {written[-1]['seconds']:.1f} s)", flush=True)
        next_command = f"edgeoffload-host export-triton {models_dir(results)} --out triton-models"
        if args.json:
            print(json.dumps({"written": written, "next": next_command}, indent=2))
        else:
            print(f"next: {next_command}")
        return 0


def describe_host(results: dict) -> str:
    """``x86_64, 2 CPUs, ai_edge_litert 2.3.0``."""
    host = results.get("host") if isinstance(results.get("host"), dict) else {}
    parts = [str(host.get("machine", "")), f"{host['cpu_count']} CPUs" if host.get("cpu_count") else "",
             str(results.get("runtime", ""))]
    return ", ".join(p for p in parts if p) or "unknown host"


def models_dir(results: dict) -> str:
    """The folder of the first model evaluated (for the next command)."""
    path = results["models"][0].get("path")
    return str(Path(path).parent) + "/" if isinstance(path, str) else "MODELS_DIR"
