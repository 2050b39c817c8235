"""``edgeoffload-host build``: the study's models as .tflite (float, int8) and .keras files with manifests.

Options are validated here, before anything heavy is imported: a bad flag is one line on stderr and exit 2.
TensorFlow is imported only once the build starts, so other subcommands never load it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from edgeoffload.errors import EdgeOffloadError, ModelError
from edgeoffload_host.models.build import VARIANTS, BuildOptions, Step, build_models
from edgeoffload_host.models.data import DIGITS
from edgeoffload_host.models.export import IO_TYPES
from edgeoffload_host.models.zoo import ARCHITECTURES, architecture, check_input_px

log = logging.getLogger(__name__)

PROG = "edgeoffload-host build"


class UsageError(EdgeOffloadError):
    """A flag's value cannot be used; the message starts with the flag."""


class BuildCommand:
    name = "build"
    help = "build the study's models (float and int8 .tflite, .keras) with manifests"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", default="models", metavar="DIR", help="output folder (default: models)")
        parser.add_argument("--models", default="mobilenet", metavar="LIST",
                            help=f"comma list of {', '.join(ARCHITECTURES)} (default: mobilenet)")
        parser.add_argument("--inputs", default="32", metavar="LIST", help="comma list of input sizes in px")
        parser.add_argument("--variants", default="float,q", metavar="LIST",
                            help="comma list of float (float32 .tflite + .keras), q (full int8)")
        parser.add_argument("--io-type", default="uint8", help="input/output type of int8 models: uint8 or int8")
        parser.add_argument("--weights", default="imagenet", metavar="none|imagenet|PATH",
                            help="backbone weights (imagenet needs network; none trains from scratch)")
        parser.add_argument("--dataset", default=DIGITS, metavar="digits|DIR",
                            help="scikit-learn's digits, or a folder with one sub-folder of images per class")
        parser.add_argument("--classes", default="100", help="output classes of the head (default: 100)")
        parser.add_argument("--epochs", default="1", help="fine-tuning epochs (0: none; default: 1)")
        parser.add_argument("--steps-per-epoch", default=None, metavar="N", help="limit each epoch to N batches")
        parser.add_argument("--batch-size", default="32", help="fine-tuning batch size (default: 32)")
        parser.add_argument("--seed", default="0", help="seed for the split, initial weights and training")
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

        try:
            build_models(opts.out_dir, opts.models, opts.inputs, opts.variants, opts.weights, opts.dataset,
                         opts.epochs, opts.seed, on_step=report, classes=opts.classes, io_type=opts.io_type,
                         batch_size=opts.batch_size, steps_per_epoch=opts.steps_per_epoch, force=opts.force)
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
    models = _names("--models", args.models, ARCHITECTURES, "model")
    inputs = tuple(_integer("--inputs", item, 1) for item in _items("--inputs", args.inputs))
    for key in models:
        for px in inputs:
            _flag("--inputs", check_input_px, architecture(key), px)
    variants = _names("--variants", args.variants, VARIANTS, "variant")
    if args.io_type not in IO_TYPES:
        raise UsageError(f"--io-type: {args.io_type!r} is not one of {', '.join(IO_TYPES)}")
    opts = BuildOptions(
        out_dir=Path(args.out), models=models, inputs=inputs, variants=variants, io_type=args.io_type,
        weights=_weights(args.weights), dataset=_dataset(args.dataset),
        classes=_integer("--classes", args.classes, 1), epochs=_integer("--epochs", args.epochs, 0),
        batch_size=_integer("--batch-size", args.batch_size, 1),
        steps_per_epoch=None if args.steps_per_epoch is None else _integer("--steps-per-epoch",
                                                                           args.steps_per_epoch, 1),
        seed=_integer("--seed", args.seed, 0), force=args.force)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out: {args.out} exists and is not a directory")
    opts.check()
    return opts


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


def _integer(flag: str, text: str, low: int) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise UsageError(f"{flag}: {text!r} is not a whole number") from None
    if value < low:
        raise UsageError(f"{flag}: {value} is below the minimum {low}")
    return value


def _flag(flag: str, check: Callable[..., None], *values: object) -> None:
    try:
        check(*values)
    except ModelError as e:
        raise UsageError(f"{flag}: {e}") from None


def _weights(text: str) -> str:
    if text in ("none", "imagenet"):
        return text
    try:
        with open(text, "rb") as f:
            f.read(1)
    except OSError as e:
        raise UsageError(f"--weights: cannot read {text!r}: {e.strerror or e} "
                         "(use none, imagenet or a readable weights file)") from None
    return text


def _dataset(text: str) -> str:
    if text == DIGITS or os.path.isdir(text):
        return text
    raise UsageError(f"--dataset: {text!r} is neither {DIGITS!r} nor a directory of class folders")


def format_step(step: Step) -> str:
    """One human line per finished step."""
    if step.action == "removed":
        return f"removed old {step.path} and its manifest (--force)"
    if step.action == "loaded":
        return f"loaded {step.name} ({step.seconds:.1f} s)"
    if step.action == "trained":
        return f"trained {step.name} ({step.seconds:.1f} s, float acc {step.float_accuracy:.2f})"
    versus = "" if step.action == "saved" else f" vs float {step.float_accuracy:.2f}"
    size_mb = (step.size_bytes or 0) / 1e6
    return (f"{step.action} {step.name} -> {step.path} ({size_mb:.1f} MB, {step.seconds:.1f} s, "
            f"acc {step.accuracy:.2f}{versus})")


def step_dict(step: Step) -> dict[str, object]:
    return {"action": step.action, "name": step.name, "seconds": round(step.seconds, 3),
            "path": None if step.path is None else str(step.path), "size_bytes": step.size_bytes,
            "accuracy": step.accuracy, "float_accuracy": step.float_accuracy}


def _dir_arg(path: Path) -> str:
    text = str(path)
    return text if text.endswith("/") else text + "/"


def _one_line(text: str) -> str:
    return " ".join(text.split())
