"""`edgeoffloadctl` against a Service on a private bus, called in-process with `--bus ADDRESS`: status,
models, targets, decide, infer (.npy, PNG, PPM), profile; exit codes and one-line errors; no daemon at all.
Policy, reload, watch and the installed console script are in test_ctl_dbus_more.py."""

from __future__ import annotations

import hashlib
import json
import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dbus_helpers import ctl, one_error_line  # noqa: E402
from tinymodels import reference_scores, run_directly  # noqa: E402

from edgeoffload.engine.images import load_tensor  # noqa: E402

SHAPE = (1, 16, 16, 3)


def npu_reason(tmp_path: Path) -> str:
    return f"delegate {tmp_path / 'no-such-delegate.so'} not found"


def rows(text: str) -> list[list[str]]:
    """A table's body, each row split on runs of spaces (cells here hold no double spaces)."""
    return [[c.strip() for c in line.split("  ") if c.strip()] for line in text.splitlines()[1:]]


def png_bytes(img: np.ndarray) -> bytes:
    """An 8-bit RGB PNG (filter 0 on every row), as a minimal encoder writes it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    h, w, _ = img.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in img)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_status_table_and_json(dbus_service, dbus_session, dbus_client, tmp_path, capsys):
    dbus_service()
    props = dbus_client.properties()
    status, out, err = ctl(capsys, "status", "--bus", dbus_session)
    assert (status, err) == (0, "")
    shown = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.splitlines() if line[:8] != "degraded")
    assert shown["state"] == "degraded" and shown["device"] == "test-board"
    assert shown["policy"] == f"{props['PolicyVersion']} (objective latency)"
    assert shown["models"] == "tiny_16, tiny_q_16" and shown["targets"] == "cpu1"
    assert shown["energy"] == "modelled"
    (degraded,) = [line for line in out.splitlines() if line.startswith("degraded")]
    assert degraded.split(None, 1)[1] == props["Degraded"][0]
    assert degraded.split(None, 1)[1].startswith(f"target npu: {npu_reason(tmp_path)}")
    status, out, err = ctl(capsys, "status", "--json", "--bus", dbus_session)
    assert (status, err) == (0, "")
    data = json.loads(out)
    assert data == json.loads(json.dumps(props))  # every property, tuples as lists
    assert (data["Status"], data["DeviceId"], data["PolicyVersion"]) == ("degraded", "test-board",
                                                                       props["PolicyVersion"])
    assert data["Targets"][0] == ["cpu1", "local", True, ""] and data["Targets"][1][:3] == ["npu", "local", False]
    assert len(data["Degraded"]) == 1 and npu_reason(tmp_path) in data["Degraded"][0]


def test_status_on_the_bus_named_by_the_environment(dbus_service, dbus_session, monkeypatch, capsys):
    dbus_service()
    monkeypatch.setenv("EDGEOFFLOAD_BUS", "session")  # DBUS_SESSION_BUS_ADDRESS is the private bus
    status, out, err = ctl(capsys, "status")
    assert (status, err) == (0, "") and out.startswith("state")
    monkeypatch.setenv("EDGEOFFLOAD_BUS", dbus_session)
    status, out, err = ctl(capsys, "status", "--json")
    assert (status, err, json.loads(out)["DeviceId"]) == (0, "", "test-board")


def test_models_table_and_json(dbus_service, dbus_session, dbus_client, tmp_path, capsys):
    dbus_service()
    profiles = {p[0]: p for p in dbus_client.call("GetProfiles")}
    sha = {m: hashlib.sha256((tmp_path / "models" / f"{m}.tflite").read_bytes()).hexdigest()
           for m in ("tiny_16", "tiny_q_16")}
    status, out, err = ctl(capsys, "models", "--bus", dbus_session)
    assert (status, err) == (0, "")
    assert out.splitlines()[0].split("  ")[0] == "MODEL" and "PROFILED (mean)" in out.splitlines()[0]
    assert rows(out) == [[m, "1x16x16x3", "uint8", sha[m][:12], f"cpu1 {profiles[m][2]:.3f} ms"]
                         for m in ("tiny_16", "tiny_q_16")]
    status, out, err = ctl(capsys, "models", "--json", "--bus", dbus_session)
    assert (status, err) == (0, "")
    data = json.loads(out)
    assert [m["name"] for m in data] == ["tiny_16", "tiny_q_16"]
    for m in data:
        assert (m["sha256"], m["input_shape"], m["input_dtype"], m["remote_name"]) == (
            sha[m["name"]], list(SHAPE), "uint8", "tiny_16")
        (p,) = m["profiles"]
        assert (p["model"], p["target"], p["runs"], p["mean_ms"]) == (m["name"], "cpu1", 10, profiles[m["name"]][2])
        assert p["p50_ms"] <= p["p99_ms"] and p["energy_mj"] > 0 and p["measured_utc"].endswith("Z")


def test_targets_table_and_json(dbus_service, dbus_session, tmp_path, capsys):
    dbus_service()
    status, out, err = ctl(capsys, "targets", "--bus", dbus_session)
    assert (status, err) == (0, "")
    assert out.splitlines()[0].split() == ["TARGET", "KIND", "AVAILABLE", "REASON"]
    cpu, npu = rows(out)
    assert cpu == ["cpu1", "local", "yes"] and npu[:3] == ["npu", "local", "no"]
    assert npu[3].startswith(npu_reason(tmp_path))
    status, out, err = ctl(capsys, "targets", "--json", "--bus", dbus_session)
    assert (status, err) == (0, "")
    cpu, npu = json.loads(out)
    assert cpu == {"name": "cpu1", "kind": "local", "available": True, "reason": ""}
    assert (npu["name"], npu["available"]) == ("npu", False) and npu["reason"].startswith(npu_reason(tmp_path))


def test_decide_table_json_and_unknown_model(dbus_service, dbus_session, dbus_client, capsys):
    dbus_service()
    _, reason, _ = dbus_client.call("Decide", "tiny_16")
    status, out, err = ctl(capsys, "decide", "tiny_16", "--bus", dbus_session)
    assert (status, err) == (0, "")
    first, header, *option_rows = out.splitlines()
    assert first == f"tiny_16 -> cpu1: {reason}" and reason.startswith("cpu1: lowest latency")
    assert header.split() == ["TARGET", "KIND", "LATENCY_MS", "ENERGY_MJ", "MEETS_DEADLINE"]
    (option,) = [line.split() for line in option_rows]
    assert option[:2] == ["cpu1", "local"] and option[4] == "yes" and float(option[2]) >= 0
    status, out, err = ctl(capsys, "decide", "tiny_q_16", "--json", "--bus", dbus_session)
    assert (status, err) == (0, "")
    data = json.loads(out)
    assert (data["model"], data["target"]) == ("tiny_q_16", "cpu1") and data["reason"].startswith("cpu1:")
    (o,) = data["options"]
    assert (o["target"], o["kind"], o["meets_deadline"]) == ("cpu1", "local", True)
    assert o["latency_ms"] > 0 and o["energy_mj"] > 0
    status, out, err = ctl(capsys, "decide", "nope", "--bus", dbus_session)
    assert (status, out) == (2, "")
    one_error_line(err, "edgeoffloadctl: error: UnknownModel: unknown model 'nope'",
                   "this daemon serves: tiny_16, tiny_q_16")


def top_table(out: str) -> list[tuple[int, float]]:
    """The CLASS/SCORE rows under infer's first line."""
    assert out.splitlines()[1].split() == ["CLASS", "SCORE"], out
    return [(int(c), float(s)) for c, s in (line.split() for line in out.splitlines()[2:])]


def test_infer_npy_like_a_direct_tflite_run(dbus_service, dbus_session, tiny_models, tmp_path, capsys):
    dbus_service()
    x = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    ref = run_directly(tiny_models["float"], x[None])[0]
    status, out, err = ctl(capsys, "infer", "tiny_16", str(tmp_path / "x.npy"), "--output",
                           str(tmp_path / "y.npy"), "--bus", dbus_session)
    assert (status, err) == (0, "")
    assert out.startswith("tiny_16 ran on cpu1: ") and out.splitlines()[0].endswith(" mJ (modelled)")
    top = top_table(out)
    assert [c for c, _ in top] == list(np.argsort(-ref, kind="stable")[:5])
    assert [s for _, s in top] == pytest.approx([ref[c] for c, _ in top], abs=6e-4)  # printed with 3 decimals
    saved = np.load(tmp_path / "y.npy")
    assert saved.shape == (1, 10) and saved.dtype == np.float32
    np.testing.assert_allclose(saved[0], ref, rtol=1e-6, atol=1e-7)
    status, out, err = ctl(capsys, "infer", "tiny_q_16", str(tmp_path / "x.npy"), "--json", "--top", "3",
                           "--bus", dbus_session)
    assert (status, err) == (0, "")
    data = json.loads(out)
    ref_q = reference_scores(tiny_models["q"], x[None])[0]
    assert (data["target"], data["energy_source"], data["output_dtype"]) == ("cpu1", "modelled", "float32")
    assert data["latency_ms"] > 0 and data["energy_mj"] > 0 and data["output_shape"] == [1, 10]
    assert [t["index"] for t in data["top"]] == list(np.argsort(-ref_q, kind="stable")[:3])
    assert [t["value"] for t in data["top"]] == pytest.approx([ref_q[t["index"]] for t in data["top"]], rel=1e-6)


def test_infer_png_and_ppm_images(dbus_service, dbus_session, tiny_models, tmp_path, capsys):
    dbus_service()
    rng = np.random.default_rng(5)
    exact = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)  # the model's size: no resize
    (tmp_path / "exact.png").write_bytes(png_bytes(exact))
    big = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)  # resized to 16x16 by the client
    (tmp_path / "big.ppm").write_bytes(b"P6\n40 24\n255\n" + big.tobytes())
    (tmp_path / "big.png").write_bytes(png_bytes(big))
    cases = [("exact.png", exact[None]), ("big.ppm", load_tensor(tmp_path / "big.ppm", SHAPE, np.dtype("uint8"))),
             ("big.png", load_tensor(tmp_path / "big.png", SHAPE, np.dtype("uint8")))]
    np.testing.assert_array_equal(cases[1][1], cases[2][1])  # one picture, two formats
    for name, x in cases:
        ref = run_directly(tiny_models["float"], x)[0]
        status, out, err = ctl(capsys, "infer", "tiny_16", str(tmp_path / name), "--json", "--bus", dbus_session)
        assert (status, err) == (0, ""), name
        top = json.loads(out)["top"]
        assert top[0]["index"] == int(np.argmax(ref)), name
        assert [t["value"] for t in top] == pytest.approx([ref[t["index"]] for t in top], rel=1e-6, abs=1e-7)
        status, out, err = ctl(capsys, "infer", "tiny_16", str(tmp_path / name), "--top", "1", "--bus", dbus_session)
        assert (status, err) == (0, "") and top_table(out)[0][0] == int(np.argmax(ref)), name


def test_infer_refusals_exit_2_in_one_line(dbus_service, dbus_session, tmp_path, capsys):
    dbus_service()
    np.save(tmp_path / "x.npy", np.zeros((16, 16, 3), np.uint8))
    np.save(tmp_path / "small.npy", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "bad.png").write_bytes(png_bytes(np.zeros((4, 4, 3), np.uint8)).replace(
        zlib.compress(bytes(4 * 13)), b"not zlib", 1))
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    cases = [
        (["nope", tmp_path / "x.npy"], ["unknown model 'nope'; the daemon serves: tiny_16, tiny_q_16"]),
        (["tiny_16", tmp_path / "none.npy"], [f"error: {tmp_path / 'none.npy'}: no such file"]),
        (["tiny_16", tmp_path / "small.npy"],
         [f"{tmp_path / 'small.npy'}: array of shape [8, 8, 3] does not fit input [1, 16, 16, 3]"]),
        (["tiny_16", tmp_path / "bad.png"], [f"{tmp_path / 'bad.png'}: corrupt PNG data ("]),
        (["tiny_16", tmp_path / "x.gif"], [f"{tmp_path / 'x.gif'}: unsupported input type (use .npy, .png"]),
    ]
    for args, fragments in cases:
        status, out, err = ctl(capsys, "infer", *map(str, args), "--bus", dbus_session)
        assert (status, out) == (2, ""), (args, err)
        one_error_line(err, "edgeoffloadctl: error: ", *fragments)


def test_profile_one_pair_show_and_refusals(dbus_service, dbus_session, tmp_path, capsys):
    dbus_service(profiling={"warmup_runs": 1, "runs": 7})
    status, out, err = ctl(capsys, "profile", "tiny_16", "--target", "cpu1", "--bus", dbus_session)
    assert (status, err) == (0, "")
    assert out.splitlines()[0].split() == ["MODEL", "TARGET", "MEAN_MS", "P50_MS", "P99_MS", "STDEV_MS",
                                           "ENERGY_MJ", "FIRST_MS", "RUNS"]
    (row,) = rows(out)
    assert row[:2] == ["tiny_16", "cpu1"] and row[8] == "7" and all(float(v) >= 0 for v in row[2:8])
    status, out, err = ctl(capsys, "profile", "--show", "--json", "--bus", dbus_session)
    assert (status, err) == (0, "")
    shown = json.loads(out)
    assert [(p["model"], p["target"], p["runs"]) for p in shown] == [("tiny_16", "cpu1", 7), ("tiny_q_16", "cpu1", 7)]
    status, out, err = ctl(capsys, "profile", "--show", "--bus", dbus_session)
    assert [r[:2] + r[8:] for r in rows(out)] == [["tiny_16", "cpu1", "7"], ["tiny_q_16", "cpu1", "7"]]
    assert rows(out)[0][2] == f"{shown[0]['mean_ms']:.3f}"  # the profile just measured is the one in use
    status, out, err = ctl(capsys, "profile", "--target", "npu", "--bus", dbus_session)
    assert (status, out) == (1, "")  # the daemon's side failed, not the request
    one_error_line(err, "edgeoffloadctl: error: BackendUnavailable: target npu is unavailable: "
                   f"{npu_reason(tmp_path)}")
    status, out, err = ctl(capsys, "profile", "--target", "nosuch", "--bus", dbus_session)
    assert (status, out) == (2, "")
    one_error_line(err, "InvalidArgument: no local target named 'nosuch' (local targets: cpu1, npu)")
    status, out, err = ctl(capsys, "profile", "nope", "--bus", dbus_session)
    assert (status, out) == (2, "")
    one_error_line(err, "UnknownModel: unknown model 'nope'")


def test_no_daemon_on_the_bus_and_no_bus_exit_1(dbus_session, tmp_path, capsys):
    for command in (["status"], ["models", "--json"], ["decide", "tiny_16"], ["watch", "--for", "1"]):
        status, out, err = ctl(capsys, *command, "--bus", dbus_session)
        assert (status, out) == (1, ""), command
        one_error_line(err, f"edgeoffloadctl: error: edgeoffloadd is not running on the {dbus_session} bus "
                       "(nobody owns org.edgeoffload.Daemon1)")
    missing = f"unix:path={tmp_path / 'no-such-bus'}"
    status, out, err = ctl(capsys, "status", "--bus", missing)
    assert (status, out) == (1, "")
    one_error_line(err, f"edgeoffloadctl: error: cannot connect to the {missing} bus: ", "No such file")
    status, out, err = ctl(capsys, "status", "--bus", "nonsense-address")
    assert (status, out) == (1, "")
    one_error_line(err, "edgeoffloadctl: error: cannot connect to the nonsense-address bus: ")


@pytest.mark.parametrize("argv, message", [
    (["decide"], "edgeoffloadctl decide: error: the following arguments are required: model"),
    (["infer", "tiny_16"], "edgeoffloadctl infer: error: the following arguments are required: file"),
    (["policy", "drop"], "edgeoffloadctl policy: error: argument action: invalid choice: 'drop'"),
    (["status", "--timeout", "soon"], "edgeoffloadctl status: error: argument --timeout: invalid float value"),
    (["watch", "--count", "many"], "edgeoffloadctl watch: error: argument --count: invalid int value"),
])
def test_usage_errors_exit_2(argv, message, capsys):
    status, out, err = ctl(capsys, *argv, "--bus", "unix:path=/nonexistent")
    assert (status, out) == (2, "")
    # argparse prints the usage line before its one-line error (see the report: README says errors are one line)
    assert err.splitlines()[-1].startswith(message), err


INFER_FILE_PROBLEMS = [  # (file name, its bytes or array, extra options, message fragments)
    ("junk.npy", b"not an array", [], ["junk.npy: "]),
    ("float.npy", np.full((16, 16, 3), 300.7, np.float32), [], ["float.npy: ", "float32", "uint8"]),
    ("x.npy", np.zeros((16, 16, 3), np.uint8), ["--output", "no-such-folder/y.npy"], ["no-such-folder/y.npy"]),
]


@pytest.mark.parametrize("name, content, options, fragments", INFER_FILE_PROBLEMS, ids=["junk", "float", "output"])
def test_infer_file_problems_are_the_callers_to_fix(dbus_service, dbus_session, tmp_path, capsys, monkeypatch,
                                                     name, content, options, fragments):
    dbus_service()
    monkeypatch.chdir(tmp_path)
    if isinstance(content, bytes):
        Path(name).write_bytes(content)
    else:
        np.save(name, content)
    status, out, err = ctl(capsys, "infer", "tiny_16", name, *options, "--bus", dbus_session)
    assert (status, out) == (2, ""), err
    one_error_line(err, "edgeoffloadctl: error: ", *fragments)
