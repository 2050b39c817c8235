"""``edgeoffload-host evaluate FILES_OR_DIRS...``: accuracy and latency of .tflite files on this machine.

Every file is verified against its manifest (the daemon's loader, its messages) and every input checked
before the first measurement; the results file is never overwritten without --force.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from edgeoffload.backends.tflite import runtime_version
from edgeoffload_host.flags import UsageError, parse_integer
from edgeoffload_host.evaluate.inputs import (
    DATASET_CHOICES,
    DatasetChoice,
    ModelInfo,
    check_dataset_flag,
    choose_dataset,
    describe,
    find_model_files,
)
from edgeoffload_host.evaluate.measure import DatasetCache, HeldOut, Measured, measure
from edgeoffload_host.evaluate.results import check_writable, model_entry, results_document, write_file

DEFAULT_RESULTS = "evaluation.json"


def default_threads() -> str:
    return ",".join(str(t) for t in dict.fromkeys((1, os.cpu_count() or 1)))


class EvaluateCommand:
    name = "evaluate"
    help = "measure accuracy and latency (1 and N threads) of .tflite files on this machine"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help=".tflite files or folders of them")
        parser.add_argument("--threads", default=default_threads(), metavar="LIST",
                            help=f"comma list of thread counts (default: {default_threads()})")
        parser.add_argument("--warmup", default="5", metavar="N", help="untimed runs first (default: 5)")
        parser.add_argument("--runs", default="50", metavar="N", help="timed runs per thread count (default: 50)")
        parser.add_argument("--dataset", default=None, metavar=DATASET_CHOICES,
                            help="held-out data (default: the dataset each model's manifest names)")
        parser.add_argument("--seed", default="0", metavar="N",
                            help="split seed for models whose manifest has none (default: 0)")
        parser.add_argument("--out", default=None, metavar="FILE",
                            help=f"results file (default: {DEFAULT_RESULTS} in the first folder given)")
        parser.add_argument("--force", action="store_true", help="replace an existing results file")
        parser.add_argument("--json", action="store_true", help="print the results as one JSON document")

    def run(self, args: argparse.Namespace) -> int:
        """Errors propagate: the CLI maps them once (one line on stderr, exit 2)."""
        threads = parse_threads(args.threads)
        warmup, runs = parse_integer("--warmup", args.warmup, 0), parse_integer("--runs", args.runs, 1)
        seed = parse_integer("--seed", args.seed, 0)
        check_dataset_flag(args.dataset)
        infos = [describe(p) for p in find_model_files(args.paths)]
        choices = [choose_dataset(info, args.dataset, seed) for info in infos]
        out = Path(args.out) if args.out else default_results_path(args.paths)
        check_writable(out, args.force)
        say = (lambda line: None) if args.json else (lambda line: print(line, flush=True))
        entries = self._measure_all(infos, choices, threads, warmup, runs, say)
        document = results_document(entries, runtime=runtime_version(), threads=threads, warmup=warmup,
                                    runs=runs)
        start = time.perf_counter()
        size = write_file(out, (json.dumps(document, indent=2) + "\n").encode(), args.force)
        next_command = f"edgeoffload-host report {out} --out {out.parent / 'report'}"
        if args.json:
            print(json.dumps({**document, "results_file": str(out), "next": next_command}, indent=2))
        else:
            say(f"wrote {out} ({len(entries)} models, {size / 1e3:.1f} kB, {time.perf_counter() - start:.1f} s)")
            say(f"next: {next_command}")
        return 0

    @staticmethod
    def _measure_all(infos: list[ModelInfo], choices: list[DatasetChoice], threads: list[int], warmup: int,
                     runs: int, say: Any) -> list[dict[str, Any]]:
        cache = DatasetCache()
        entries = []
        for info, choice in zip(infos, choices, strict=True):
            data, fresh = cache.held_out(choice, info.input_px)
            if fresh:
                say(f"loaded {data.name}: {len(data.labels)} held-out images, {info.input_px} px, "
                    f"split seed {choice.seed} ({data.seconds:.1f} s)")
            measured = measure(info, data, threads, warmup, runs)
            say(format_model_line(info, data, measured))
            entries.append(model_entry(info, data, measured))
        return entries


def format_model_line(info: ModelInfo, data: HeldOut, measured: Measured) -> str:
    """One line per model evaluated."""
    per_threads = ", ".join(f"{t} thread{'s' if t > 1 else ''} {s.mean_ms:.2f} ms (p99 {s.p99_ms:.2f})"
                            for t, s in measured.latency.items())
    verified = "" if info.model.manifest else ", no manifest: unverified"
    split = " (not the build's split)" if data.choice.build_sha256 not in (None, data.sha256) else ""
    return (f"evaluated {info.name} <- {info.model.path.name} ({info.size_bytes / 1e6:.1f} MB, gzip "
            f"{info.gzip_size_bytes / 1e6:.1f} MB{verified}): acc {measured.accuracy:.3f} on {len(data.labels)} "
            f"held-out{split}; {per_threads} ({measured.seconds:.1f} s)")


def default_results_path(paths: list[str]) -> Path:
    first = Path(paths[0])
    return (first if first.is_dir() else first.parent) / DEFAULT_RESULTS


def parse_threads(text: str) -> list[int]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UsageError("--threads: empty list")
    return list(dict.fromkeys(parse_integer("--threads", item, 1) for item in items))


