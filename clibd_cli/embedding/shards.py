"""Embedding in numbered chunks that survive an interruption, by one process or several.

``clibd embed`` and ``clibd index`` cut their input into chunks of consecutive records. Process R
of W (torchrun or srun, ``clibd_cli/distributed.py``) embeds chunks R, R+W, R+2W, … and
saves each one as soon as it is done, in a folder beside the output (``OUTPUT.shards/``)::

    manifest.json        what is being embedded: inputs, model fingerprint, options, chunk size
    chunk-000012.npz     one chunk's arrays (numpy format, no pickle)
    done-rank-R.jsonl    a line per chunk process R saved: chunk number, file, sha256

Rerunning the same command after an interruption, with any number of processes, skips every
chunk whose file still has its recorded sha256; a manifest that differs (other inputs, model or
options) means the folder is stale and it is emptied first. Once every process is done, process 0
checks each chunk against its checksum and reads them back in input order; the caller writes the
output atomically and then calls :func:`discard`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

from clibd_cli import distributed
from models.errors import ClibdError, counted
from models.files import atomic_open, sha256_file

log = logging.getLogger("clibd")
Part = dict[str, np.ndarray]
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Records per saved chunk, in model batches: 2,048 at the default batch size (a 5M-photo run keeps
# about 2,500 chunk files; an interruption loses at most one chunk per process).
CHUNK_BATCHES = 8


def shards_folder(output: str | Path, part: str = "") -> Path:
    """Where the chunks of ``output`` (a file or an index directory; ``part`` of it) are kept until
    it is written: ``OUTPUT.shards`` or ``OUTPUT.PART.shards``."""
    output = Path(output)
    return output.with_name(".".join(filter(None, (output.name, part, "shards"))))


def describe_inputs(paths: Iterable[str | Path]) -> list:
    """What identifies the inputs for a resumed run: each file's absolute path, size and mtime, each
    folder's as :func:`describe_photos` gives it (a renamed, added or rewritten photo starts afresh)."""
    from clibd_cli.io.images import find_images

    out: list = []
    for source in paths:
        path = Path(source)
        if str(source) == "-":  # standard input cannot be read twice: never resumed
            out.append(["-", secrets.token_hex(8)])
        elif path.is_dir():
            out.append(describe_photos(path, find_images([path], warn=False)))  # the embedding warns
        else:
            stat = path.stat()
            out.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    return out


def describe_photos(source: Path, photos: Iterable[Path]) -> list:
    """``source``'s absolute path and a sha256 of the paths (relative to it: the same run from another
    folder resumes), sizes and mtimes of the ``photos`` found in it (a link to a photo that is gone: its
    path alone), for a resumed run."""
    digest = hashlib.sha256()
    for photo in photos:
        where = os.path.relpath(photo, source)
        try:
            stat = photo.stat()
        except OSError:
            digest.update(f"{where}\n".encode())
        else:
            digest.update(f"{where}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return [str(source.resolve()), digest.hexdigest()]


def embed_chunks(chunks: Iterable[Callable[[], Part]], folder: Path, fingerprint: dict,
                 world: distributed.World, progress: bool = False) -> list[tuple[Path, str]]:
    """Embed this process's share of ``chunks`` (each a function that embeds its records), saving
    each in ``folder``; after every process is done, ``[(chunk file, sha256)]`` in input order on
    process 0, ``[]`` on the others."""
    manifest = {"format": FORMAT_VERSION, **fingerprint}
    if world.is_main:
        _prepare(folder, manifest)
    distributed.gather_objects(None, world)  # the others wait for the folder
    resumable = all(entry[0] != "-" for entry in fingerprint.get("inputs", ()))
    with kept_on_failure(folder, resumable) if world.is_main else nullcontext():
        total, mine = _embed_mine(chunks, folder, world, _bar(progress and world.is_main))
    everyone = distributed.gather_objects((total, mine), world)
    if not world.is_main:
        return []
    sums = {number: sha for _, part in everyone for number, sha in part.items()}
    if {n for n, _ in everyone} != {total} or sorted(sums) != list(range(total)):
        raise ClibdError(f"{folder}: the processes saw different inputs; rerun the command")
    return [(folder / f"chunk-{number:06d}.npz", sums[number]) for number in range(total)]


def _embed_mine(chunks: Iterable[Callable[[], Part]], folder: Path, world: distributed.World,
                bar) -> tuple[int, dict[int, str]]:
    """Embed and save the chunks of this process not saved before; (chunks in all, {chunk: sha256} of its own)."""
    done = _done(folder)
    record = folder / f"done-rank-{world.rank}.jsonl"
    if record.is_file() and not record.read_bytes().endswith(b"\n"):  # a line torn by a kill: end it,
        with open(record, "a") as handle:  # so that the next line is not glued onto it
            handle.write("\n")
    mine: dict[int, str] = {}
    skipped = 0
    total = 0
    for number, embed in enumerate(chunks):
        total += 1
        if number % world.size != world.rank:
            continue
        path = folder / f"chunk-{number:06d}.npz"
        if number in done and path.is_file() and sha256_file(path) == done[number]:
            mine[number], skipped = done[number], skipped + 1
        else:
            mine[number] = _save(path, embed())
            with open(record, "a") as handle:
                handle.write(json.dumps({"chunk": number, "file": path.name, "sha256": mine[number]}) + "\n")
        if bar is not None:
            bar.update(world.size)
    if bar is not None:
        bar.close()
    if skipped:
        log.info("%s already embedded in %s (resumed)", counted(skipped, "chunk"), folder)
    return total, mine


@contextmanager
def kept_on_failure(folder: Path, resumable: bool = True) -> Iterator[None]:
    """On a failure within (an interruption, a full disk as the chunks or the output they make up are
    written): keep the chunks saved in ``folder`` for a rerun and say so, or remove a folder that holds
    none or that no rerun can carry on (standard input is not read twice: see :func:`describe_inputs`)."""
    try:
        yield
    except BaseException:
        saved = len(_done(folder)) if folder.is_dir() and resumable else 0
        if saved:
            log.warning("%s kept in %s: run the same command again to carry on, once what stopped it is "
                        "mended", counted(saved, "embedded chunk"), folder)
        else:
            discard(folder)
        raise


def read_chunks(files: list[tuple[Path, str]]) -> Iterator[Part]:
    """The saved chunks in order, each checked against its sha256."""
    for path, sha in files:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise ClibdError(f"{path}: changed since it was written (sha256 differs); rerun the command "
                             "to embed that chunk again")
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            yield {name: arrays[name] for name in arrays.files}


def discard(folder: Path) -> None:
    """Remove the chunks once the output they make up is written."""
    shutil.rmtree(folder, ignore_errors=True)


def _prepare(folder: Path, manifest: dict) -> None:
    """Create ``folder`` with ``manifest``, emptying one left by an embedding of something else."""
    path = folder / MANIFEST
    manifest = json.loads(json.dumps(manifest))  # as it reads back: tuples become lists
    if folder.exists():
        try:
            same = json.loads(path.read_text()) == manifest
        except (OSError, ValueError):
            same = False
        if same:
            return
        log.warning("%s: left by an embedding of other inputs or options; starting afresh", folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with atomic_open(path) as handle:
        json.dump(manifest, handle, indent=1)


def _done(folder: Path) -> dict[int, str]:
    """Chunk number -> sha256 of every chunk a process recorded as saved (a torn last line is ignored)."""
    done: dict[int, str] = {}
    for path in sorted(folder.glob("done-rank-*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
                done[int(entry["chunk"])] = str(entry["sha256"])
            except (ValueError, KeyError, TypeError):
                continue
    return done


def _save(path: Path, part: Part) -> str:
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **part)
    return sha256_file(path)


def _bar(enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(unit=" chunks", leave=False, desc="embedding")
