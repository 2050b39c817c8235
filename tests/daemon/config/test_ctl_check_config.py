"""`edgeoffloadctl check-config`: in-process through ctl_main, and as the installed console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgeoffload import cli
from edgeoffload.errors import ModelError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "config"
GOOD_CONFIG = FIXTURES / "valid" / "minimal-daemon.yaml"
GOOD_POLICY = FIXTURES / "valid" / "minimal-policy.yaml"
BAD = FIXTURES / "invalid" / "unknown-keys.yaml"


def test_good_files_exit_0(capsys):
    assert cli.ctl_main(["check-config", str(GOOD_CONFIG), str(GOOD_POLICY)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{GOOD_CONFIG}: ok (daemon config)", f"{GOOD_POLICY}: ok (policy)"]
    assert err == ""


def test_a_bad_file_exits_2_and_the_good_ones_are_still_checked(capsys):
    assert cli.ctl_main(["check-config", str(BAD), str(GOOD_POLICY)]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{GOOD_POLICY}: ok (policy)"]
    assert err.splitlines() == [f"{BAD}:{line}" for line in [
        "7: models[0].sha265: unknown key; did you mean 'sha256'?",
        "9: mqtt.prot: unknown key; did you mean 'port'?",
        "11: logging.colour: unknown key; valid keys here: level, decisions_file",
    ]]


def test_missing_and_unreadable_files_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert cli.ctl_main(["check-config", str(missing), str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{missing}:1: (file): cannot read the file: No such file or directory",
        f"{tmp_path}:1: (file): cannot read the file: Is a directory",
    ]


def test_usage_errors_exit_2_and_help_exits_0(capsys):
    assert cli.ctl_main([]) == 2
    assert cli.ctl_main(["check-config"]) == 2
    assert cli.ctl_main(["no-such-command"]) == 2
    assert cli.ctl_main(["--help"]) == 0
    assert "check-config" in capsys.readouterr().out


def test_subcommands_come_from_one_table():
    assert [c.name for c in cli.CTL_COMMANDS] == ["check-config", "status", "models", "targets", "sensors",
                                                  "profile", "decide", "infer", "policy", "reload", "watch"]


def test_errors_are_mapped_once(capsys):
    def user_error() -> int:
        raise ModelError("model m.tflite: sha256 mismatch;\nrebuild it")

    def bug() -> int:
        raise ZeroDivisionError("division by zero")

    assert cli.run_mapped("edgeoffloadctl", user_error) == 2
    assert cli.run_mapped("edgeoffloadctl", bug) == 1
    assert capsys.readouterr().err.splitlines() == [
        "edgeoffloadctl: error: model m.tflite: sha256 mismatch; rebuild it",
        "edgeoffloadctl: internal error (a bug, please report it): ZeroDivisionError: division by zero",
    ]


def test_daemon_with_a_missing_or_bad_config_exits_2_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert cli.daemon_main(["--config", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"edgeoffloadd: {missing}:1: (file): cannot read the file: No such file or directory")
    assert cli.daemon_main(["--config", str(BAD)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err and all(line.startswith(f"edgeoffloadd: {BAD}:") for line in err)
    assert cli.daemon_main(["--requests", "-1"]) == 2


@pytest.mark.parametrize("files, status", [([GOOD_CONFIG, GOOD_POLICY], 0), ([GOOD_CONFIG, BAD], 2)])
def test_installed_console_script(files, status):
    script = Path(sys.executable).parent / "edgeoffloadctl"
    if not script.exists():
        pytest.skip(f"{script} is not installed (pip install -e daemon)")
    proc = subprocess.run([str(script), "check-config", *map(str, files)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == status, proc.stderr
    assert f"{GOOD_CONFIG}: ok (daemon config)" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert (proc.stderr == "") == (status == 0)
