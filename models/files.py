"""Atomic outputs and checksums, for every file clibd writes (model, index, pack, dataset, report).

Writes go to a temporary path beside the target, renamed into place on success (a folder
swapped with the previous one in one step where the system can): a reader never sees a
half-written file or folder, and a failure (including Ctrl-C) leaves the previous version, if
any, untouched and no temporary behind; :func:`read_whole` reads a folder whole even while one
is replaced. :func:`sha256_file` is the checksum every manifest records. Whether a user's ``-o`` may be written at all is the command line's rule
(``clibd_cli/io/outputs.py``).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

from models.errors import ClibdError

_UMASK = os.umask(0o022)  # read the process umask (the only way is to set it) ...
os.umask(_UMASK)  # ... and put it back at once; temporaries get the permissions open() would give
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}  # a write failed for want of room
_RENAMEAT2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if os.name == "posix" else None
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how Rust's std::io::Error names the errno
_TEMPORARY = re.compile(r"\.tmp[a-z0-9_]{8}$")  # atomic_path's prefix ends in .tmp; tempfile adds 8 of these
T = TypeVar("T")


@contextmanager
def atomic_path(path: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``path``.

    With ``directory=True`` the temporary path is an empty folder to fill. Files (a folder's
    files too) are fsynced before the rename. On any exception, KeyboardInterrupt included, the
    temporary is removed; a full disk (or a file size limit) is a :func:`cannot_write` error
    that names ``path``.
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
            usual_permissions(temp)
            os.replace(temp, target)
    except BaseException as exc:
        _remove(temp)
        reason = full_disk(exc)
        if reason is not None:
            raise cannot_write(target, reason) from None
        raise


def full_disk(exc: BaseException | None) -> OSError | None:
    """The full disk (file size limit, quota) that made a write fail: ``exc``, the OSError it was
    raised from (torch.save through a Python file says 'unexpected pos'), or one a Rust library
    names in its message (safetensors: '... File too large (os error 27)'); None for other failures."""
    for _ in range(10):  # down the chain (one built by hand may loop)
        if not isinstance(exc, Exception) or isinstance(exc, ClibdError):
            return None
        if isinstance(exc, OSError):
            return exc if exc.errno in _NO_ROOM and not exc.filename else None  # a write, not an open
        code = _RUST_OS_ERROR.search(str(exc))
        if code and int(code[1]) in _NO_ROOM:
            return OSError(int(code[1]), os.strerror(int(code[1])))
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return None


def usual_permissions(path: str | Path) -> None:
    """Give a written file the permissions ``open()`` would have given it (some writers, the
    safetensors library among them, make theirs readable by their owner only)."""
    os.chmod(path, 0o666 & ~_UMASK)


def cannot_write(target: str | Path, reason: OSError | str) -> ClibdError:
    """The error for a write to ``target`` that failed (no space left, a file size limit, a quota)."""
    reason = (reason.strerror or str(reason)) if isinstance(reason, OSError) else reason
    return ClibdError(f"{target}: cannot write ({reason}); free some space or give another path")


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open(path, mode)`` through :func:`atomic_path`: the file appears complete or not at all."""
    with atomic_path(path) as temp, open(temp, mode, **kwargs) as handle:
        yield handle


def temporaries(folder: Path) -> list[tuple[Path, str]]:
    """The temporaries of :func:`atomic_path` in ``folder``, each with the name of the output it
    was made for (``out.h5.tmpk3j9x0ab``: ``out.h5``; the folder ``.IDX.tmpk3j9x0ab``: ``IDX``). The
    process writing that output holds its own; any other was left by one killed before it could
    remove it (SIGKILL, out of memory)."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if not _TEMPORARY.search(name) or entry.is_symlink():
                continue
            if not entry.is_dir():
                found.append((Path(entry.path), _TEMPORARY.sub("", name)))
                continue
            while name.startswith(".") and _TEMPORARY.search(name):  # ..best.tmpX.tmpY: made for .best.tmpX
                name = _TEMPORARY.sub("", name[1:])
            if name != entry.name:
                found.append((Path(entry.path), name))
    return found


def remove_temporaries(target: Path) -> list[Path]:
    """Remove the :func:`temporaries` made for ``target``, beside it; the ones removed. Only for the
    process that writes ``target`` (no other can still be writing them: ``clibd_cli/io/outputs.py``)."""
    removed = [temp for temp, name in temporaries(target.parent) if name == target.name]
    for temp in removed:
        _remove(temp)
    return removed


def _replace_directory(temp: Path, target: Path) -> None:
    os.chmod(temp, 0o777 & ~_UMASK)
    for folder, _, names in os.walk(temp):  # on disk before the previous version goes
        for name in names:
            with open(os.path.join(folder, name), "rb") as written:
                os.fsync(written.fileno())
    if not target.exists():
        os.replace(temp, target)
        return
    if _exchange(temp, target):  # one step: a reader of ``target`` finds the old folder or the new one
        _remove(temp)  # the previous version (a symlink or a file too), now at the temporary name
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


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths at once (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is not
    available (another system, a file system without it)."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _remove(temp: Path) -> None:
    if temp.is_dir() and not temp.is_symlink():
        shutil.rmtree(temp, ignore_errors=True)
    else:
        temp.unlink(missing_ok=True)


def read_whole(folder: Path, read: Callable[[Path], T], tries: int = 50) -> T:
    """``read(folder)``, of a folder that :func:`atomic_path` may replace meanwhile (another
    process writing it): read again until one version was read from start to end (up to ``tries``
    reads: a loaded machine's reader can see ten replacements of a small folder go by)."""
    version = _version(folder)
    for _ in range(tries - 1):
        try:
            found = read(folder)
        except Exception:  # noqa: BLE001 - any failure, if the folder changed meanwhile, is read again
            if _version(folder) == version:
                raise
        else:
            if _version(folder) == version:
                return found
        version = _version(folder)
    return read(folder)


def _version(folder: Path) -> tuple[int, int, int] | None:
    """Which folder ``folder`` names now: a replaced one is another inode, made at another time."""
    try:
        found = os.stat(folder)
    except OSError:
        return None
    return found.st_dev, found.st_ino, found.st_ctime_ns


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
