"""Every fixture under tests/fixtures/config: valid files pass, invalid ones give exactly their .expected lines."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from edgeoffload.config import check_files

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "config"
VALID = sorted((FIXTURES / "valid").glob("*.yaml"))
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))


def run_check(name: str) -> tuple[int, list[str], list[str]]:
    out, err = io.StringIO(), io.StringIO()
    status = check_files([name], out=out, err=err)
    return status, out.getvalue().splitlines(), err.getvalue().splitlines()


def test_fixture_sets_are_there():
    assert len(VALID) >= 4 and len(INVALID) >= 20
    for path in INVALID:
        assert path.with_suffix(".expected").is_file(), f"{path.name} has no .expected file"


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_fixture_passes(path, monkeypatch):
    monkeypatch.chdir(path.parent)
    status, out, err = run_check(path.name)
    assert (status, err) == (0, [])
    assert out in ([f"{path.name}: ok (daemon config)"], [f"{path.name}: ok (policy)"])


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_fixture_gives_expected_problems(path, monkeypatch):
    monkeypatch.chdir(path.parent)
    status, out, err = run_check(path.name)
    expected = path.with_suffix(".expected").read_text().splitlines()
    assert expected, f"{path.name}.expected is empty"
    assert (status, out) == (2, [])
    assert err == expected
