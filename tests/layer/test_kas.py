"""The kas files: valid for kas's own schema and include loader (offline), every repository pinned by commit,
the board build as the issue states it, and a QEMU build without NXP's layers."""

import argparse
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

kas = pytest.importorskip("kas")
from kas import CONFIGSCHEMA  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KAS_FILES = [ROOT / "kas.yml", *sorted((ROOT / "kas").glob("*.yml"))]
NXP_REPOS = {"meta-imx", "meta-freescale", "meta-freescale-ml", "meta-nxp-demo-experience"}


def resolved(top: Path, tmp_path: Path, monkeypatch) -> dict:
    """The merged config exactly as kas builds it from `top` and its includes; no network is used."""
    from kas import context
    from kas.includehandler import IncludeHandler

    monkeypatch.setenv("KAS_WORK_DIR", str(tmp_path))
    context.create_global_context(argparse.Namespace(no_color=True, update=False, force_checkout=False,
                                                     preserve_env=False))
    config, missing = IncludeHandler([str(top)], use_lock=False).get_config()
    assert missing == []
    return config


@pytest.mark.parametrize("path", KAS_FILES, ids=lambda p: p.name)
def test_every_kas_file_is_valid_for_kas_itself(path):
    data = yaml.safe_load(path.read_text())
    jsonschema.validate(data, CONFIGSCHEMA)
    assert data["header"]["version"] <= kas.__file_version__


@pytest.mark.parametrize("top", ["kas.yml", "kas/qemuarm64.yml"])
def test_every_fetched_repository_is_pinned_by_commit_with_its_branch(top, tmp_path, monkeypatch):
    repos = resolved(ROOT / top, tmp_path, monkeypatch)["repos"]
    fetched = {name: r for name, r in repos.items() if r and r.get("url")}
    assert fetched
    for name, repo in fetched.items():
        assert re.fullmatch(r"[0-9a-f]{40}", repo.get("commit", "")), name
        assert repo.get("branch"), name
    assert repos["edgeoffload"]["layers"] == {"meta-edgeoffload": None}


def test_the_board_build(tmp_path, monkeypatch):
    config = resolved(ROOT / "kas.yml", tmp_path, monkeypatch)
    assert (config["machine"], config["distro"], config["target"]) == (
        "imx8mpevk", "fsl-imx-xwayland", "imx-image-full")
    repos = config["repos"]
    assert NXP_REPOS <= set(repos)
    assert repos["bitbake"]["branch"] == "2.18" and repos["bitbake"]["layers"] == {}
    assert repos["openembedded-core"]["branch"] == repos["meta-imx"]["branch"].split("-")[0] == "wrynose"
    assert repos["meta-imx"]["commit"].startswith("5bde004")
    headers = config["local_conf_header"]
    eula = headers["nxp-eula"]
    assert 'ACCEPT_FSL_EULA = "1"' in eula and "# " in eula and "accepts" in eula
    assert 'IMAGE_INSTALL:append = " packagegroup-edgeoffload"' in headers["edgeoffload-image"]


def test_the_qemu_build_has_no_nxp_layers(tmp_path, monkeypatch):
    config = resolved(ROOT / "kas" / "qemuarm64.yml", tmp_path, monkeypatch)
    assert (config["machine"], config["target"]) == ("qemuarm64", "core-image-minimal")
    assert set(config["repos"]) == {"edgeoffload", "bitbake", "openembedded-core", "meta-openembedded"}
    assert 'INIT_MANAGER = "systemd"' in config["local_conf_header"]["qemu-systemd"]


def test_adding_the_layer_changes_no_other_recipe():
    """The image gets our packagegroup from local.conf, never from a bbappend of someone else's recipe."""
    layer = ROOT / "meta-edgeoffload"
    appends = [p for p in layer.rglob("*.bbappend") if "dynamic-layers" not in p.parts]
    assert appends == []
    for p in layer.rglob("*.bbappend"):
        assert p.name.startswith("packagegroup-edgeoffload"), p


def test_externalsrc_builds_the_checkouts_daemon_and_conf(tmp_path, monkeypatch):
    text = resolved(ROOT / "kas.yml", tmp_path, monkeypatch)["local_conf_header"]["edgeoffload-source"]
    pairs = re.findall(r'^EXTERNALSRC:pn-(\S+) = "\$\{TOPDIR\}/\.\./(\S+)"', text, re.M)
    assert sorted(pairs) == [("edgeoffload-conf", "conf"), ("python3-edgeoffload", "daemon")]
    for recipe, folder in pairs:
        assert list((ROOT / "meta-edgeoffload").rglob(f"{recipe}_*.bb")), recipe
        assert (ROOT / folder).is_dir()
