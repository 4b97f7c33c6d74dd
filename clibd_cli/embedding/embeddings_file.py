"""The embeddings HDF5 written by ``clibd embed``: ids, modality per record, vectors, provenance."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import h5py
import numpy as np

from clibd_cli import __version__
from clibd_cli.embedding.embedder import Embedder, batched
from clibd_cli.io.images import IMAGE_SUFFIXES, find_images, load_image, load_photos
from clibd_cli.io.sequences import barcode_problem, clean_barcode
from clibd_cli.io.streams import is_hdf5
from models.config import RANKS
from models.files import atomic_path

log = logging.getLogger("clibd")
Batch = tuple[list[str], list[str], np.ndarray]


class EmbeddingsWriter:
    """Append batches of embeddings to a new HDF5 file that appears only when complete."""

    def __init__(self, path: Path, model, model_spec: str, command: str):
        self.path, self.count = Path(path), 0
        self._stack = ExitStack()
        self._attrs = {"model_fingerprint": model.fingerprint(), "model": str(Path(model_spec).resolve())
                       if Path(model_spec).exists() else model_spec, "embed_dim": model.embed_dim,
                       "clibd_version": __version__, "command": command}
        self._dim = model.embed_dim

    def __enter__(self) -> EmbeddingsWriter:
        temp = self._stack.enter_context(atomic_path(self.path))
        self._file = self._stack.enter_context(h5py.File(temp, "w"))
        self._file.attrs.update(self._attrs)
        text = h5py.string_dtype()
        self._ids = self._file.create_dataset("ids", (0,), dtype=text, maxshape=(None,), chunks=(4096,))
        self._kinds = self._file.create_dataset("modality", (0,), dtype=text, maxshape=(None,),
                                                chunks=(4096,))
        self._vectors = self._file.create_dataset("vectors", (0, self._dim), dtype="f4",
                                                  maxshape=(None, self._dim),
                                                  chunks=(1024, self._dim))
        return self

    def add(self, ids: Sequence[str], kinds: Sequence[str], vectors: np.ndarray) -> None:
        n = len(ids)
        for dataset, values in ((self._ids, ids), (self._kinds, kinds), (self._vectors, vectors)):
            dataset.resize(self.count + n, axis=0)
            dataset[self.count:] = values
        self.count += n

    def __exit__(self, *exc) -> None:
        self._stack.__exit__(*exc)


def read_embeddings(path: str | Path) -> tuple[list[str], list[str], np.ndarray, dict]:
    """``(ids, modality per record, vectors [N, D] float32, attributes)`` of an embeddings file."""
    with h5py.File(path, "r") as f:
        return ([s.decode() for s in f["ids"][:]], [s.decode() for s in f["modality"][:]],
                f["vectors"][:].astype(np.float32), dict(f.attrs))


def input_modality(source: str, dataset_modality: str) -> str:
    """What an input holds: a dataset HDF5 (embedded as ``dataset_modality``), photos, or barcodes."""
    path = Path(source)
    if is_hdf5(source):
        return dataset_modality
    if source != "-" and (path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES):
        return "image"
    return "dna"


def embed_inputs(embedder: Embedder, inputs: Sequence[str], splits: Sequence[str],
                 dataset_modality: str) -> Iterator[Batch]:
    """Embeddings of each input in turn: dataset HDF5s, photo files/folders, or FASTA/FASTQ."""
    size = embedder.batch_size * 4
    for source in inputs:
        if is_hdf5(source):
            yield from _dataset(embedder, source, splits, dataset_modality, size)
        elif input_modality(source, dataset_modality) == "image":
            for paths in batched(find_images([source]), embedder.batch_size):
                yield from _photos(embedder, [(str(p), lambda p=p: load_image(p)) for p in paths])
        else:
            yield from _barcodes(embedder, source, size)


def _barcodes(embedder: Embedder, source: str, size: int) -> Iterator[Batch]:
    from clibd_cli.io.sequences import read_sequences
    from clibd_cli.io.streams import display_name

    name = display_name(source)
    for records in batched(read_sequences(source), size):
        usable = []
        for record in records:
            record.seq = clean_barcode(record.seq) if not barcode_problem(record.seq) else record.seq
            problem = barcode_problem(record.seq)
            if problem:
                log.warning("%s:%d: %s: skipped: %s", name, record.line, record.id, problem)
            else:
                usable.append(record)
        if usable:
            yield [r.id for r in usable], ["dna"] * len(usable), embedder.barcodes([r.seq for r in usable])


def _photos(embedder: Embedder, loaders: list) -> Iterator[Batch]:
    """Embeddings of the photos that load; each is shrunk to the model's input once decoded."""
    ids, pixels = load_photos(loaders, embedder.pixels, skipped="skipped")
    if pixels:
        yield ids, ["image"] * len(ids), embedder.images(pixels)


def _dataset(embedder: Embedder, source: str, splits: Sequence[str], modality: str,
             size: int) -> Iterator[Batch]:
    from clibd_cli.data.store import open_dataset

    with open_dataset(source) as dataset:
        part = dataset.splits_union(splits)
        ids = part.ids()
        photo_sizes = part.image_sizes if modality == "image" else None
        for start in range(0, len(part), size):
            stop = min(start + size, len(part))
            chunk = ids[start:stop]
            if modality == "image":  # one model batch at a time: even shrunk, photos are large
                for lo in range(start, stop, embedder.batch_size):
                    rows = [i for i in range(lo, min(lo + embedder.batch_size, stop)) if photo_sizes[i]]
                    yield from _photos(embedder, [(ids[i], lambda i=i: load_image(
                        part.image_bytes(i), f"{source}:{ids[i]}")) for i in rows])
            elif modality == "text":
                ranks = [part.column(rank, start, stop) for rank in RANKS]
                labels = [embedder.model.label_string(dict(zip(RANKS, values))) for values in zip(*ranks)]
                yield chunk, ["text"] * len(chunk), embedder.labels(labels)
            else:
                barcodes = part.column("barcode", start, stop)
                keep = [j for j, b in enumerate(barcodes) if not barcode_problem(b)]
                if keep:
                    yield ([chunk[j] for j in keep], ["dna"] * len(keep),
                           embedder.barcodes([barcodes[j] for j in keep]))
