"""Opening a reference index directory (its layout: :mod:`clibd_cli.reference.hnsw_index`):
the manifest read and checked, every file verified against its checksum, then the graph, the
records and the calibration, sketches and holdings loaded into a
:class:`~clibd_cli.reference.hnsw_index.ReferenceIndex`; and the model an index names, read
from its manifest alone (``clibd index --append`` without ``-m``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import hnswlib
import numpy as np

from clibd_cli.io.outputs import UsageError
from clibd_cli.reference.hnsw_file import stored_dim
from clibd_cli.reference.hnsw_index import (CALIBRATION_FILE, FORMAT_VERSION, INDEX_FILE, MANIFEST_FILE, NODES_FILE,
                                            RECORDS_FILE, ReferenceIndex)
from clibd_cli.reference.holdings import HOLDINGS_FILE, load_holdings
from clibd_cli.reference.records import REBUILD, read_records
from clibd_cli.reference.sketch import holds_sketch, load_sketch, sketch_files
from models.config import TOWERS
from models.errors import ClibdError
from models.files import read_whole, sha256_file


def load_index(
    path: str | Path, *, model_fingerprint: str | None = None, verify: bool = True
) -> ReferenceIndex:
    """Open an index directory; verify checksums and (if given) the model fingerprint.

    An index rebuilt while it is read (``clibd index -o`` replaces the directory at once,
    ``models/files.py``) is read again: its files all come from one version."""
    index = read_whole(Path(path), lambda folder: _load(folder, verify))
    if model_fingerprint is not None:
        index.check_model(model_fingerprint)
    return index


def built_with(path: str | Path) -> str:
    """The model the index at ``path`` was built with, as its manifest records it (a name, or a model
    directory's absolute path: ``embedding/embedder.model_reference``); a ClibdError where ``path``
    holds no index, or its manifest names no model."""
    manifest_path = Path(path) / MANIFEST_FILE
    try:
        model = json.loads(manifest_path.read_text()).get("model")
    except (OSError, ValueError, AttributeError):
        raise ClibdError(f"{path}: not an index yet (no readable {MANIFEST_FILE}); build it without --append "
                         "first (with -m MODEL)") from None
    if not isinstance(model, str) or not model:
        raise ClibdError(f"{manifest_path}: names no model; give the one the index was built with as -m")
    return model


def _load(path: Path, verify: bool) -> ReferenceIndex:
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        _not_an_index(path)
    try:
        manifest = json.loads(manifest_path.read_text())
        version, digests = manifest["format_version"], manifest["sha256"]
        _ = manifest["dim"], manifest["ranks"], manifest["model_fingerprint"], manifest["hnsw"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ClibdError(f"{manifest_path}: unreadable manifest ({exc}); {REBUILD}") from exc
    if version != FORMAT_VERSION:
        raise ClibdError(f"{manifest_path}: index format {version!r} is not supported "
                         f"(this clibd reads format {FORMAT_VERSION}); {REBUILD}")
    ef, modality = manifest["hnsw"].get("ef") if isinstance(manifest["hnsw"], dict) else None, manifest.get("modality")
    if type(ef) is not int or ef < 1 or modality not in TOWERS or type(manifest["dim"]) is not int:
        raise ClibdError(f"{manifest_path}: unreadable manifest (expected an integer hnsw.ef and dim, and a modality "
                         f"among {', '.join(TOWERS)}; found {ef!r}, {manifest['dim']!r}, {modality!r}); {REBUILD}")
    unlisted = sorted({INDEX_FILE, NODES_FILE, RECORDS_FILE, *sketch_files(manifest)} - set(digests))
    if unlisted:
        raise ClibdError(f"{manifest_path}: no checksum for {unlisted[0]}; {REBUILD}")
    for name, digest in digests.items():
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
            raise ClibdError(f"{manifest_path}: {name!r} is not a plain file name inside the index directory; "
                             f"{REBUILD}")
        if not (path / name).is_file():
            raise ClibdError(f"{path / name}: missing; {REBUILD}")
        if verify and sha256_file(path / name) != digest:
            raise ClibdError(f"{path / name}: checksum mismatch (corrupted or modified); {REBUILD}")
    with open(path / RECORDS_FILE, encoding="utf-8") as f:
        ids, labels = read_records(f, path / RECORDS_FILE, manifest["ranks"])
    try:
        nodes = np.load(path / NODES_FILE, allow_pickle=False)
    except ValueError as exc:
        raise ClibdError(f"{path / NODES_FILE}: not a numpy array file clibd wrote ({exc}); {REBUILD}") from None
    if nodes.ndim != 1 or not np.issubdtype(nodes.dtype, np.integer) or (len(nodes) and nodes.min() < 0):
        raise ClibdError(f"{path / NODES_FILE}: expected one graph node number (≥ 0) per record, found a "
                         f"{nodes.dtype} array of shape {list(nodes.shape)}; {REBUILD}")
    stored = stored_dim(path / INDEX_FILE)
    if stored != manifest["dim"]:
        raise ClibdError(f"{manifest_path}: dim {manifest['dim']} but {INDEX_FILE} holds {stored}-dimensional "
                         f"vectors; {REBUILD}")
    graph = hnswlib.Index(space="ip", dim=manifest["dim"])
    try:
        graph.load_index(str(path / INDEX_FILE))
    except (RuntimeError, MemoryError, ValueError) as exc:
        raise ClibdError(f"{path / INDEX_FILE}: unreadable HNSW index ({exc}); {REBUILD}") from None
    if len(nodes) != len(ids) or (len(nodes) and nodes.max() >= graph.get_current_count()):
        raise ClibdError(f"{path}: {INDEX_FILE}, {NODES_FILE} and {RECORDS_FILE} disagree on "
                         f"the number of records; {REBUILD}")
    calibration = None
    if CALIBRATION_FILE in digests:
        try:
            calibration = json.loads((path / CALIBRATION_FILE).read_text())
        except ValueError as exc:
            raise ClibdError(f"{path / CALIBRATION_FILE}: unreadable ({exc}); {REBUILD}") from exc
    index = ReferenceIndex(graph, ids, labels, nodes.astype(np.int64), manifest, calibration, path,
                           load_sketch(path, manifest, REBUILD) if holds_sketch(manifest, digests) else None,
                           load_holdings(path / HOLDINGS_FILE, len(ids), REBUILD) if HOLDINGS_FILE in digests else None)
    index._mapped()  # now, from this version of index.bin
    return index


def _not_an_index(path: Path) -> NoReturn:
    """Raise why ``path``, without a manifest, is no index: a damaged index (its other files there:
    rebuild it, exit 1), or a folder that never was one, a model directory or any other (exit 2)."""
    if any((path / name).is_file() for name in (INDEX_FILE, NODES_FILE, RECORDS_FILE, CALIBRATION_FILE)):
        raise ClibdError(f"{path}: not a clibd index directory (no {MANIFEST_FILE}); {REBUILD}")
    if (path / "config.json").is_file():  # a model directory given where an index was expected
        raise UsageError(f"{path}: not a clibd index directory (no {MANIFEST_FILE}); it holds a model: give "
                         f"it as --model and an index built with it as --index (clibd index --model {path} "
                         "REFERENCES -o DIR)")
    raise UsageError(f"{path}: not a clibd index directory (no {MANIFEST_FILE}, nor any other file clibd "
                     "index writes); give the folder clibd index -o wrote, or build one (clibd index -m "
                     "MODEL REFERENCES -o DIR)")
