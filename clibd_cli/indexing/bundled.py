"""The default model and reference that ``clibd classify`` uses when no ``--index`` is given.

The package ships the trained ``clibd-fast-bold`` model (``models/pretrained``) and a pack of
its reference index over the public BOLD COI-5P barcodes of the training split
(``clibd_cli/bundled/default-reference``, see :mod:`clibd_cli.indexing.pack`). The first use
unpacks it once into the user cache directory (``$CLIBD_CACHE_DIR``, else
``$XDG_CACHE_HOME/clibd``, else ``~/.cache/clibd``); later runs open it from there.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import ExitStack
from pathlib import Path

from clibd_cli.io.outputs import UsageError
from models.errors import ClibdError

DEFAULT_MODEL = "clibd-fast-bold"
PACK = Path(__file__).parents[1] / "bundled" / "default-reference"
log = logging.getLogger("clibd")


def cache_dir() -> Path:
    """Where clibd keeps what it builds once per machine."""
    if os.environ.get("CLIBD_CACHE_DIR"):
        return Path(os.environ["CLIBD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "clibd"


def default_index_dir() -> Path:
    """Where the default reference index is unpacked (or will be): a cache folder named after its pack."""
    from clibd_cli.indexing.pack import PACK_FILE
    from models.files import sha256_file

    pack_file = PACK / PACK_FILE
    if not pack_file.is_file():
        raise ClibdError(f"{PACK}: the default reference is missing from this installation; "
                         "reinstall clibd or give --index")
    return cache_dir() / f"default-reference-{sha256_file(pack_file)[:16]}"


def default_index(*, progress: bool = False) -> Path:
    """The default reference index directory, unpacked into the cache on first use, under the
    cache folder's writer lock (``io/outputs.writer_lock``): of first runs started together (a batch
    array on a new machine) one unpacks it and the others wait for it, and what a run killed while
    unpacking left there is removed."""
    from clibd_cli.io.outputs import writer_lock
    from clibd_cli.reference.hnsw_index import MANIFEST_FILE

    target = default_index_dir()
    if (target / MANIFEST_FILE).is_file():
        return target
    with ExitStack() as lock:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            lock.enter_context(writer_lock(target))
        except (OSError, ClibdError) as exc:
            raise _unwritable_cache(target, exc) from None
        if not (target / MANIFEST_FILE).is_file():  # else another clibd unpacked it while this one waited
            _unpack(target, progress)
    return target


def _unpack(target: Path, progress: bool) -> None:
    """Unpack the bundled pack into ``target``."""
    from clibd_cli.indexing.pack import PACK_FILE, unpack_index

    records = json.loads((PACK / PACK_FILE).read_text())["manifest"]["count"]
    log.warning("building the default reference index (%d BOLD barcodes) once into %s ...", records, target)
    start = time.perf_counter()
    index = unpack_index(PACK, progress=progress)
    try:
        index.save(target)
    except OSError as exc:
        raise _unwritable_cache(target, exc) from None
    log.warning("default reference ready (%.0f s)", time.perf_counter() - start)


def _unwritable_cache(target: Path, exc: Exception) -> ClibdError:
    return ClibdError(f"{target}: cannot write the default reference there ({exc}); "
                      "set CLIBD_CACHE_DIR to a writable folder")


def default_reference(model_dir: str | None, *, photos: bool, progress: bool = False) -> Path:
    """The index ``clibd classify`` searches without ``--index`` (:func:`default_index`): for
    barcodes (not ``photos``) and the bundled model (``model_dir`` None or its name) only: others are
    usage errors (exit 2), to be given ``--index``."""
    if photos:
        raise UsageError(f"the bundled model {DEFAULT_MODEL} was trained on barcodes only and cannot "
                         "classify photos; give --index built with a model trained on specimen photos "
                         "(clibd train on BIOSCAN data, or clibd import of the CLIBD authors' checkpoints)")
    if model_dir not in (None, DEFAULT_MODEL):
        raise UsageError("--model needs --index: the bundled reference was built with the bundled model "
                         f"{DEFAULT_MODEL}")
    return default_index(progress=progress)
