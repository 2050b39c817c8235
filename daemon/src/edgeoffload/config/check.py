"""`edgeoffloadctl check-config`: tell daemon configs from policies and validate each file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from ..errors import ConfigError, Problem
from .daemon import build_daemon_config
from .policy import build_policy
from .yamlsrc import FILE_PATH, INVALID, Document, read_document

DAEMON_CONFIG = "daemon config"
POLICY = "policy"


def file_kind(doc: Document) -> str:
    """`daemon config` (has device_id) or `policy` (has objective); ConfigError when it is neither."""
    if doc.value is INVALID:
        raise ConfigError(doc.problems)
    is_config, is_policy = "device_id" in doc.value, "objective" in doc.value
    if is_config != is_policy:
        return DAEMON_CONFIG if is_config else POLICY
    message = (
        "has both device_id (daemon config) and objective (policy): a file is one or the other" if is_config
        else "is neither a daemon config (no device_id key) nor a policy (no objective key)"
    )
    problem = Problem(doc.source, doc.lines.get("", 1), FILE_PATH, message)
    raise ConfigError(sorted([*doc.problems, problem], key=lambda p: p.line))


def check_file(path: str | Path) -> str:
    """Validate one file; returns its kind, raises ConfigError listing every problem in it."""
    doc = read_document(path)
    kind = file_kind(doc)
    if kind == DAEMON_CONFIG:
        build_daemon_config(doc, Path(path).absolute().parent)
    else:
        build_policy(doc)
    return kind


def check_files(paths: list[str | Path], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Print `FILE: ok (kind)` per good file on `out` (stdout) and every problem on `err` (stderr).

    Returns 2 if any file has a problem, else 0.
    """
    out, err = out or sys.stdout, err or sys.stderr
    status = 0
    for path in paths:
        try:
            kind = check_file(path)
        except ConfigError as e:
            status = 2
            for line in [str(p) for p in e.problems] or [f"{path}: {e}"]:
                print(line, file=err)
        else:
            print(f"{path}: ok ({kind})", file=out)
    return status
