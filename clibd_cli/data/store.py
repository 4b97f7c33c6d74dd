"""The dataset HDF5 (this module owns its layout; README "Preparing a dataset"): reading ours
and the CLIBD-distributed files (ours are written by ``store_writer.py``).

One group per split, one 1-D dataset per field (``FIELDS``), strings as UTF-8, missing ranks
as ``not_classified`` (read back as None, as are the other ``models.config.MISSING_LABELS``). Images: ours are variable-length uint8 arrays holding the original
file bytes, plus ``image_mask`` (byte length, 0 = no image); the CLIBD files pad JPEG bytes
into a uint8 ``[N, MAXLEN]`` matrix with ``image_mask`` giving each length. Readers get both
through :class:`Split`, and split names resolve across BIOSCAN-5M names, the CLIBD 1M groups
and the CLIBD 5M groups (``ALIASES`` in ``clibd_cli/data/splits.py``), e.g. ``all_keys`` or
``pretrain+train``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np

from clibd_cli.data.splits import ALIASES, LISTING_ORDER
from clibd_cli.io.outputs import UsageError
from models.config import RANKS, is_missing_label
from models.errors import ClibdError, counted

FIELDS = ("processid", "sampleid", "barcode", *RANKS, "dna_bin", "image")  # Record's fields, in order
LABELS = RANKS + ("dna_bin",)
MISSING = "not_classified"
FORMAT = "clibd-dataset"
FORMAT_VERSION = 1


@dataclass(slots=True)
class Record:
    """One specimen as stored: ids, barcode, labels (None = missing) and photo bytes."""

    processid: str
    sampleid: str = ""
    barcode: str = ""
    order: str | None = None
    family: str | None = None
    genus: str | None = None
    species: str | None = None
    dna_bin: str | None = None
    image: bytes | None = None


def open_dataset(path: str | Path) -> Dataset:
    """Open a dataset file written by ``clibd prepare`` or distributed by the CLIBD authors."""
    return Dataset(path)


class Dataset:
    """A dataset file: its split groups, attributes, and split views (``split``, ``splits_union``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except FileNotFoundError:
            raise ClibdError(f"{path}: no such dataset file") from None
        except OSError as exc:
            raise ClibdError(f"{path}: not an HDF5 dataset file ({exc})") from None
        groups = [name for name, item in self._file.items()
                  if isinstance(item, h5py.Group) and ("barcode" in item or "image" in item)]
        if not groups:
            self._file.close()
            raise ClibdError(f"{path}: no split groups with 'barcode' or 'image' datasets; "
                             "is this a dataset made by `clibd prepare` or distributed by CLIBD?")
        self.splits: list[str] = [name for name, _ in in_listing_order(dict.fromkeys(groups))]

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __reduce__(self):
        return open_dataset, (str(self.path),)

    def close(self) -> None:
        self._file.close()

    @cached_property
    def attrs(self) -> dict:
        """File attributes; JSON-encoded values (e.g. ``summary``) decoded."""
        out = {}
        for key, value in self._file.attrs.items():
            value = value.decode() if isinstance(value, bytes) else value
            if isinstance(value, str) and value[:1] in "{[":
                value = json.loads(value)
            out[key] = value.item() if isinstance(value, np.generic) else value
        return out

    def resolve(self, name: str) -> list[str]:
        """The groups that make up split ``name`` (a group, an alias, ``all``, or ``a+b``); a name the
        file lacks is a :class:`~clibd_cli.io.outputs.UsageError` (exit 2), as a missing tower is."""
        if name in self.splits:
            return [name]
        if name == "all":
            return [group for group in self.splits if group not in self._derived_groups()]
        for candidate in ALIASES.get(name, ()):
            if all(group in self.splits for group in candidate):
                return list(candidate)
        if "+" in name:
            groups = (group for part in name.split("+") for group in self.resolve(part.strip()))
            return list(dict.fromkeys(groups))
        raise UsageError(f"{self.path}: no split {name!r}; this file has {', '.join(self.splits)}")

    def split(self, name: str) -> Split:
        """A view of one split (or alias / metasplit / ``a+b`` union)."""
        return Split(self, name, self.resolve(name))

    def splits_union(self, names: Iterable[str]) -> Split:
        """A view of several splits one after the other, each group at most once."""
        return self.split("+".join(names))

    def _derived_groups(self) -> set[str]:
        """Groups that repeat others (CLIBD's metasplit groups), left out of ``all``."""
        derived = {"all_keys"}
        if "no_split" in self.splits:
            derived.add("no_split_and_seen_train")
        elif "no_split_and_seen_train" in self.splits and "train_seen" not in self.splits:
            derived.add("seen_keys")  # CLIBD 5M file: seen_keys = train, inside no_split_and_seen_train
        return derived


class Split:
    """Records of one or more groups, read lazily: columns, ranks and images by position."""

    def __init__(self, dataset: Dataset, name: str, groups: list[str]):
        self.dataset = dataset
        self.name = name
        self.groups = tuple(groups)
        self._h5 = [dataset._file[group] for group in groups]
        self.sizes = tuple(_group_length(dataset.path, group) for group in self._h5)
        self._offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int).tolist()

    def __len__(self) -> int:
        return self._offsets[-1]

    def __reduce__(self):
        return _reopen_split, (str(self.dataset.path), self.name)

    def column(self, field: str, start: int = 0, stop: int | None = None) -> list:
        """Values of ``field`` for records ``start:stop``; labels give None where missing.

        A field absent from the file reads as None (labels) or "" (ids, barcode).
        """
        if field == "image":
            raise ValueError("read images with image_bytes(i)")
        stop = len(self) if stop is None else min(stop, len(self))
        values: list = []
        for group, lo, hi in self._ranges(start, stop):
            if field in group:
                values += _read_column(group[field], lo, hi)
            else:
                values += [None if field in LABELS else ""] * (hi - lo)
        if field in LABELS:
            missing = {v for v in set(values) if is_missing_label(v)}  # few distinct labels: one test each
            values = [None if v in missing else v for v in values]
        return values

    def ids(self) -> list[str]:
        """Record ids: ``processid``, else ``image_file`` (CLIBD 1M), else ``sampleid``."""
        return [value for chunk in self._id_chunks() for value in chunk]

    def ids_digest(self) -> str:
        """SHA-256 of the record ids (:meth:`ids`) in order, one per line, read a chunk at a time:
        which records these are, wherever the file is."""
        digest = hashlib.sha256()
        for chunk in self._id_chunks():
            digest.update("".join(value + "\n" for value in chunk).encode())
        return digest.hexdigest()

    def content_digest(self, size: int = 100_000) -> str:
        """SHA-256 of the records' barcodes, then of each rank's labels, in record order, one per line
        as stored (bytes, not decoded: :func:`_stored`), ``size`` records at a time: what these records
        are, wherever the file is (which records: :meth:`ids_digest`)."""
        digest = hashlib.sha256()
        for field in ("barcode", *RANKS):
            digest.update(f"\0{field}\n".encode())  # each field's values apart from the next's
            for group, lo, hi in self._ranges(0, len(self)):
                for start in range(lo, hi, size):
                    digest.update(b"\n".join(_stored(group, field, start, min(start + size, hi))) + b"\n")
        return digest.hexdigest()

    def _id_chunks(self, size: int = 100_000):
        for group, lo, hi in self._ranges(0, len(self)):
            field = next((f for f in ("processid", "image_file", "sampleid") if f in group), None)
            for start in range(lo, hi, size):
                stop = min(start + size, hi)
                yield _read_column(group[field], start, stop) if field else [""] * (stop - start)

    def ranks(self, i: int) -> dict[str, str | None]:
        """``{rank: label or None}`` for record i."""
        group, j = self._locate(i)
        return {rank: _label(group, rank, j) for rank in RANKS}

    @cached_property
    def image_sizes(self) -> np.ndarray:
        """Byte length of each record's image (0 = none); zeros when the file has no images."""
        parts = []
        for group, size in zip(self._h5, self.sizes):
            if "image_mask" in group:
                parts.append(group["image_mask"][:].astype(np.int64))
            elif "image" in group:
                parts.append(np.array([len(blob) for blob in group["image"][:]], dtype=np.int64))
            else:
                parts.append(np.zeros(size, dtype=np.int64))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    @cached_property
    def has_images(self) -> bool:
        return bool((self.image_sizes > 0).any())

    def image_bytes(self, i: int) -> bytes | None:
        """The stored photo of record i (encoded, usually JPEG), or None."""
        group, j = self._locate(i)
        if "image" not in group:
            return None
        image = group["image"]
        if image.ndim == 2:  # CLIBD layout: zero-padded bytes, true length in image_mask
            length = int(group["image_mask"][j])
            return image[j, :length].tobytes() if length else None
        blob = image[j]
        return blob.tobytes() if len(blob) else None

    def _locate(self, i: int) -> tuple[h5py.Group, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"record {i} out of range for split {self.name!r} of "
                             f"{counted(len(self), 'record')}")
        k = bisect.bisect_right(self._offsets, i) - 1
        return self._h5[k], i - self._offsets[k]

    def _ranges(self, start: int, stop: int):
        for group, lo, size in zip(self._h5, self._offsets, self.sizes):
            a, b = max(start - lo, 0), min(stop - lo, size)
            if a < b:
                yield group, a, b


def _reopen_split(path: str, name: str) -> Split:
    return open_dataset(path).split(name)


def in_listing_order(names: Mapping[str, object]) -> list[tuple[str, object]]:
    """Items in the canonical split order (BIOSCAN-5M, CLIBD 1M, CLIBD metasplits, others)."""
    rank = {name: i for i, name in enumerate(LISTING_ORDER)}
    return sorted(names.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0]))


def _stored(group: h5py.Group, field: str, lo: int, hi: int) -> list[bytes]:
    """Values ``lo:hi`` of ``field`` as the file holds them (strings undecoded; a field it lacks as empty)."""
    if field not in group:
        return [b""] * (hi - lo)
    dataset = group[field]
    values = dataset[lo:hi].tolist()
    return values if h5py.check_string_dtype(dataset.dtype) or dataset.dtype.kind == "S" else \
        [str(value).encode() for value in values]


def _read_column(dataset: h5py.Dataset, lo: int, hi: int) -> list:
    if dataset.dtype.kind == "S":  # CLIBD files: fixed-length byte strings
        return [value.decode("utf-8", "replace") for value in dataset[lo:hi]]
    if h5py.check_string_dtype(dataset.dtype):
        return dataset.asstr(errors="replace")[lo:hi].tolist()
    return dataset[lo:hi].tolist()


def _label(group: h5py.Group, rank: str, j: int) -> str | None:
    if rank not in group:
        return None
    value = _read_column(group[rank], j, j + 1)[0]
    return None if is_missing_label(value) else value


def _group_length(path: Path, group: h5py.Group) -> int:
    lengths = {name: item.shape[0] for name, item in group.items()
               if isinstance(item, h5py.Dataset) and (name in FIELDS or name == "image_mask")}
    if len(set(lengths.values())) > 1:
        raise ClibdError(f"{path}: group {group.name} has fields of different lengths "
                         f"({', '.join(f'{k}={v}' for k, v in sorted(lengths.items()))})")
    return next(iter(lengths.values()), 0)

