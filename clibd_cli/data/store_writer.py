"""Writing a dataset HDF5 in the layout ``store.py`` owns: records streamed in per split, the file
moved into place only on a clean close, with per-split counts in its attributes."""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from clibd_cli import __version__
from clibd_cli.data.store import FIELDS, FORMAT, FORMAT_VERSION, LABELS, MISSING, Record, in_listing_order
from clibd_cli.io.hdf5_files import HDF5Output

TEXT_FIELDS = FIELDS[:-1]  # every field but the photo bytes
_ROW = operator.attrgetter(*FIELDS)


class DatasetWriter:
    """Stream records into a new dataset file; it appears at ``path`` only on a clean close.

    Use as a context manager; an exception inside the block leaves no file behind. Records
    are buffered per split and appended in blocks (``chunk_rows`` rows or ``buffer_bytes`` of
    images, whichever comes first), so memory stays bounded; HDF5 stores them in chunks of
    ``storage_chunk`` rows. ``images`` decides whether ``image``/``image_mask`` are written.
    """

    def __init__(self, path: str | Path, attrs: Mapping[str, object] | None = None, *, images: bool = False,
                 chunk_rows: int = 8192, buffer_bytes: int = 64 << 20, storage_chunk: int = 1024):
        self.path = Path(path)
        self.attrs = dict(attrs or {})
        self.images = images
        self.chunk_rows = chunk_rows
        self.buffer_bytes = buffer_bytes
        self.storage_chunk = storage_chunk
        self._output = HDF5Output(self.path)
        self._file = self._output.file
        self._buffers: dict[str, list[tuple]] = {}
        self._buffered_bytes = 0
        self._stats: dict[str, _SplitStats] = {}

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._output.abort(exc)  # the target keeps its previous content, if any

    def add(self, split: str, record: Record | Mapping[str, object]) -> None:
        """Append one record to ``split`` (a Record or a mapping with FIELDS keys)."""
        if not isinstance(record, Record):
            record = Record(**{name: record.get(name) for name in FIELDS if record.get(name) is not None})
        if not split or "/" in split:
            raise ValueError(f"bad split name {split!r}")
        buffer = self._buffers.setdefault(split, [])
        buffer.append(_ROW(record))
        self._stats.setdefault(split, _SplitStats()).add(record)
        if record.image:
            self._buffered_bytes += len(record.image)
        if len(buffer) >= self.chunk_rows or self._buffered_bytes >= self.buffer_bytes:
            with self._output.writing():
                self._flush()

    def summary(self) -> dict:
        """Per-split and total counts: records, species, genera, with_image."""
        total = _SplitStats()
        for stats in self._stats.values():
            total.merge(stats)
        splits = {name: stats.as_dict() for name, stats in in_listing_order(self._stats)}
        return {"splits": splits, "total": total.as_dict()}

    def close(self) -> dict:
        """Write what is buffered and the attributes, and move the file into place."""
        try:
            with self._output.writing():
                self._flush()
                summary = self.summary()
                for name, counts in summary["splits"].items():
                    self._file[name].attrs.update(counts)
                attrs = {"format": FORMAT, "format_version": FORMAT_VERSION, "clibd_version": __version__,
                         "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **self.attrs,
                         "summary": summary}
                for key, value in attrs.items():
                    self._file.attrs[key] = json.dumps(value) if isinstance(value, (dict, list, tuple)) else value
        except BaseException as exc:
            self._output.abort(exc)  # the target keeps its previous content, if any
            raise
        self._output.close()
        return summary

    def _flush(self) -> None:
        for split, rows in self._buffers.items():
            if rows:
                self._append(split, rows)
                rows.clear()
        self._buffered_bytes = 0

    def _append(self, split: str, rows: list[tuple]) -> None:
        group = self._file.get(split) or self._create_group(split)
        columns = list(zip(*rows))
        for name, values in zip(FIELDS, columns):
            if name == "image":
                if self.images:
                    blobs = np.empty(len(values), dtype=object)
                    blobs[:] = [np.frombuffer(v or b"", dtype=np.uint8) for v in values]
                    _extend(group["image"], blobs)
                    _extend(group["image_mask"], np.array([len(v or b"") for v in values], dtype=np.int64))
            elif name in LABELS:
                _extend(group[name], np.array([v or MISSING for v in values], dtype=object))
            else:
                _extend(group[name], np.array(values, dtype=object))

    def _create_group(self, split: str) -> h5py.Group:
        group = self._file.create_group(split)
        for name in TEXT_FIELDS:
            group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=h5py.string_dtype(),
                                 chunks=(self.storage_chunk,))
        if self.images:
            group.create_dataset("image", shape=(0,), maxshape=(None,), dtype=h5py.vlen_dtype(np.uint8),
                                 chunks=(self.storage_chunk,))
            group.create_dataset("image_mask", shape=(0,), maxshape=(None,), dtype=np.int64,
                                 chunks=(self.storage_chunk,))
        return group


@dataclass
class _SplitStats:
    records: int = 0
    with_image: int = 0
    species: set[str] = field(default_factory=set)
    genera: set[str] = field(default_factory=set)

    def add(self, record: Record) -> None:
        self.records += 1
        self.with_image += bool(record.image)
        if record.species:
            self.species.add(record.species)
        if record.genus:
            self.genera.add(record.genus)

    def merge(self, other: _SplitStats) -> None:
        self.records += other.records
        self.with_image += other.with_image
        self.species |= other.species
        self.genera |= other.genera

    def as_dict(self) -> dict[str, int]:
        return {"records": self.records, "species": len(self.species), "genera": len(self.genera),
                "with_image": self.with_image}


def _extend(dataset: h5py.Dataset, values: np.ndarray) -> None:
    n = dataset.shape[0]
    dataset.resize((n + len(values),))
    dataset.write_direct(values, dest_sel=np.s_[n:n + len(values)])  # also for equal-length vlen rows
