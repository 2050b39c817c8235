"""oelint-adv (pinned, --release wrynose, the layer's .oelint.cfg) finds nothing in any recipe or bbappend;
the check-layer script skips with one line where there are no Yocto sources."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "meta-edgeoffload"


def test_oelint_adv_is_clean_on_every_recipe():
    tool = Path(sys.executable).with_name("oelint-adv")
    if not tool.exists():
        pytest.skip("oelint-adv is not installed (scripts/setup.sh test installs the pinned one)")
    recipes = sorted(str(p.relative_to(LAYER)) for p in LAYER.rglob("*.bb*") if p.suffix in (".bb", ".bbappend"))
    assert len(recipes) >= 5
    proc = subprocess.run([str(tool), "--release", "wrynose", "--quiet", *recipes], cwd=LAYER,
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout.strip(), proc.stderr.strip()) == (0, "", "")


def test_oelint_adv_would_catch_old_override_syntax(tmp_path):
    tool = Path(sys.executable).with_name("oelint-adv")
    if not tool.exists():
        pytest.skip("oelint-adv is not installed")
    layer = tmp_path / "meta-edgeoffload"
    shutil.copytree(LAYER, layer)
    recipe = layer / "recipes-edgeoffload" / "packagegroups" / "packagegroup-edgeoffload.bb"
    recipe.write_text(recipe.read_text() + '\nRDEPENDS_${PN} += "bash"\n')
    proc = subprocess.run([str(tool), "--release", "wrynose", "--quiet", str(recipe.relative_to(layer))],
                          cwd=layer, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "oelint.vars.mispell:'RDEPENDS_' is unknown" in proc.stderr


def test_check_layer_skips_with_one_line_without_sources():
    env = {k: v for k, v in os.environ.items() if k != "EDGEOFFLOAD_YOCTO_SOURCES"}
    proc = subprocess.run([str(LAYER / "scripts" / "check-layer")], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.startswith("check-layer: skipped: no Yocto sources") and proc.stdout.count("\n") == 1
