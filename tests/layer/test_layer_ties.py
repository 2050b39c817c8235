"""What ties the layer to the code: files the recipes install exist here, RDEPENDS cover every module the
daemon imports (derived from the code), and the config recipe's files pass `edgeoffloadctl check-config`."""

import ast
import json
import os
import re
import sys
from pathlib import Path

import pytest

from edgeoffload.cli import ctl_main

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "meta-edgeoffload"
RECIPES = LAYER / "recipes-edgeoffload"
DAEMON_RECIPE = RECIPES / "edgeoffload" / "python3-edgeoffload_0.1.0.bb"
CONF_RECIPE = RECIPES / "edgeoffload-conf" / "edgeoffload-conf_0.1.0.bb"
# Standard-library module -> its package in oe-core's python3-manifest.json at the pinned commit
# 42fa856a00ac16b2a7a83d7ecfa60a5be192b16c (checked against the real file by test_table_matches_oe_core when
# EDGEOFFLOAD_YOCTO_SOURCES names a folder with openembedded-core).
STDLIB_PACKAGES = {
    "__future__": "core", "argparse": "core", "bisect": "core", "collections": "core", "concurrent": "asyncio",
    "contextlib": "core", "ctypes": "ctypes", "dataclasses": "core", "datetime": "datetime", "difflib": "difflib",
    "enum": "core", "errno": "core", "faulthandler": "core", "fcntl": "core", "functools": "core",
    "hashlib": "crypt", "http": "netclient", "importlib": "core", "io": "core", "itertools": "core",
    "json": "json", "logging": "logging", "math": "core", "numbers": "numbers", "os": "core", "pathlib": "core",
    "platform": "core", "queue": "threading", "re": "core", "selectors": "core", "signal": "core", "site": "core",
    "socket": "io", "ssl": "io", "statistics": "statistics", "struct": "core", "subprocess": "core", "sys": "core",
    "tempfile": "io", "threading": "core", "time": "core", "types": "core", "typing": "core",
    "urllib": "netclient", "uuid": "netclient", "zlib": "core",
}
BUILTIN = {"errno", "faulthandler", "itertools", "math", "sys", "time", "zlib"}  # compiled into the interpreter: in no file of the manifest
THIRD_PARTY = {"numpy": "python3-numpy", "yaml": "python3-pyyaml", "paho": "python3-paho-mqtt",
               "gi": "python3-pygobject", "pydbus": "python3-pydbus"}
OPTIONAL = {"tflite_runtime", "ai_edge_litert"}  # imported by name in backends/tflite.py; tensorflow-lite has one


def daemon_imports() -> set[str]:
    found = set()
    for path in (ROOT / "daemon" / "src" / "edgeoffload").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - {"edgeoffload"}


def recipe_text(recipe: Path) -> str:
    """The recipe with the files it `require`s (paths relative to the recipe or to the layer)."""
    text = recipe.read_text()
    for inc in re.findall(r"^require\s+(\S+)", text, re.M):
        path = recipe.parent / inc if (recipe.parent / inc).exists() else LAYER / inc
        text += "\n" + recipe_text(path)
    return text


def rdepends(text: str) -> set[str]:
    values = re.findall(r'^RDEPENDS:\$\{PN\}\s*\+?=\s*"((?:[^"\\]|\\.)*)"', text, re.M | re.S)
    return {w for v in values for w in v.replace("\\\n", " ").split()}


def test_rdepends_cover_every_module_the_daemon_imports():
    imports = daemon_imports()
    needed = rdepends(recipe_text(DAEMON_RECIPE))
    stdlib = {m for m in imports if m in sys.stdlib_module_names}
    unknown = stdlib - set(STDLIB_PACKAGES)
    assert not unknown, f"add these to STDLIB_PACKAGES from oe-core's python3-manifest.json: {sorted(unknown)}"
    missing = {f"python3-{STDLIB_PACKAGES[m]}" for m in stdlib} - needed
    third = imports - stdlib
    assert third <= set(THIRD_PARTY), f"a new board dependency needs a reason and a recipe: {third - set(THIRD_PARTY)}"
    missing |= {THIRD_PARTY[m] for m in third} - needed
    assert not missing, f"RDEPENDS:${{PN}} of {DAEMON_RECIPE.name} lacks {sorted(missing)}"
    tflite = (ROOT / "daemon/src/edgeoffload/backends/tflite.py").read_text()
    assert all(f'"{m}.interpreter"' in tflite for m in OPTIONAL)


def test_rdepends_are_sorted():
    for recipe in RECIPES.rglob("*.b*"):
        for value in re.findall(r'^RDEPENDS:\$\{PN\}(?:-ptest)?\s*\+?=\s*"((?:[^"\\]|\\.)*)"', recipe.read_text(),
                                re.M | re.S):
            words = value.replace("\\\n", " ").split()
            assert words == sorted(words), recipe.name


@pytest.mark.skipif(not os.environ.get("EDGEOFFLOAD_YOCTO_SOURCES"), reason="needs EDGEOFFLOAD_YOCTO_SOURCES")
def test_table_matches_oe_core():
    manifest = Path(os.environ["EDGEOFFLOAD_YOCTO_SOURCES"]) / ("openembedded-core/meta/recipes-devtools/"
                                                                "python/python3/python3-manifest.json")
    text = "\n".join(line for line in manifest.read_text().splitlines() if not line.lstrip().startswith("#"))
    packages = json.loads(text)
    for module, package in STDLIB_PACKAGES.items():
        if module in BUILTIN:
            continue
        files = packages[package]["files"]
        assert any(re.search(rf"/{re.escape(module)}(\.py|/?$|\.cpython|module\.|\.\*\.so)", f) for f in files), module


def installed_sources(recipe: Path, s: Path) -> list[str]:
    text = recipe_text(recipe)
    top = ROOT
    paths = [s / p for p in re.findall(r"\$\{S\}/([\w./*-]+)", text)]
    paths += [top / p for p in re.findall(r"\$\{EDGEOFFLOAD_TOP\}/([\w./*-]+)", text)]
    return [str(p) for p in paths]


@pytest.mark.parametrize("recipe, s", [(DAEMON_RECIPE, ROOT / "daemon"), (CONF_RECIPE, ROOT / "conf")],
                         ids=["python3-edgeoffload", "edgeoffload-conf"])
def test_every_file_a_recipe_installs_exists_in_the_tree(recipe, s):
    paths = installed_sources(recipe, s)
    assert paths
    for p in paths:
        assert list(Path("/").glob(p.lstrip("/"))), f"{recipe.name} installs {p}, which is not in the tree"
    text = recipe_text(recipe)
    assert re.search(r'^S = "\$\{UNPACKDIR\}/\$\{BP\}/' + s.name + '"', text, re.M)


def test_the_conf_recipes_files_pass_check_config(capsys):
    files = [str(p) for p in installed_sources(CONF_RECIPE, ROOT / "conf") if p.endswith(".yaml")]
    expanded = [str(p) for f in files for p in Path("/").glob(f.lstrip("/"))]
    assert any(p.endswith("edgeoffloadd.yaml") for p in expanded) and any("policies" in p for p in expanded)
    assert ctl_main(["check-config", *expanded]) == 0, capsys.readouterr().err


def test_the_layer_installs_the_files_the_daemon_ships():
    """The unit, the bus policy and the interface come from daemon/, never from copies in the layer."""
    for name in ("edgeoffloadd.service", "org.edgeoffload.Daemon1.conf", "org.edgeoffload.Daemon1.xml"):
        assert not list(LAYER.rglob(name)), f"{name} is copied into the layer"
        assert name in recipe_text(DAEMON_RECIPE)
