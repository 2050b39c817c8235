"""python3-edgeoffload-ptest as the board runs it: the recipe's own do_install_ptest builds the ptest folder
against a staged root file system (the unit, the bus policy and the package at their board paths), then the
tests run there with only what the board has: modules the image lacks (TensorFlow, matplotlib, the host tools)
cannot be imported and PATH holds only the tools the ptest package depends on."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "meta-edgeoffload" / "recipes-edgeoffload" / "edgeoffload"
PTEST_INC = RECIPES / "python3-edgeoffload-ptest.inc"
RUN_PTEST = RECIPES / "files" / "run-ptest"
# Not in the image: importing any of these in a board-safe test fails it. (The daemon's own imports are checked
# against its RDEPENDS by test_layer_ties.py.)
ABSENT_MODULES = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "matplotlib", "PIL",
                  "sklearn", "scipy", "edgeoffload_host", "amqtt", "joulescope", "pyjls")
# The commands ptest's RDEPENDS bring (dbus, openssl-bin) and a shell; nothing else from the build host.
BOARD_TOOLS = ("sh", "dbus-daemon", "openssl")

# sitecustomize on PYTHONPATH: applies to the test process and to every Python it starts (tests build
# models in subprocesses, for instance).
BLOCKER = f"""
import importlib.abc, sys
class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not on the board)", name=name)
        return None
sys.meta_path.insert(0, _Absent())
"""


def install_ptest_body() -> str:
    text = PTEST_INC.read_text()
    match = re.search(r"^do_install_ptest\(\) \{\n(.*?)^\}", text, re.S | re.M)
    assert match, f"{PTEST_INC}: no do_install_ptest() shell function"
    return match.group(1)


@pytest.fixture(scope="module")
def ptest_dir(tmp_path_factory) -> Path:
    """${D} after do_install and do_install_ptest, with the package's files at their board paths."""
    d = tmp_path_factory.mktemp("image")
    board = {"systemd_system_unitdir": "/usr/lib/systemd/system", "datadir": "/usr/share",
             "PYTHON_SITEPACKAGES_DIR": "/usr/lib/python3.14/site-packages",
             "PTEST_PATH": "/usr/lib/python3-edgeoffload/ptest"}
    staged = {k: str(d) + v for k, v in board.items()}  # the links must resolve here, so they point into ${D}
    (d / board["systemd_system_unitdir"].lstrip("/")).mkdir(parents=True)
    shutil.copy(ROOT / "daemon/systemd/edgeoffloadd.service", staged["systemd_system_unitdir"])
    (d / "usr/share/dbus-1/system.d").mkdir(parents=True)
    shutil.copy(ROOT / "daemon/dbus/org.edgeoffload.Daemon1.conf", d / "usr/share/dbus-1/system.d")
    Path(staged["PYTHON_SITEPACKAGES_DIR"]).mkdir(parents=True)
    shutil.copytree(ROOT / "daemon/src/edgeoffload", Path(staged["PYTHON_SITEPACKAGES_DIR"]) / "edgeoffload",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PATH": os.environ["PATH"], "D": "", "EDGEOFFLOAD_TOP": str(ROOT), **staged}
    env["PTEST_PATH"] = staged["PTEST_PATH"]
    subprocess.run(["sh", "-e", "-c", install_ptest_body()], env=env, check=True)
    return Path(staged["PTEST_PATH"])


def test_the_ptest_folder_holds_the_board_safe_tests_and_links_to_installed_files(ptest_dir):
    assert (ptest_dir / "pytest.ini").is_file() and (ptest_dir / "tests/daemon").is_dir()
    assert not (ptest_dir / "tests/integration").exists() and not (ptest_dir / "tests/host_tools").exists()
    for link in ("daemon/systemd/edgeoffloadd.service", "daemon/dbus/org.edgeoffload.Daemon1.conf",
                 "daemon/src/edgeoffload"):
        assert (ptest_dir / link).is_symlink() and (ptest_dir / link).exists(), link
    assert not list(ptest_dir.rglob("__pycache__"))


def test_run_ptest_runs_the_daemon_tests_with_automake_output():
    script = RUN_PTEST.read_text()
    assert script.startswith("#!/bin/sh\n") and "exec pytest --automake tests/daemon" in script
    inc = PTEST_INC.read_text()
    for dep in ("python3-pytest", "python3-unittest-automake-output", "dbus", "openssl-bin"):
        assert f"    {dep} \\" in inc


def test_the_board_safe_tests_pass_with_only_what_the_board_has(ptest_dir, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in BOARD_TOOLS:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')  # keeps the venv
    (bin_dir / "python3").chmod(0o755)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": f"{site}:{ptest_dir / 'daemon/src'}"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "tests/daemon"],
                         cwd=ptest_dir, env=env, capture_output=True, text=True, timeout=600)
    tail = "\n".join((run.stdout + run.stderr).splitlines()[-40:])
    assert run.returncode == 0, tail
    passed = re.search(r"(\d+) passed", run.stdout)
    assert passed and int(passed.group(1)) >= 400, tail  # the daemon's unit tests, not an empty selection
