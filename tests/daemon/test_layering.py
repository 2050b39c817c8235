"""The walls of STYLE.md: the decision core is pure, the board package never imports TensorFlow or the host."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "daemon" / "src" / "edgeoffload"
PURE_FORBIDDEN = ("socket", "http", "urllib", "requests", "subprocess", "threading", "paho", "gi", "pydbus",
                  "tflite_runtime", "ai_edge_litert", "tensorflow", "joulescope", "pyjls", "os", "pathlib",
                  "io", "time", "edgeoffload.backends", "edgeoffload.sensors", "edgeoffload.api",
                  "edgeoffload.service", "edgeoffload.config")
BOARD_FORBIDDEN = ("tensorflow", "tf_keras", "keras", "edgeoffload_host", "matplotlib", "amqtt")


def imported_modules(path: Path) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            mods.add(node.module)
    return mods


def _hits(mods, forbidden):
    return sorted(m for m in mods if any(m == f or m.startswith(f + ".") for f in forbidden))


@pytest.mark.parametrize("path", sorted((SRC / "decide").glob("*.py")) + sorted((SRC / "profiling").glob("*.py")),
                         ids=lambda p: p.name)
def test_core_is_pure(path):
    assert _hits(imported_modules(path), PURE_FORBIDDEN) == []


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_board_package_imports_no_tensorflow_or_host(path):
    assert _hits(imported_modules(path), BOARD_FORBIDDEN) == []


def test_the_check_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import socket\nfrom tensorflow import lite\n")
    assert _hits(imported_modules(bad), PURE_FORBIDDEN) == ["socket", "tensorflow"]
