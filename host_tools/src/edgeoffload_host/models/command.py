"""``edgeoffload-host build``: the study's models (or a user's) as .tflite (float, Q, PQ, PWQ) and .keras files
with manifests.

Options are validated here, before anything heavy is imported: a bad flag is one line on stderr and exit 2.
TensorFlow is imported only once the build starts, so other subcommands never load it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from edgeoffload.errors import EdgeOffloadError, ModelError
from edgeoffload_host.models.build import VARIANTS, BuildOptions, Step, build_models
from edgeoffload_host.models.compress import CLUSTER_INITS
from edgeoffload_host.models.data import CIFAR, DIGITS
from edgeoffload_host.models.export import IO_TYPES
from edgeoffload_host.models.zoo import ARCHITECTURES, architecture, check_input_px
from edgeoffload_host.flags import UsageError, parse_integer

log = logging.getLogger(__name__)

PROG = "edgeoffload-host build"


class BuildCommand:
    name = "build"
    help = "build the study's models (float, Q, PQ, PWQ .tflite and .keras) with manifests"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", default="models", metavar="DIR", help="output folder (default: models)")
        what = parser.add_argument_group("what to build")
        what.add_argument("--models", default=None, metavar="LIST",
                          help=f"comma list of {', '.join(ARCHITECTURES)} (default: mobilenet)")
        what.add_argument("--inputs", default=None, metavar="LIST", help="comma list of input sizes in px "
                          "(default: 32)")
        what.add_argument("--model-file", default=None, metavar="PATH",
                          help="your own Keras model (.keras, .h5 or SavedModel folder) instead of --models: "
                          "one [N,H,W,3] float 0..255 image in (H == W), one [N,classes] output")
        what.add_argument("--variants", default="float,q", metavar="LIST",
                          help="comma list of float (float32 .tflite + .keras), q (int8), pq (pruned, int8), "
                          "pwq (pruned, clustered, int8) (default: float,q)")
        what.add_argument("--io-type", default="uint8", help="input/output type of int8 models: uint8 or int8")
        what.add_argument("--classes", default=None, help="output classes of the head (default: 100)")
        train = parser.add_argument_group("data and training")
        train.add_argument("--weights", default=None, metavar="none|imagenet|PATH",
                           help="backbone weights (default imagenet, needs network; none trains from scratch); "
                           "with --model-file: a weights file to load, else its own weights")
        train.add_argument("--dataset", default=DIGITS, metavar="digits|cifar10|cifar100|DIR",
                           help="scikit-learn's digits (default), CIFAR through Keras (downloads once), "
                           "or a folder with one sub-folder of images per class")
        train.add_argument("--epochs", default="1", help="fine-tuning epochs (0: none; default: 1)")
        train.add_argument("--steps-per-epoch", default=None, metavar="N",
                           help="limit every fine-tuning epoch to N batches")
        train.add_argument("--batch-size", default="32", help="fine-tuning batch size (default: 32)")
        train.add_argument("--learning-rate", default="0.001", help="Adam learning rate (default: 0.001)")
        train.add_argument("--calibration-samples", default="100", metavar="N",
                           help="training images for int8 calibration (default: 100)")
        train.add_argument("--seed", default="0", help="seed for the split, initial weights and training")
        squeeze = parser.add_argument_group("compression (the study's values by default)")
        squeeze.add_argument("--sparsity", default="0.5", help="ConstantSparsity target of pq/pwq (default: 0.5)")
        squeeze.add_argument("--prune-frequency", default="100", metavar="STEPS",
                             help="recompute the pruning masks every STEPS steps (default: 100)")
        squeeze.add_argument("--prune-epochs", default="4", help="fine-tuning epochs while pruning (default: 4)")
        squeeze.add_argument("--clusters", default="16", help="weight clusters per layer of pwq (default: 16)")
        squeeze.add_argument("--cluster-init", default="linear", metavar="|".join(CLUSTER_INITS),
                             help="centroid initialization (default: linear)")
        squeeze.add_argument("--cluster-epochs", default="2",
                             help="fine-tuning epochs while clustering (default: 2)")
        parser.add_argument("--force", action="store_true",
                            help="remove existing artifacts and manifests of the same names first")
        parser.add_argument("--json", action="store_true", help="print one JSON document instead of lines")

    def run(self, args: argparse.Namespace) -> int:
        try:
            opts = options_from_args(args)
        except (UsageError, ModelError) as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return 2
        steps: list[Step] = []

        def report(step: Step) -> None:
            steps.append(step)
            if not args.json:
                print(format_step(step), flush=True)

        fields = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)}
        for positional in ("out_dir", "models", "inputs", "variants", "weights", "dataset", "epochs", "seed"):
            del fields[positional]
        try:
            build_models(opts.out_dir, opts.models, opts.inputs, opts.variants, opts.weights, opts.dataset,
                         opts.epochs, opts.seed, on_step=report, **fields)
        except EdgeOffloadError as e:
            print(f"{PROG}: error: {_one_line(str(e))}", file=sys.stderr)
            return 2
        next_command = f"edgeoffload-host serve --models {_dir_arg(opts.out_dir)}"
        if args.json:
            print(json.dumps({"steps": [step_dict(s) for s in steps], "next": next_command}, indent=2))
        else:
            print(f"next: {next_command}")
        return 0


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    """Typed, checked options; UsageError naming the flag for the first bad value."""
    model_file = None if args.model_file is None else _model_file(args)
    models = _names("--models", args.models or "mobilenet", ARCHITECTURES, "model")
    inputs = tuple(parse_integer("--inputs", item, 1) for item in _items("--inputs", args.inputs or "32"))
    if model_file is None:
        for key in models:
            for px in inputs:
                _flag("--inputs", check_input_px, architecture(key), px)
    variants = _names("--variants", args.variants, VARIANTS, "variant")
    if args.io_type not in IO_TYPES:
        raise UsageError(f"--io-type: {args.io_type!r} is not one of {', '.join(IO_TYPES)}")
    if args.cluster_init not in CLUSTER_INITS:
        raise UsageError(f"--cluster-init: {args.cluster_init!r} is not one of {', '.join(CLUSTER_INITS)}")
    default_weights = "imagenet" if model_file is None else "none"
    opts = BuildOptions(
        out_dir=Path(args.out), models=models, inputs=inputs, variants=variants, io_type=args.io_type,
        weights=_weights(args.weights or default_weights), dataset=_dataset(args.dataset),
        classes=parse_integer("--classes", args.classes or "100", 1), epochs=parse_integer("--epochs", args.epochs, 0),
        batch_size=parse_integer("--batch-size", args.batch_size, 1),
        steps_per_epoch=None if args.steps_per_epoch is None else parse_integer("--steps-per-epoch",
                                                                           args.steps_per_epoch, 1),
        learning_rate=_number("--learning-rate", args.learning_rate, 0.0, None),
        calibration_samples=parse_integer("--calibration-samples", args.calibration_samples, 1),
        seed=parse_integer("--seed", args.seed, 0), force=args.force, model_file=model_file,
        sparsity=_number("--sparsity", args.sparsity, 0.0, 1.0),
        prune_frequency=parse_integer("--prune-frequency", args.prune_frequency, 1),
        prune_epochs=parse_integer("--prune-epochs", args.prune_epochs, 1),
        clusters=parse_integer("--clusters", args.clusters, 2), cluster_init=args.cluster_init,
        cluster_epochs=parse_integer("--cluster-epochs", args.cluster_epochs, 0),
        progress=sys.stderr.isatty())
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out: {args.out} exists and is not a directory")
    opts.check()
    return opts


def _model_file(args: argparse.Namespace) -> Path:
    """A readable file or folder, and no flag that only applies to the study's architectures."""
    for flag, value in (("--models", args.models), ("--inputs", args.inputs), ("--classes", args.classes)):
        if value is not None:
            raise UsageError(f"{flag}: not used with --model-file (its input size and classes come from the "
                             "model); leave it out")
    if args.weights in ("imagenet", "none"):
        raise UsageError(f"--weights: {args.weights!r} applies to --models; with --model-file the model keeps "
                         "its own weights, or give a weights file PATH to load")
    return _readable("--model-file", args.model_file, "give a .keras or .h5 file or a SavedModel folder",
                     allow_dir=True)


def _readable(flag: str, text: str, hint: str, *, allow_dir: bool = False) -> Path:
    """`text` as a path that can be read (a folder only where `allow_dir`), else a UsageError with `hint`."""
    path = Path(text)
    try:
        if allow_dir and path.is_dir():
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
    except OSError as e:
        raise UsageError(f"{flag}: cannot read {text!r}: {e.strerror or e} ({hint})") from None
    return path


def _items(flag: str, text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UsageError(f"{flag}: empty list")
    return items


def _names(flag: str, text: str, known: Mapping[str, object], noun: str) -> tuple[str, ...]:
    names = tuple(item.lower() for item in _items(flag, text))
    for name in names:
        if name not in known:
            raise UsageError(f"{flag}: unknown {noun} {name!r} (choose from {', '.join(sorted(known))})")
    return tuple(dict.fromkeys(names))


def _number(flag: str, text: str, above: float, below: float | None) -> float:
    """A float strictly between above and below (no upper bound when below is None)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UsageError(f"{flag}: {text!r} is not a number") from None
    if not value > above or (below is not None and not value < below):
        bounds = f"above {above:g}" if below is None else f"between {above:g} and {below:g}"
        raise UsageError(f"{flag}: {value:g} is not {bounds}")
    return value


def _flag(flag: str, check: Callable[..., None], *values: object) -> None:
    try:
        check(*values)
    except ModelError as e:
        raise UsageError(f"{flag}: {e}") from None


def _weights(text: str) -> str:
    if text in ("none", "imagenet"):
        return text
    _readable("--weights", text, "use none, imagenet or a readable weights file")
    return text


def _dataset(text: str) -> str:
    if text == DIGITS or text in CIFAR or os.path.isdir(text):
        return text
    raise UsageError(f"--dataset: {text!r} is not {', '.join((DIGITS, *CIFAR))} or a directory of class folders")


def format_step(step: Step) -> str:
    """One human line per finished step."""
    if step.action == "removed":
        return f"removed old {step.path} and its manifest (--force)"
    if step.action == "loaded":
        return f"loaded {step.name} ({step.seconds:.1f} s)"
    if step.action == "trained":
        return f"trained {step.name} ({step.seconds:.1f} s, float acc {step.float_accuracy:.2f})"
    if step.action in ("pruned", "clustered"):
        clusters = "" if step.max_unique is None else f", at most {step.max_unique} values per output channel"
        return (f"{step.action} {step.name} ({step.seconds:.1f} s, {step.sparsity:.1%} zeros in the pruned "
                f"kernels{clusters}, keras acc {step.accuracy:.2f} vs float {step.float_accuracy:.2f})")
    versus = "" if step.action == "saved" else f" vs float {step.float_accuracy:.2f}"
    size_mb, gzip_mb = (step.size_bytes or 0) / 1e6, (step.gzip_size_bytes or 0) / 1e6
    return (f"{step.action} {step.name} -> {step.path} ({size_mb:.1f} MB, gzip {gzip_mb:.1f} MB, "
            f"{step.seconds:.1f} s, acc {step.accuracy:.2f}{versus})")


def step_dict(step: Step) -> dict[str, object]:
    return {"action": step.action, "name": step.name, "seconds": round(step.seconds, 3),
            "path": None if step.path is None else str(step.path), "size_bytes": step.size_bytes,
            "gzip_size_bytes": step.gzip_size_bytes, "accuracy": step.accuracy,
            "float_accuracy": step.float_accuracy, "sparsity": step.sparsity, "max_unique": step.max_unique}


def _dir_arg(path: Path) -> str:
    text = str(path)
    return text if text.endswith("/") else text + "/"


def _one_line(text: str) -> str:
    return " ".join(text.split())
