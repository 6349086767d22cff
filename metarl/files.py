"""Files written whole or not at all: run-folder files, checkpoints and on-disk caches."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(
    path: str | Path, write: Callable[[BinaryIO], object], previous: str | Path | None = None
) -> None:
    """Write ``path`` whole or not at all: ``write`` fills a new temporary file in the same
    folder, which is flushed, fsynced and renamed over ``path`` (``os.replace``), so a reader
    or a crash sees the old file or the new one, never half of one.

    The temporary name is unique to this call (``.NAME.<random>.tmp``, created exclusively),
    so two processes or threads writing the same file never share one; it gets the ordinary
    permissions of a new file, where ``tempfile.mkstemp``'s 0600 would outlive the rename.
    If anything fails, ``KeyboardInterrupt`` included, the temporary file is removed, ``path``
    is left as it was, and the error is raised.

    Args:
        path: the file to write; its folder must exist.
        write: called once with the temporary file, open for binary writing.
        previous: if given and ``path`` exists, the old file is renamed to this name just
            before the new one takes its place (a checkpoint's fallback copy).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # never hide the error that brought us here
            tmp.unlink(missing_ok=True)
        raise
