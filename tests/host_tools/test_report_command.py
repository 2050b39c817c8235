"""edgeoffload-host report: CSV, Markdown and PNG plots grouped like the study's figures; never overwrites
silently; one-line errors for results files it cannot use. Also: the demo's latency plot still works."""

from __future__ import annotations

import csv
import json
import re

import pytest
from tiny_manifests import run_host

from edgeoffload_host.evaluate.results import RESULTS_KIND
from edgeoffload_host.report.tables import rows_from_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OUTPUTS = ["evaluation.csv", "evaluation.md", "size.png", "gzip_size.png", "accuracy.png", "latency.png"]


def _stats(mean: float) -> dict:
    return {"n": 50, "mean_ms": mean, "p50_ms": mean, "p99_ms": 1.5 * mean, "stdev_ms": 0.1 * mean,
            "min_ms": 0.9 * mean, "max_ms": 2 * mean}


def _model(arch: str, display: str, label: str, size: int, accuracy: float, ms: float) -> dict:
    letters = "" if label == "float" else label
    return {"name": " ".join(p for p in (display, letters, "32") if p), "file": f"{arch}_{letters.lower()}_32.tflite",
            "path": f"/models/{arch}_32.tflite", "label": label, "letters": letters, "architecture": arch,
            "architecture_name": display, "input_px": 32, "size_bytes": size, "gzip_size_bytes": size // 2,
            "accuracy": accuracy, "float_accuracy": 0.9, "latency_ms": {"1": _stats(ms), "2": _stats(ms / 1.6)}}


@pytest.fixture
def results_file(tmp_path):
    models = [  # out of order on purpose: the report orders groups as first seen, variants as the study does
        _model("mobilenet", "Mobilenet", "PQ", 4_000_000, 0.89, 1.0),
        _model("mobilenet", "Mobilenet", "float", 14_000_000, 0.90, 2.0),
        _model("resnet50", "ResNet50", "Q", 25_000_000, 0.80, 10.0),
        _model("mobilenet", "Mobilenet", "Q", 4_000_000, 0.88, 1.0),
        _model("resnet50", "ResNet50", "float", 98_000_000, 0.82, 30.0),
    ]
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps({"schema": 1, "kind": RESULTS_KIND, "host": {"machine": "x86_64", "cpu_count": 2},
                                "runtime": "ai_edge_litert 2.3.0", "models": models}))
    return path


def test_report_writes_csv_markdown_and_plots(results_file, tmp_path, capsys):
    out = tmp_path / "report"
    assert run_host(["report", str(results_file), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line, name in zip(lines, OUTPUTS, strict=False):
        assert re.fullmatch(rf"wrote {out}/{name} \(\d+\.\d kB, \d+\.\d s\)", line), line
    assert lines[6:] == ["next: edgeoffload-host export-triton /models/ --out triton-models"]
    with open(out / "evaluation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["variant"]) for r in rows] == [
        ("Mobilenet 32", "float"), ("Mobilenet 32", "Q"), ("Mobilenet 32", "PQ"),
        ("ResNet50 32", "float"), ("ResNet50 32", "Q")]
    resnet_q = rows[4]
    assert (resnet_q["size_vs_float"], resnet_q["gzip_vs_float"], resnet_q["accuracy_drop_points"]) == (
        "0.255", "0.255", "2.0")
    assert (resnet_q["mean_ms_1t"], resnet_q["mean_ms_2t"], resnet_q["p99_ms_1t"]) == ("10.000", "6.250", "15.000")
    markdown = (out / "evaluation.md").read_text().splitlines()
    assert markdown[0] == "# Evaluation of 5 models on x86_64, 2 CPUs, ai_edge_litert 2.3.0"
    assert markdown[2].startswith("| model | variant | size MB | × float | gzip MB | × float | accuracy |")
    assert markdown[2].endswith("| mean ms, 1 thread | mean ms, 2 threads |")
    assert markdown[6] == "| Mobilenet 32 | PQ | 4.00 | 0.286 | 2.00 | 0.286 | 0.890 | 1.0 | 1.000 | 0.625 |"
    for name in OUTPUTS[2:]:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name


def test_report_never_overwrites_without_force(results_file, tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "latency.png").write_bytes(b"mine")
    assert run_host(["report", str(results_file), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"edgeoffload-host: error: {out}/latency.png already exists (1 of the report's files do); "
        "pass --force to replace them or --out another folder")
    assert sorted(p.name for p in out.iterdir()) == ["latency.png"]
    assert run_host(["report", str(results_file), "--out", str(out), "--force", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [w["path"] for w in document["written"]] == [str(out / n) for n in OUTPUTS]
    assert (out / "latency.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("content, message", [
    (None, "{path}: no such file; write one with `edgeoffload-host evaluate`"),
    ("{not json", "{path}: not JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
                  "(char 1)); pass the file `edgeoffload-host evaluate` wrote"),
    ('{"schema": 1, "models": []}', '{path}: not an evaluation results file (no "kind": "edgeoffload-evaluation"); '
                                    "pass the file `edgeoffload-host evaluate` wrote"),
    ('{"schema": 1, "kind": "edgeoffload-evaluation", "models": []}', "{path}: models: expected a non-empty list"),
    ('{"schema": 1, "kind": "edgeoffload-evaluation", "models": [{"name": "x"}]}',
     "{path}: models[0].label: missing or not str"),
])
def test_report_bad_results_files_are_one_line_and_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "evaluation.json"
    if content is not None:
        path.write_text(content)
    assert run_host(["report", str(path), "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == "edgeoffload-host: error: " + message.format(path=path)
    assert not (tmp_path / "r").exists()


def test_rows_keep_unknown_variants_after_the_studys(results_file):
    results = json.loads(results_file.read_text())
    results["models"].append({**results["models"][1], "label": "W"})
    results["models"].append({**results["models"][1], "label": "mine"})
    rows = rows_from_results(results)
    assert [r.variant for r in rows if r.group == "Mobilenet 32"] == ["float", "Q", "PQ", "W", "mine"]


def test_the_demos_latency_plot_still_works(tmp_path):
    from edgeoffload_host.report.latency import plot_latency

    out = plot_latency({"m": {"cpu1": 3.0, "offload": 25.0}}, {"m": 31.0}, tmp_path / "l.png", "title")
    assert out.read_bytes().startswith(PNG_MAGIC)
