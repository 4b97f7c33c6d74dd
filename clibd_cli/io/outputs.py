"""A user's outputs (``-o``): where one may be written and who writes it.

:func:`output_path` decides whether a ``-o`` may be written at all (never over a device, a FIFO,
an input, or a folder that is not the command's own), :func:`writer_lock` keeps two clibd
processes from writing one output at once, :func:`text_output` opens one (standard output for
``-``); the writing itself is atomic (``models/files.py``).
"""

from __future__ import annotations

import bz2
import errno
import fcntl
import gzip
import io
import logging
import lzma
import os
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from models.errors import ClibdError
from models.files import atomic_open, cannot_write, full_disk, remove_temporaries, temporaries

_NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP}  # flock's errors where a file system has no locks
# how a text output whose name ends in one of these suffixes is compressed: as clibd's inputs are read
# (the gzip header without time stamp or name, as `gzip -n`; bzip2 and xz hold neither)
PACKERS = {
    ".gz": lambda raw: gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0),
    ".bz2": lambda raw: bz2.BZ2File(raw, "wb"),
    ".xz": lambda raw: lzma.LZMAFile(raw, "wb"),
}
_NOT_PACKED = {".zst": "zstd", ".zip": "ZIP", ".lz4": "LZ4", ".7z": "7-Zip"}  # suffixes clibd cannot write


class UsageError(ClibdError):
    """A command line that cannot be carried out as given (an output that must not be replaced, a
    folder given for a file, a run folder the training options disagree with): exit code 2, like
    click's usage errors."""

    exit_code = 2


def output_path(path: str | Path, *, directory: bool = False, marker: str | None = None,
                inputs: tuple[str | Path, ...] = (), reads: tuple[str | Path | None, ...] = ()) -> Path:
    """Where a user's output ``path`` (``-o``) may be written, or a :class:`UsageError` (exit 2).

    A symlink is followed: its target is written, the link stays. Refused: a device, FIFO (``/dev/stdout`` into a pipe) or
    socket; the file standard error goes to (``-o /dev/stderr 2> log``: the output would replace the
    messages); a file where a folder goes and the reverse (a file's path ending in ``/``); a file in
    a folder that does not exist (a mistyped folder is not made; a folder output is made, with its
    parents); a read-only output
    or one in a folder the user cannot write; with ``directory``, a non-empty folder
    without ``marker`` (not an earlier output of the same command, which is replaced); an output
    that is one of ``inputs`` (by any name: a link, a hard link, the file standard input reads)
    or holds one; an output inside one of the folders in ``reads`` (an index, a model directory:
    read as a whole, replaced as a whole); ``-`` (commands that stream to standard output take
    it before they call this). Returns the resolved path.
    """
    given = str(path)
    what = "a folder" if directory else "a file"
    if not given:  # `-o ''`, `-o "$UNSET"`: not the current folder
        raise UsageError(f"an empty path was given for {what}; give its name")
    if given == "-":
        raise UsageError(f"-: this output is {what}, which cannot be written to standard output; give a path")
    if not directory and given.endswith(("/", os.sep)):  # as GNU tools: `out.tsv/` names a folder
        raise UsageError(f"{given}: ends with '/', a folder, not a file; give the file's path without it")
    try:  # the path as given, links followed: /dev/stdout into a pipe has no name realpath could give
        mode = os.stat(given).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UsageError(f"{given}: cannot use as output ({exc.strerror})") from None
    if mode is not None and not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise UsageError(f"{given}: is {_special(mode)}, not {what}; this output is written to {what} "
                         f"(made whole, then renamed); give a path for {what}")
    target = Path(os.path.realpath(path))
    if mode is not None and stat.S_ISDIR(mode) != directory:
        found = "a folder" if stat.S_ISDIR(mode) else "a file"
        raise UsageError(f"{given}: is {found}, not {what}; clibd will not replace it; give another path")
    if mode is None and not directory and not target.parent.is_dir():
        folder = (f"links to {target}, whose folder {target.parent}" if os.path.islink(given)  # dangling
                  else f"the folder {Path(given).parent}")
        raise UsageError(f"{given}: {folder} does not exist; create it or give another path")
    if mode is not None and directory and marker and not (target / marker).is_file() and any(target.iterdir()):
        raise UsageError(f"{given}: is a folder with other files in it (no {marker}), not an earlier "
                         "output of this command; clibd will not replace it; give a new or empty folder")
    if mode is not None and _is_standard_error(target):  # `-o /dev/stderr 2> log`, `-o log 2> log`
        raise UsageError(f"{given}: is the file standard error goes to (clibd's messages); replacing it "
                         "would lose them; give another path, or - for standard output")
    if mode is not None and not os.access(target, os.W_OK):
        raise UsageError(f"{given}: is read-only; clibd will not replace it; make it writable or give another path")
    made_in = next((folder for folder in target.parents if folder.is_dir()), target)  # where the output (or its folder) is made
    if not os.access(made_in, os.W_OK | os.X_OK):
        raise UsageError(f"{given}: cannot write in {made_in} (permission denied); give another path")
    for source in inputs:
        if _same_file(target, source):
            name = "the file standard input reads" if str(source) == "-" else f"the input {source}"
            raise UsageError(f"{given}: is {name}; writing it would destroy that input; give another output path")
        if directory and str(source) != "-" and target in Path(os.path.realpath(source)).parents:
            raise UsageError(f"{given}: holds the input {source}; replacing the folder would destroy "
                             "that input; give another output path")
    for folder in filter(None, reads):
        inside = Path(os.path.realpath(folder))
        if os.path.isdir(inside) and (inside == target or inside in target.parents):
            raise UsageError(f"{given}: is inside {folder}, an index or model folder this command reads (clibd "
                             "writes and replaces those whole); give a path outside it")
    return target


def _special(mode: int) -> str:
    """What a path that is neither a file nor a folder is, for a message (``mode``: its ``st_mode``)."""
    if stat.S_ISFIFO(mode):
        return "a pipe (a FIFO)"
    return "a socket" if stat.S_ISSOCK(mode) else "a device"


def _same_file(target: Path, source: str | Path) -> bool:
    """Whether ``target`` is ``source`` under any name (``-``: the file standard input reads)."""
    stdin = str(source) == "-"
    try:
        found = os.fstat(sys.stdin.fileno()) if stdin else os.stat(source)
        written = os.stat(target)
    except (AttributeError, OSError, ValueError):  # no such file; no standard input, or not a file's
        return not stdin and Path(os.path.realpath(source)) == target
    return (found.st_dev, found.st_ino) == (written.st_dev, written.st_ino)


def _is_standard_error(target: Path) -> bool:
    """Whether ``target`` is the file standard error (file descriptor 2) writes to; none where clibd
    started with it closed (``2>&-``: descriptor 2 is then whatever file was opened first since)."""
    if sys.stderr is None:
        return False
    try:
        found, written = os.fstat(2), os.stat(target)
    except OSError:  # no standard error, or no such file
        return False
    return stat.S_ISREG(found.st_mode) and (found.st_dev, found.st_ino) == (written.st_dev, written.st_ino)


@contextmanager
def writer_lock(path: str | Path, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` as an output: a second clibd writing it waits here
    (``wait=False``: is refused, for outputs written for days, a training run's).

    The lock is ``fcntl.flock`` on a hidden file beside the output (``.NAME.lock``: the output
    itself is replaced by rename, so it cannot carry the lock), removed on release; a waiter
    that wakes on a removed lock file takes the new one. Every clibd command writes its outputs
    under their locks, so the one that takes a lock removes what a clibd killed while writing
    that output left (:func:`_remove_left_over`). On a file system without locks the output is
    written unguarded, with a warning, and nothing is removed.
    """
    target = Path(path)
    lock_file = target.parent / f".{target.name}.lock"
    try:
        handle = _lock(lock_file, target, wait)
    except OSError as exc:  # NFS mounted nolock, Lustre without its flock option: no locks there
        if exc.errno not in _NO_LOCKS:  # the folder refuses new files: named as the output's, not the lock's
            raise ClibdError(f"{target}: cannot write in {target.parent} ({exc.strerror}); "
                             "give another path") from None
        lock_file.unlink(missing_ok=True)
        logging.getLogger("clibd").warning("%s: cannot lock it (this file system has no locks); nothing "
                                           "keeps a second clibd from writing it at once", target)
        yield
        return
    if handle is None:
        raise ClibdError(f"{target}: another clibd is writing it; let it finish (or stop it) or give another path")
    try:
        _remove_left_over(target)
        yield
    finally:
        lock_file.unlink(missing_ok=True)
        handle.close()


@contextmanager
def text_output(path: str | Path) -> Iterator[IO[str]]:
    """A text output (a table, a page) open for writing: standard output for ``-``, whose full disk
    (``> file`` on a full disk, ``ulimit -f``) is named like any other output's
    (``models/files.cannot_write``) rather than a bare 'File too large'; otherwise a file under its
    :func:`writer_lock`, atomic (``models/files.atomic_open``): it appears only when complete, and
    compressed where its name ends in ``.gz``, ``.bz2`` or ``.xz`` (:data:`PACKERS`; as ``zcat`` and
    pandas then read it), with no time stamp nor name in it: the same table is the same file."""
    if str(path) == "-":
        if sys.stdout is None:  # started with its standard output closed (`>&-`)
            raise ClibdError("standard output is closed; give -o FILE or redirect it (> FILE)")
        if hasattr(sys.stdout, "reconfigure"):  # UTF-8 as a file's, whatever the locale (Latin-1, ASCII)
            sys.stdout.reconfigure(encoding="utf-8")
        try:
            yield sys.stdout
            sys.stdout.flush()
        except OSError as exc:
            if full_disk(exc) is not None:
                raise cannot_write("standard output", exc) from None
            raise
        return
    packer = packer_of(path)
    if packer is None:
        with writer_lock(path), atomic_open(path, "w", encoding="utf-8") as handle:
            yield handle
        return
    with writer_lock(path), atomic_open(path, "wb") as raw:
        with packer(raw) as packed, io.TextIOWrapper(packed, encoding="utf-8") as handle:
            yield handle


def packer_of(path: str | Path) -> Callable[[IO[bytes]], IO[bytes]] | None:
    """How :func:`text_output` compresses ``path`` (:data:`PACKERS`; None: plain text), or a
    :class:`UsageError` for a compression clibd cannot write (``pred.tsv.zst``), which would have been
    plain text under a compressed name: commands check their table outputs with it before any work."""
    suffix = Path(path).suffix.lower()
    if suffix in _NOT_PACKED:
        raise UsageError(f"{path}: clibd cannot write {_NOT_PACKED[suffix]} files; end the name in .gz, .bz2 "
                         "or .xz for a compressed table, or in neither for plain text")
    return PACKERS.get(suffix)


def _lock(lock_file: Path, target: Path, wait: bool) -> IO | None:
    """``lock_file`` open and locked; None if another process holds it and not ``wait``."""
    target.parent.mkdir(parents=True, exist_ok=True)  # as the output's writer would
    while True:
        handle = open(lock_file, "a")  # noqa: SIM115 - closed by the caller, or below
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                handle.close()
                return None
            logging.getLogger("clibd").warning("%s: another clibd is writing it; waiting for it to finish",
                                               target)
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            handle.close()
            raise
        try:
            if os.stat(lock_file).st_ino == os.fstat(handle.fileno()).st_ino:
                return handle
        except FileNotFoundError:
            pass
        handle.close()  # the holder removed this lock file: take the next one


def _remove_left_over(target: Path) -> None:
    """Remove the temporaries (``models/files.temporaries``) of ``target``, whose lock this process
    holds, and, in a folder output, those of each file or folder in it whose own lock is free (a
    clibd writing a file there holds that file's lock): what a clibd killed while writing left."""
    for temp in remove_temporaries(target):
        logging.getLogger("clibd").info("%s: removed %s, left by a clibd killed while writing it", target, temp.name)
    if target.is_dir():
        for name in sorted({name for _, name in temporaries(target)}):
            with suppress(ClibdError, OSError), writer_lock(target / name, wait=False):
                pass  # taking the lock removed them; a lock that is held: another clibd writes them now
