"""Atomic outputs and checksums, for every file clibd writes (model, index, pack, dataset, report).

Writes go to a temporary path beside the target, renamed into place on success: a reader never
sees a half-written file or folder, and a failure (including Ctrl-C) leaves the previous
version, if any, untouched and no temporary behind. :func:`sha256_file` is the checksum every
manifest records. Whether a user's ``-o`` may be written at all is the command line's rule
(``clibd_cli/io/outputs.py``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from models.errors import ClibdError

_UMASK = os.umask(0o022)  # read the process umask (the only way is to set it) ...
os.umask(_UMASK)  # ... and put it back at once; temporaries get the permissions open() would give
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


@contextmanager
def atomic_path(path: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``path``.

    With ``directory=True`` the temporary path is an empty folder to fill. Files are fsynced
    before the rename. On any exception, KeyboardInterrupt included, the temporary is removed; a
    full disk (or a file size limit) is a :func:`cannot_write` error that names ``path``.
    """
    target = Path(path)
    parent = target.parent
    if not parent.is_dir():
        raise ClibdError(f"{target}: the folder {parent} does not exist")
    try:
        if directory:
            temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp", dir=parent))
        else:
            handle, name = tempfile.mkstemp(prefix=f"{target.name}.tmp", dir=parent)
            os.close(handle)
            temp = Path(name)
    except OSError as exc:  # name the user's path, not a temporary they never saw
        raise ClibdError(f"{target}: cannot write in {parent} ({exc.strerror})") from None
    try:
        yield temp
        if directory:
            _replace_directory(temp, target)
            _fsync_directory(parent)
        else:
            with open(temp, "rb+") as written:
                os.fsync(written.fileno())
            os.chmod(temp, 0o666 & ~_UMASK)
            os.replace(temp, target)
    except BaseException as exc:
        _remove(temp)
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM and not exc.filename:  # a write, not an open
            raise cannot_write(target, exc) from None
        raise


def cannot_write(target: str | Path, reason: OSError | str) -> ClibdError:
    """The error for a write to ``target`` that failed (no space left, a file size limit, a quota)."""
    reason = (reason.strerror or str(reason)) if isinstance(reason, OSError) else reason
    return ClibdError(f"{target}: cannot write ({reason}); free some space or give another path")


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open(path, mode)`` through :func:`atomic_path`: the file appears complete or not at all."""
    with atomic_path(path) as temp, open(temp, mode, **kwargs) as handle:
        yield handle


def _replace_directory(temp: Path, target: Path) -> None:
    os.chmod(temp, 0o777 & ~_UMASK)
    if not target.exists():
        os.replace(temp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old", dir=target.parent))
    try:
        os.replace(target, old / target.name)
        try:
            os.replace(temp, target)
        except BaseException:
            os.replace(old / target.name, target)  # put the previous version back
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _remove(temp: Path) -> None:
    if temp.is_dir():
        shutil.rmtree(temp, ignore_errors=True)
    else:
        temp.unlink(missing_ok=True)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read a MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_directory(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
