"""Opening input files: ``-`` for stdin, compression detected from the first bytes, clear errors.

Every reader in :mod:`clibd_cli.io` opens its input here, so gzip/bz2/xz work everywhere
(also on stdin, whatever the file is called) and a broken archive or a binary file becomes
one :class:`~models.errors.ClibdError` naming the file instead of a traceback.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

from clibd_cli.io.outputs import UsageError
from models.errors import ClibdError

_MAGIC = ((b"\x1f\x8b", gzip), (b"BZh", bz2), (b"\xfd7zXZ\x00", lzma))
_NOT_TEXT = (  # (offset, signature, what the file is) of inputs that look like no text to a text reader
    (0, b"PK\x03\x04", "a ZIP archive; unzip it and give the files inside (gzip, bzip2 and xz are read "
                        "as they are)"),
    (257, b"ustar", "a tar archive; extract it (tar xf) and give the files inside"),
    (0, b"\x28\xb5\x2f\xfd", "zstd-compressed; decompress it (zstd -d) or compress it with gzip"),
    (0, b"\xff\xfe", "UTF-16 text (Windows' 'Unicode'); save it as UTF-8"),
    (0, b"\xfe\xff", "UTF-16 text (Windows' 'Unicode'); save it as UTF-8"),
    *((0, signature, f"a {kind} photo, not text (clibd classify takes photos with --images)")
      for signature, kind in ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"II*\x00", "TIFF"),
                              (b"MM\x00*", "TIFF"))),
    (0, b"\x89HDF\r\n\x1a\n", "an HDF5 file (a dataset or embeddings), not FASTA/FASTQ or table text"),
    *((0, magic, f"compressed twice: decompressed, it is {module.__name__}-compressed again (gzip of "
                 "a .gz file?); decompress it once (zcat FILE > NEW) and give that")
      for magic, module in _MAGIC),
)


def display_name(source: str | Path) -> str:
    """How a source is named in messages: ``<stdin>`` for ``-``, else the path as given."""
    return "<stdin>" if str(source) == "-" else str(source)


def open_binary(source: str | Path) -> BinaryIO:
    """Open a file (or stdin for ``-``) for reading bytes, decompressing gzip, bz2 or xz."""
    stdin = str(source) == "-"
    if stdin:
        if sys.stdin is None:  # started with its standard input closed (`<&-`, some daemons)
            raise ClibdError("<stdin>: standard input is closed; give a file, or pipe the records in")
        raw = sys.stdin.buffer
        if not hasattr(raw, "peek"):  # e.g. a BytesIO standing in for stdin
            raw = io.BufferedReader(raw)
    else:
        try:
            raw = open(source, "rb")  # noqa: SIM115 - handed to the caller
        except IsADirectoryError:
            raise UsageError(f"{source}: is a directory, expected a file") from None
    head = raw.peek(6)[:6]
    for magic, module in _MAGIC:
        if head.startswith(magic):  # read from the file as opened: a pipe (<(cat x.gz), a FIFO) opens once
            return module.open(raw, "rb") if stdin else _closing_with(module.open(raw, "rb"), raw)
    return raw


def _closing_with(stream: BinaryIO, raw: BinaryIO) -> BinaryIO:
    """``stream``, decompressing ``raw``, made to close ``raw`` too when it is closed (the
    decompressors leave a file object they were given open)."""
    close = stream.close

    def close_both() -> None:
        try:
            close()
        finally:
            raw.close()

    stream.close = close_both  # type: ignore[method-assign]
    return stream


def open_text(source: str | Path) -> TextIO:
    """Open a file (or ``-``) as UTF-8 text with universal newlines, a leading byte-order mark
    (Windows editors, spreadsheet exports) dropped; see :func:`open_binary`. ClibdError for an
    archive (ZIP, tar), zstd or UTF-16 text, named as such rather than as bytes that are not UTF-8."""
    binary = open_binary(source)
    try:
        with reading(source, [0]):  # bzip2 decompresses 900 kB blocks: a cut first one breaks off in line 1
            head = binary.peek(262)[:262]  # type: ignore[attr-defined]  # every stream here peeks
        what = next((what for at, signature, what in _NOT_TEXT
                     if head[at:at + len(signature)] == signature), None)
        if what is not None:
            raise ClibdError(f"{display_name(source)}: is {what}")
    except BaseException:
        binary.close()
        raise
    return io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")


def check_text(source: str | Path) -> None:
    """:func:`open_text`'s refusal of a photo, an archive or UTF-16 text, before any work; only for a
    regular file (a pipe or standard input is read once, by the reader). UsageError for a folder."""
    if str(source) != "-" and Path(source).is_dir():
        raise UsageError(f"{source}: is a directory, expected a file (photos and their folders go with "
                         "--images)")
    if str(source) != "-" and Path(source).is_file():
        open_text(source).close()


@contextmanager
def reading(source: str | Path, line: list[int] | None = None) -> Iterator[None]:
    """Turn decompression, decoding and I/O failures inside the block into a ClibdError.

    ``line``: a one-item list the reader keeps at the line it reads, named in the message."""
    try:
        yield
    except UnicodeDecodeError as exc:
        again = str(source) != "-" and Path(source).is_file()  # a pipe (FIFO, <(...)) cannot be read again
        bad = _first_bad_line(source) if again else None
        name = _at(source, line) if bad is None else f"{display_name(source)}:{bad[0]}"
        what = exc.reason if bad is None else f"byte {bad[1]!r}"
        raise ClibdError(f"{name}: not UTF-8 text ({what}); is this the right file? (save it as UTF-8)") from None
    except (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as exc:
        raise ClibdError(f"{_at(source, line)}: unreadable compressed file ({exc or 'it ends too early'}); "
                         "the records before this line were read; is the download complete?") from None
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        raise ClibdError(f"{_at(source, line)}: cannot read ({exc.strerror or exc})") from None


def _first_bad_line(source: str | Path) -> tuple[int, bytes] | None:
    """The first line of a file that is not UTF-8, and its first undecodable byte (the text
    reader decodes blocks ahead of the line it hands out, so its own count is early)."""
    with open_binary(source) as handle:
        for number, raw in enumerate(handle, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return number, raw[exc.start:exc.start + 1]
    return None


def _at(source: str | Path, line: list[int] | None) -> str:
    """``FILE`` or ``FILE:LINE`` (the line being read when a failure struck)."""
    return display_name(source) + (f":{line[0] + 1}" if line is not None else "")


def is_hdf5(path: str | Path) -> bool:
    """Whether ``path`` is an HDF5 file (by its signature; ``-`` and folders are not)."""
    if str(path) == "-" or not Path(path).is_file():
        return False
    with open(path, "rb") as handle:
        return handle.read(8) == b"\x89HDF\r\n\x1a\n"
