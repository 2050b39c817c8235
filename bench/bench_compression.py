"""What compression buys on this machine, for MobileNet 32 and ResNet50 32, measured side by side in one run.

Per variant (float, Q, PQ, PWQ) against the float32 model of the same architecture:
  - int8 over float32 latency with 1 and 2 threads (the daemon's TFLite session, ai-edge-litert); float and
    int8 runs are interleaved in blocks so that drift on a shared machine hits both alike;
  - .tflite size ratio and gzip size ratio (pruning and clustering show only in the gzip size);
  - accuracy drop in points on the digits held-out split (the builder's seeded split) after fine-tuning.
Goals printed beside the figures: Q and PQ lose <= 1 point; int8 >= 2x faster than float on ResNet50 32.

Models are built (weights none, digits) into --models-dir, or a temporary folder, unless all are there.

    python bench/bench_compression.py [--models-dir DIR] [--epochs 3] [--variants float,q,pq,pwq]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgeoffload.backends.tflite import TfliteSession  # noqa: E402
from edgeoffload.errors import EdgeOffloadError  # noqa: E402
from edgeoffload_host.evaluate.inputs import ModelInfo, choose_dataset, describe  # noqa: E402
from edgeoffload_host.evaluate.measure import DatasetCache, accuracy, time_runs  # noqa: E402

ARCHITECTURES = ("mobilenet", "resnet50")
INPUT_PX = 32
GOAL_DROP_POINTS = 1.0
GOAL_SPEEDUP = 2.0


def build(models_dir: Path, variants: tuple[str, ...], epochs: int) -> list[Path]:
    """The .tflite files of every architecture × variant, building them only if one is missing."""
    from edgeoffload_host.models import BuildOptions, build_models
    from edgeoffload_host.models.build import artifact_paths
    from edgeoffload_host.models.command import format_step

    opts = BuildOptions(models_dir, ARCHITECTURES, (INPUT_PX,), variants, weights="none", dataset="digits",
                        epochs=epochs, seed=0, force=True)
    opts.check()  # an unknown variant fails here, before any training
    wanted = artifact_paths(opts)
    if all(p.exists() for p in wanted):
        print(f"reusing {len(wanted)} artifacts in {models_dir}")
    else:
        start = time.perf_counter()
        print(f"building {', '.join(ARCHITECTURES)} {INPUT_PX} px, variants {', '.join(variants)}, "
              f"{epochs} epochs into {models_dir} ...", flush=True)
        build_models(models_dir, models=ARCHITECTURES, inputs=(INPUT_PX,), variants=variants, weights="none",
                     dataset="digits", epochs=epochs, seed=0, force=True,
                     on_step=lambda step: print(format_step(step), flush=True))
        print(f"built in {time.perf_counter() - start:.0f} s")
    return [p for p in wanted if p.suffix == ".tflite"]


def interleaved_ms(sessions: dict[str, TfliteSession], images, rounds: int, block: int, warmup: int
                   ) -> dict[str, float]:
    """Median over rounds of each session's mean latency in a block; sessions alternate every block."""
    for session in sessions.values():
        time_runs(session, images, warmup)
    per_round: dict[str, list[float]] = {name: [] for name in sessions}
    for r in range(rounds):
        for name, session in sessions.items():
            per_round[name].append(statistics.fmean(time_runs(session, images, block, start_at=r * block)))
    return {name: statistics.median(values) for name, values in per_round.items()}


def measure_arch(infos: list[ModelInfo], threads: list[int], args: argparse.Namespace) -> dict:
    """Accuracy per variant and interleaved latency per variant and thread count for one architecture."""
    cache = DatasetCache()
    data, _ = cache.held_out(choose_dataset(infos[0], "digits", 0), INPUT_PX)
    acc = {i.label: accuracy(TfliteSession(i.model.content, threads=max(threads), name=i.name), data.images,
                             data.labels) for i in infos}
    latency = {}
    for t in threads:
        sessions = {i.label: TfliteSession(i.model.content, threads=t, name=i.name) for i in infos}
        latency[t] = interleaved_ms(sessions, data.images, args.rounds, args.block, args.warmup)
    return {"accuracy": acc, "latency": latency, "n": len(data.labels), "rounds": args.rounds,
            "block": args.block}


def report_arch(group: str, infos: list[ModelInfo], figures: dict, threads: list[int]) -> list[str]:
    """Print the side-by-side table of one architecture; return goal verdict lines."""
    base = next(i for i in infos if i.label == "float")
    acc, lat = figures["accuracy"], figures["latency"]
    head = f"{'model':<14}{'variant':<8}{'size MB':>8}{'size/fp':>8}{'gzip MB':>8}{'gzip/fp':>8}{'acc':>7}{'drop':>6}"
    head += "".join(f"{f'{t}t ms':>9}{f'{t}t q/fp':>9}" for t in threads)
    print(head)
    verdicts = []
    for i in infos:
        drop = 100 * (acc["float"] - acc[i.label])
        line = (f"{group:<14}{i.label:<8}{i.size_bytes / 1e6:>8.2f}{i.size_bytes / base.size_bytes:>8.3f}"
                f"{i.gzip_size_bytes / 1e6:>8.2f}{i.gzip_size_bytes / base.gzip_size_bytes:>8.3f}"
                f"{acc[i.label]:>7.3f}{drop:>6.1f}")
        line += "".join(f"{lat[t][i.label]:>9.3f}{lat[t][i.label] / lat[t]['float']:>9.3f}" for t in threads)
        print(line)
        if i.label in ("Q", "PQ"):
            verdicts.append(f"goal {i.name}: accuracy drop {drop:.1f} points (goal <= {GOAL_DROP_POINTS:.0f}): "
                            f"{'met' if drop <= GOAL_DROP_POINTS else 'NOT met'}")
        if i.label != "float" and i.architecture == "resnet50":
            speed = ", ".join(f"{t} thread{'s' if t > 1 else ''} {lat[t]['float'] / lat[t][i.label]:.2f}x"
                              for t in threads)
            ok = all(lat[t]["float"] / lat[t][i.label] >= GOAL_SPEEDUP for t in threads)
            verdicts.append(f"goal {i.name}: int8 speedup over float {speed} (goal >= {GOAL_SPEEDUP:.0f}x): "
                            f"{'met' if ok else 'NOT met'}")
    print(f"({figures['n']} held-out digits images; latency: ms per inference, median over {figures['rounds']} "
          f"interleaved blocks of {figures['block']} runs' means; q/fp = int8 (or variant) over float32)")
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=None, help="build here / reuse what is here")
    parser.add_argument("--variants", default="float,q,pq,pwq", help="comma list (float is always included)")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs when building (default 3)")
    parser.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved blocks per variant")
    parser.add_argument("--block", type=int, default=20, help="runs per block")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs per session first")
    args = parser.parse_args(argv)
    variants = tuple(dict.fromkeys(["float", *(v.strip() for v in args.variants.split(",") if v.strip())]))
    threads = [int(t) for t in args.threads.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-compression-") as tmp:
        models_dir = args.models_dir or Path(tmp)
        models_dir.mkdir(parents=True, exist_ok=True)
        try:
            paths = build(models_dir, variants, args.epochs)
            verdicts = []
            for arch in ARCHITECTURES:
                infos = [describe(p) for p in paths if p.name.startswith(f"{arch}_")]
                group = f"{infos[0].architecture_name} {INPUT_PX}"
                verdicts += report_arch(group, infos, measure_arch(infos, threads, args), threads)
        except EdgeOffloadError as e:
            print(f"bench_compression: {e}", file=sys.stderr)
            return 2
    print("\n".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
