"""Writing the host tools' outputs: never over an existing file unless asked, never half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_new_or_replace(path: Path, data: bytes, force: bool, error: type[Exception]) -> int:
    """Write via a temporary file beside `path`: a new name, or (with force) replacing the old file at once.
    Problems are raised as `error` (the command's own EdgeOffloadError) naming the file. Returns the size."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise error(f"{path}: cannot write in {path.parent}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the name appeared meanwhile: never overwrites
    except FileExistsError:
        raise error(f"{path} already exists; pass --force to replace it") from None
    except OSError as e:
        raise error(f"{path}: cannot write: {e.strerror or e}") from e
    finally:
        Path(tmp).unlink(missing_ok=True)
    return len(data)
