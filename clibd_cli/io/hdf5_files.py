"""Writing an HDF5 file (the dataset, ``data/store_writer.py``; embeddings,
``embedding/embeddings_file.py``): atomically, and so that a full disk is an error, not a crash.

HDF5 (2.0, through h5py 3.16) does not survive a failed write: a full disk or a file size limit
(``ulimit -f``) ends the process with a segmentation fault a few writes later, the temporary
file left behind. So the file is opened through a Python file whose write errors are kept
instead of passed on (HDF5 goes on as if it had written; h5py's driver for Python files also
ignores short writes, which this file completes), and :meth:`HDF5Output.writing` turns the first
one into a one-line error; the file is closed and the temporary removed
(``models/files.atomic_path``).
"""

from __future__ import annotations

import errno
import io
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import h5py

from models.files import atomic_path, cannot_write


class HDF5Output:
    """A new HDF5 file (``file``, an ``h5py.File``) that appears at ``path`` on :meth:`close`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._stack = ExitStack()
        temp = self._stack.enter_context(atomic_path(self.path))
        try:
            self._raw = self._stack.enter_context(_KeptErrors(temp, "w+"))
            self.file = h5py.File(self._raw, "w")
        except BaseException as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around calls that write: a failed write so far is the error, whatever HDF5 made of it
        (reading back what was not written, it may fail in its own words)."""
        try:
            yield
        except Exception:
            self._raise_kept()
            raise
        self._raise_kept()

    def _raise_kept(self) -> None:
        if self._raw.error is not None:
            raise cannot_write(self.path, self._raw.error)

    def close(self) -> None:
        """Close the file and move it into place; a write that failed removes it instead."""
        try:
            with self.writing():
                self.file.close()
        except BaseException as exc:
            self.abort(exc)
            raise
        self._stack.close()

    def abort(self, exc: BaseException) -> None:
        """Drop the temporary file (the target keeps its previous content, if any)."""
        with suppress(Exception):
            self.file.close()
        self._stack.__exit__(type(exc), exc, exc.__traceback__)


class _KeptErrors(io.FileIO):
    """A file whose first write error is kept in ``error``: that write and the later ones are held
    in memory instead (read back from there), so HDF5 sees a consistent file to the end; the
    caller then drops it. After a full disk that is the rest of one block of records."""

    error: OSError | None = None

    def __init__(self, path: Path, mode: str):
        super().__init__(path, mode)
        self._held: list[tuple[int, bytes]] = []  # (offset, bytes) not written, in write order

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        start, done = self.tell(), 0
        while self.error is None and done < len(view):
            try:
                written = super().write(view[done:])
                if not written:
                    raise OSError(errno.EIO, "nothing written")
                done += written
            except OSError as exc:
                self.error = exc
        if done < len(view):
            self._held.append((start + done, bytes(view[done:])))
            self.seek(start + len(view))
        return len(view)

    def read(self, size: int = -1) -> bytes:
        start = self.tell()
        data = super().read(size)
        if not self._held:
            return data
        end = start + size if size >= 0 else max([start + len(data), *(o + len(b) for o, b in self._held)])
        merged = bytearray(data.ljust(end - start, b"\0"))
        for offset, held in self._held:
            low, high = max(offset, start), min(offset + len(held), end)
            if low < high:
                merged[low - start:high - start] = held[low - offset:high - offset]
        self.seek(end)
        return bytes(merged)

    def readinto(self, buffer) -> int:
        if not self._held:
            return super().readinto(buffer)
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return super().truncate(size)
            except OSError as exc:
                self.error = exc
        return self.tell() if size is None else size
