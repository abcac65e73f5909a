"""Files on disk are never half-written: every write goes to a temp file beside the target, then is renamed.

The one copy of write-temp-fsync-rename in the package: the local store, fetched archives, manifests, the
archives that sync places for TorchServe, and the reports the CLI writes (``bench.json``/``.md``/``.png``,
``plan --json``/``--plot``, ``evaluate --out``) all use it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[BinaryIO], None],
    *,
    before_replace: Callable[[Path], None] | None = None,
) -> None:
    """``write(f)`` into a temp file in ``path``'s directory, fsync it, then rename it over ``path``.

    ``before_replace(tmp)`` runs on the complete temp file and may raise to refuse it (a checksum check);
    on any error the temp file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    def write(f: BinaryIO) -> None:
        f.write(data)

    atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """``text`` as UTF-8, written as :func:`atomic_write` does."""
    atomic_write_bytes(path, text.encode("utf-8"))


def place_file(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Make ``path`` a hard link to ``source`` (a copy across file systems), replacing it atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, path)
