"""edgeoffloadctl subcommands that talk to the running daemon over D-Bus.

Each is a small class (`name`, `help`, `add_arguments`, `run`) listed in cli.CTL_COMMANDS. Tables by default,
`--json` for machines; errors are raised and cli.run_mapped prints them as one line (exit 2: the caller's to
fix, 1: the daemon or the bus failed).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from .ctl_format import emit, flush, pairs, sensors_text, signal_line, table
from .engine.energy_import import MAX_BYTES as ENERGY_PROFILE_MAX_BYTES
from .errors import RequestError

PROFILE_FIELDS = ("model", "target", "mean_ms", "p50_ms", "p99_ms", "stdev_ms", "energy_mj", "first_run_ms", "runs",
                  "measured_utc")
IMPORT = "import"  # `profile import FILE`
SIGNAL_ARGS = {
    "PolicyChanged": ("digest", "objective"),
    "PolicyRejected": ("error",),
    "TargetAvailabilityChanged": ("target", "available", "reason"),
    "Decision": ("model", "target", "latency_ms", "energy_mj", "fallback", "dropped"),
}


class DaemonCommand:
    """Options every daemon-facing command takes."""

    name = help = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--bus", default=os.environ.get("EDGEOFFLOAD_BUS", "system"),
                            help="system (default; env EDGEOFFLOAD_BUS), session, or a D-Bus address")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds to wait for the daemon")

    def run(self, args: argparse.Namespace) -> int:
        from .api.dbus_client import DaemonClient

        with DaemonClient(args.bus, timeout_s=args.timeout) as client:
            return self.talk(client, args)

    def talk(self, client, args: argparse.Namespace) -> int:
        raise NotImplementedError


class Status(DaemonCommand):
    name, help = "status", "the daemon's state, policy, targets and what degrades it"

    def talk(self, client, args) -> int:
        p = client.properties()
        usable = [t[0] for t in p["Targets"] if t[2]]
        items = [("state", p["Status"]), ("device", p["DeviceId"]), ("version", p["Version"]),
                 ("policy", f"{p['PolicyVersion']} (objective {p['Objective']})"),
                 ("energy", p["EnergySource"]), ("models", ", ".join(p["Models"]) or "none"),
                 ("targets", ", ".join(usable) or "none usable")]
        if p["PolicyError"]:
            items.append(("policy error", p["PolicyError"]))
        items += [("degraded", reason) for reason in p["Degraded"]]
        emit(p, pairs(items), args.json)
        return 0


class Models(DaemonCommand):
    name, help = "models", "the models served, their inputs and profiled latency per target"

    def talk(self, client, args) -> int:
        (models,) = client.call("ListModels")
        (profiles,) = client.call("GetProfiles")
        by_model: dict[str, list] = {}
        for row in profiles:
            by_model.setdefault(row[0], []).append(dict(zip(PROFILE_FIELDS, row)))
        data = [{"name": n, "sha256": h, "input_shape": list(s), "input_dtype": d, "remote_name": r,
                 "profiles": by_model.get(n, [])} for n, h, s, d, r in models]
        rows = [(m["name"], "x".join(map(str, m["input_shape"])), m["input_dtype"], m["sha256"][:12],
                 ", ".join(f"{p['target']} {p['mean_ms']:.3f} ms" for p in m["profiles"]) or "not profiled")
                for m in data]
        emit(data, table(("MODEL", "INPUT", "DTYPE", "SHA256", "PROFILED (mean)"), rows), args.json)
        return 0


class Targets(DaemonCommand):
    name, help = "targets", "local targets and offload endpoints, with availability"

    def talk(self, client, args) -> int:
        targets = client.get("Targets")
        data = [{"name": n, "kind": k, "available": a, "reason": r} for n, k, a, r in targets]
        emit(data, table(("TARGET", "KIND", "AVAILABLE", "REASON"), targets), args.json)
        return 0


class Profile(DaemonCommand):
    """`profile [MODEL]` measures; `profile import FILE` imports energy measured elsewhere. The word `import`
    in MODEL's place always means the import: a model literally named import is profiled with --model."""

    name, help = "profile", ("re-profile models on local targets now (all unless named) and print the results, "
                             "or import an energy profile: profile import FILE")

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("model", nargs="?", default="", metavar="MODEL | import",
                            help="one model (default: every model); or `import FILE`")
        parser.add_argument("file", nargs="?", type=Path, metavar="FILE",
                            help="after import: an energy profile (JSON from edgeoffload-host energy --profile)")
        parser.add_argument("--model", dest="model_option", metavar="MODEL",
                            help="one model, as an option (how to name a model called 'import')")
        parser.add_argument("--target", default="", help="one local target (default: every available one)")
        parser.add_argument("--show", action="store_true", help="print the profiles in use; measure nothing")
        parser.set_defaults(timeout=600.0)

    def run(self, args) -> int:
        args.energy_profile = None
        if args.model == IMPORT and args.model_option is None:
            if args.file is None:
                raise RequestError("profile import needs a FILE (an energy profile from edgeoffload-host energy "
                                   "--profile); to profile a model named 'import': profile --model import")
            if args.target or args.show:
                raise RequestError("profile import FILE takes no --target or --show (the file names the targets)")
            args.energy_profile = read_text_file(args.file, ENERGY_PROFILE_MAX_BYTES, "energy profile")
        elif args.file is not None:
            raise RequestError(f"profile takes one MODEL, got {args.model!r} and {str(args.file)!r}; to import "
                               "an energy profile: profile import FILE")
        elif args.model_option is not None:
            if args.model:
                raise RequestError(f"name the model once: MODEL {args.model!r} or --model "
                                   f"{args.model_option!r}, not both")
            args.model = args.model_option
        return super().run(args)

    def talk(self, client, args) -> int:
        if args.energy_profile is not None:
            return self._import(client, args)
        if args.show:
            (rows,) = client.call("GetProfiles")
        else:
            (rows,) = client.call("Profile", "(ss)", (args.model, args.target), timeout_s=args.timeout)
        data = [dict(zip(PROFILE_FIELDS, r)) for r in rows]
        shown = [r[:8] + (r[8],) for r in rows]
        emit(data, table(("MODEL", "TARGET", "MEAN_MS", "P50_MS", "P99_MS", "STDEV_MS", "ENERGY_MJ", "FIRST_MS",
                          "RUNS"), shown), args.json)
        return 0

    @staticmethod
    def _import(client, args) -> int:
        (reply,) = client.call("ImportEnergyProfile", "(s)", (args.energy_profile,), timeout_s=args.timeout)
        entries = json.loads(reply)
        lines = [f"imported {e['model']} on {e['target']}: {e['energy_mj_mean']:.3f} mJ/inference "
                 f"({e['power_w']:.3f} W over {e['latency_ms_mean']:.3f} ms), source {e['source']} "
                 f"({e['recording']})" for e in entries]
        emit({"file": str(args.file), "entries": entries}, "\n".join(lines), args.json)
        return 0


def read_text_file(path: Path, max_bytes: int, what: str) -> str:
    """The UTF-8 text of a file the user named, at most `max_bytes`; RequestError naming the file otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise RequestError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise RequestError(f"{path}: more than {max_bytes} bytes, too large for an {what}: is it the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"{path}: not UTF-8 text (byte {exc.start}): an {what} is JSON") from None
    if "\0" in text:  # D-Bus strings cannot carry it
        raise RequestError(f"{path}: a NUL character at offset {text.index(chr(0))}: an {what} is JSON text")
    return text


class Sensors(DaemonCommand):
    name, help = "sensors", "power rails with their latest readings, the energy source, temperatures, CPU clocks"

    def talk(self, client, args) -> int:
        (reply,) = client.call("GetSensors")
        data = json.loads(reply)
        emit(data, sensors_text(data), args.json)
        return 0


class Decide(DaemonCommand):
    name, help = "decide", "where a request for MODEL would run now, and the predicted cost of every option"

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("model")

    def talk(self, client, args) -> int:
        target, reason, options = client.call("Decide", "(s)", (args.model,))
        data = {"model": args.model, "target": target or None, "reason": reason,
                "options": [dict(zip(("target", "kind", "latency_ms", "energy_mj", "meets_deadline"), o))
                            for o in options]}
        text = (f"{args.model} -> {target or 'nowhere'}: {reason}\n"
                + table(("TARGET", "KIND", "LATENCY_MS", "ENERGY_MJ", "MEETS_DEADLINE"), options))
        emit(data, text, args.json)
        return 0


class Infer(DaemonCommand):
    name, help = "infer", "run MODEL on FILE (an image: PNG/PPM/PGM, or a .npy array) where the daemon decides"

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("model")
        parser.add_argument("file", type=Path)
        parser.add_argument("--top", type=int, default=5, help="how many top classes to print (default 5)")
        parser.add_argument("--output", type=Path, help="also save the output tensor to this .npy file")

    def talk(self, client, args) -> int:
        from .engine.images import load_tensor
        from .errors import RequestError, UnknownModelError

        (models,) = client.call("ListModels")
        spec = next((m for m in models if m[0] == args.model), None)
        if spec is None:
            known = ", ".join(m[0] for m in models) or "none"
            raise UnknownModelError(f"unknown model {args.model!r}; the daemon serves: {known}")
        if not args.file.is_file():
            raise RequestError(f"{args.file}: no such file")
        if args.output and not args.output.parent.is_dir():  # before the request, so no result is thrown away
            raise RequestError(f"{args.output}: cannot save the output there: no folder {args.output.parent}")
        x = load_tensor(args.file, tuple(spec[2]), np.dtype(spec[3]))
        reply = client.infer(args.model, x, timeout_s=args.timeout)
        flat = reply.output.reshape(-1)
        top = [(int(i), float(flat[i])) for i in np.argsort(-flat, kind="stable")[:max(args.top, 0)]]
        if args.output:
            try:
                with open(args.output, "wb") as f:  # this very name: np.save(path) would append .npy
                    np.save(f, reply.output)
            except OSError as exc:
                raise RequestError(f"{args.output}: cannot save the output: {exc.strerror}") from None
        data = {"model": args.model, "file": str(args.file), "target": reply.target, "latency_ms": reply.latency_ms,
                "energy_mj": reply.energy_mj, "energy_source": reply.energy_source,
                "output_shape": list(reply.output.shape), "output_dtype": reply.output.dtype.name,
                "top": [{"index": i, "value": v} for i, v in top]}
        text = (f"{args.model} ran on {reply.target}: {reply.latency_ms:.3f} ms, {reply.energy_mj:.3f} mJ "
                f"({reply.energy_source})\n" + table(("CLASS", "SCORE"), top))
        emit(data, text, args.json)
        return 0


class PolicyCmd(DaemonCommand):
    name, help = "policy", "show the policy in force, set a new one from FILE, or check FILE"

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("action", choices=("show", "set", "check"))
        parser.add_argument("file", nargs="?", type=Path, help="the policy YAML (set, check)")

    def run(self, args) -> int:
        from .config import load_policy
        from .errors import RequestError

        if args.action != "show" and args.file is None:
            raise RequestError(f"policy {args.action} needs a FILE")
        if args.action == "check":  # no daemon needed: the same validation the daemon runs
            policy = load_policy(args.file)
            emit({"file": str(args.file), "digest": policy.digest, "objective": policy.objective.value},
                 f"{args.file}: ok (digest {policy.digest}, objective {policy.objective.value})", args.json)
            return 0
        if args.action == "set":
            load_policy(args.file)  # problems named after FILE, before anything is sent
        return super().run(args)

    def talk(self, client, args) -> int:
        if args.action == "show":
            (text,) = client.call("GetPolicy")
            p = client.properties()
            emit({"digest": p["PolicyVersion"], "objective": p["Objective"], "error": p["PolicyError"] or None,
                  "text": text}, text.rstrip("\n"), args.json)
            return 0
        (digest,) = client.call("SetPolicy", "(s)", (args.file.read_text(encoding="utf-8"),))
        emit({"file": str(args.file), "digest": digest}, f"policy from {args.file} applied (digest {digest})",
             args.json)
        return 0


class Reload(DaemonCommand):
    name, help = "reload", "re-read the policy file and check the daemon config (lists what needs a restart)"

    def talk(self, client, args) -> int:
        digest, restart = client.call("ReloadConfig")
        note = f"; restart to apply changes in: {', '.join(restart)}" if restart else ""
        emit({"policy_digest": digest, "restart_needed": restart}, f"policy {digest} in force{note}", args.json)
        return 0


class Watch(DaemonCommand):
    name, help = "watch", "print the daemon's signals as they come (Ctrl-C to stop)"

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--count", type=int, default=0, help="stop after this many signals")
        parser.add_argument("--for", dest="duration", type=float, default=0.0, metavar="S",
                            help="stop after this many seconds")

    def talk(self, client, args) -> int:
        from gi.repository import GLib

        client.properties()  # fails now, with a clear message, if the daemon is not there
        loop, seen = GLib.MainLoop(), [0]

        def on_signal(_interface: str, name: str, values: tuple) -> None:
            if name == "PropertiesChanged":
                fields = dict(values[1])
            else:
                fields = dict(zip(SIGNAL_ARGS.get(name, ()), values))
            print(signal_line(name, fields, args.json))
            flush()
            seen[0] += 1
            if args.count and seen[0] >= args.count:
                loop.quit()

        def on_closed(_connection, _vanished: bool, error) -> None:
            lost.append(error.message if error else "the connection was closed")
            loop.quit()

        lost: list[str] = []
        client.connection.connect("closed", on_closed)
        client.subscribe(on_signal)
        if args.duration:
            GLib.timeout_add(int(args.duration * 1000), loop.quit)
        try:
            loop.run()
        except KeyboardInterrupt:
            pass
        if lost:
            from .errors import ServiceError

            raise ServiceError(f"lost the {args.bus} bus while watching: {lost[0]}")
        return 0


COMMANDS = (Status, Models, Targets, Sensors, Profile, Decide, Infer, PolicyCmd, Reload, Watch)
