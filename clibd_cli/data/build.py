"""Turning a record source (BIOSCAN CSV/TSV, FASTA) into a dataset file, in two streaming passes.

Pass 1 reads every record once, keeping a few bytes per record (an id hash, the species and
the split): it checks barcodes, finds repeated ids and empty inputs before anything is
written, and decides the splits (the source's own column, the released partition files, or
the CLIBD protocol of :mod:`clibd_cli.data.splits`). Pass 2 reads the records again, loads
their photos on a thread pool and streams everything into a :class:`DatasetWriter`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from array import array
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
from tqdm import tqdm

from clibd_cli.data.splits import BIOSCAN_5M_SPLITS, CLIBD_1M_SPLITS, PROTOCOL_NAME, clibd_partition
from clibd_cli.data.store import Record
from clibd_cli.data.store_writer import DatasetWriter
from clibd_cli.io.images import ImageError, stored_photo
from clibd_cli.io.lineages import check_record
from clibd_cli.io.sequences import MAX_LENGTH, NUCLEOTIDES, clean_barcode
from clibd_cli.io.streams import open_text, reading
from models.config import RANKS
from models.errors import ClibdError, counted

log = logging.getLogger("clibd")

_DNA = re.compile(f"[{re.escape(NUCLEOTIDES)}]+")
EXAMPLES = 5  # problems listed by name in warnings


class SourceRecord(NamedTuple):
    """A record as a source yields it: where it is, its id, its data, its split, its photo."""

    line: int
    key: str  # the id that must be unique and that partition files list
    record: Record  # record.image stays None unless the source holds the bytes itself
    split: str | None = None  # the source's own split (BIOSCAN-5M); None = decided here
    image_paths: tuple[Path, ...] = ()  # candidate photo files, the first that exists is used
    above: dict[str, str] | None = None  # its names at ranks above order (io.lineages.RANKS_ABOVE_ORDER)

    def check(self, source: Source) -> None:
        """Refuse it at its line of ``source``: an empty key, or a key or name with a tab or newline
        (``clibd_cli/io/lineages.py::check_record``)."""
        names = {rank: getattr(self.record, rank) for rank in (*RANKS, "dna_bin")}
        check_record(f"{source.path}:{self.line}", source.key_name, self.key, {**names, **(self.above or {})})


class Source(Protocol):
    """What :func:`prepare_dataset` needs from an input format."""

    path: Path
    format: str
    key_name: str  # what the key is called in messages: processid, sampleid, id
    has_splits: bool  # True when records carry their split (BIOSCAN-5M)

    def records(self) -> Iterator[SourceRecord]: ...


@dataclass
class Problems:
    """Counted input problems, each with its first few examples."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if len(self.examples.setdefault(kind, [])) < EXAMPLES:
            self.examples[kind].append(example)

    def report(self, kind: str, noun: str, what: str) -> None:
        """One warning: how many of ``noun`` had the problem ``kind``, ``what`` was done, examples."""
        if self.counts.get(kind):
            log.warning("%s %s, e.g. %s", counted(self.counts[kind], noun), what,
                        "; ".join(self.examples[kind]))


def detect_format(path: str | Path) -> str:
    """``fasta``, ``bioscan-5m`` or ``bioscan-1m`` from the first line of ``path`` that is not
    blank (the FASTA reader skips blank lines before the first header too). A BOLD TSV, whose
    header has a ``sampleid`` column as BIOSCAN-1M's has, is told before this, by
    :func:`clibd_cli.data.bold.is_bold_table` (that module builds on this one)."""
    with reading(path), open_text(path) as handle:
        first = next((line for line in (text.lstrip("\ufeff") for text in handle) if line.strip()), "")
    if first[:1] in (">", "@"):
        return "fasta"
    if {"nucraw", "sampleid", "image_file"} & set(first.strip().split("\t")):
        return "bioscan-1m"
    if {"dna_barcode", "processid"} & set(first.strip().split(",")):
        return "bioscan-5m"
    what = "it is empty" if not first else f"first line {first.strip()[:60]!r}"
    raise ClibdError(f"{path}: cannot tell the input format ({what}); expected FASTA/FASTQ, a BIOSCAN-5M "
                     "CSV (processid, dna_barcode columns), a BIOSCAN-1M TSV (sampleid, nucraw) or a "
                     "BOLD TSV (processid, nuc or nucleotides); "
                     "give --format")


def normalize_barcode(seq: str) -> str | None:
    """The barcode as every command reads it (upper case, RNA's U as T, alignment gaps dropped:
    ``io.sequences.clean_barcode``), or None if empty, gaps only or not DNA."""
    seq = seq.strip().upper()
    return (clean_barcode(seq) or None) if len(seq) <= MAX_LENGTH and _DNA.fullmatch(seq) else None


def prepare_dataset(source: Source, output: str | Path, *, partition: dict[str, str] | None = None,
                    seed: int = 0, strict: bool = False, images: bool = False, workers: int = 4,
                    resize: int | None = None, progress: bool = False, attrs: dict | None = None) -> dict:
    """Write ``source`` to the dataset file ``output``; returns the summary stored in it.

    Splits come from the source (``has_splits``), else from ``partition`` (id -> CLIBD split),
    else from the CLIBD protocol with ``seed``. Records with an empty or non-nucleotide barcode
    are counted and skipped (``strict``: ClibdError). With ``images``, photos are read on
    ``workers`` threads, checked, and stored as ``io.images.stored_photo`` gives them (JPEG, PNG
    and TIFF as their original bytes, other formats re-encoded as JPEG; ``resize``: shorter side
    scaled down to that many pixels and re-encoded as JPEG); missing or unreadable ones are
    counted and their records kept without a photo.
    """
    problems = Problems()
    split_names, splits = _scan(source, partition, seed, strict, problems, progress)
    attrs = {**(attrs or {}), "input_format": source.format,
             "skipped_barcodes": problems.counts.get("barcode", 0)}
    if source.has_splits:
        attrs["split_protocol"] = f"{source.format} split column"
    elif partition is not None:
        attrs["split_protocol"] = "clibd-1m released partition files"
    else:
        attrs.update(split_protocol=PROTOCOL_NAME, seed=seed)
    with DatasetWriter(output, attrs, images=images) as writer:
        kept = int((splits >= 0).sum())
        with _progress(progress, kept, "writing") as bar:
            for item, split in _with_photos(source, splits, images, workers, resize, problems):
                writer.add(split_names[split], item.record)
                bar.update()
        writer.attrs.update(missing_images=problems.counts.get("missing", 0),
                            unreadable_images=problems.counts.get("unreadable", 0))
    problems.report("barcode", "record", "skipped for an empty or non-nucleotide barcode")
    problems.report("missing", "photo", "not found (records kept without photo)")
    problems.report("unreadable", "photo", "unreadable (records kept without photo)")
    return writer.summary()


def _scan(source: Source, partition: dict[str, str] | None, seed: int, strict: bool, problems: Problems,
          progress: bool) -> tuple[tuple[str, ...], np.ndarray]:
    """Pass 1: check every record and decide its split; -1 marks records to skip."""
    keys, lines, species, splits = array("Q"), array("q"), array("q"), array("b")
    species_codes: dict[str, int] = {}
    names = BIOSCAN_5M_SPLITS if source.has_splits else CLIBD_1M_SPLITS
    split_code = {name: code for code, name in enumerate(names)}
    unlisted = Problems()
    with _progress(progress, None, "checking") as bar:
        for item in source.records():
            item.check(source)
            keys.append(_key_hash(item.key))
            lines.append(item.line)
            bar.update()
            if normalize_barcode(item.record.barcode) is None:
                what = _barcode_problem(item.record.barcode)
                if strict:
                    raise ClibdError(f"{source.path}:{item.line}: {source.key_name} {item.key!r}: {what} "
                                     "(without --strict such records are counted and skipped)")
                problems.add("barcode", f"line {item.line} ({what})")
                species.append(-2)
                splits.append(-1)
                continue
            label = item.record.species
            species.append(species_codes.setdefault(label, len(species_codes)) if label else -1)
            if source.has_splits:
                splits.append(split_code[item.split])
            elif partition is not None:
                listed = partition.get(item.key)
                if listed is None:
                    unlisted.add("unlisted", f"{item.key!r} (line {item.line})")
                splits.append(split_code.get(listed, -1))
    if not keys:
        raise ClibdError(f"{source.path}: no records")
    _check_unique(source, np.frombuffer(keys, dtype=np.uint64), lines)
    if problems.counts.get("barcode", 0) == len(keys):
        raise ClibdError(f"{source.path}: no usable barcode in {counted(len(keys), 'record')} "
                         f"(e.g. {problems.examples['barcode'][0]})")
    if unlisted.counts:
        raise ClibdError(f"{source.path}: {counted(unlisted.counts['unlisted'], source.key_name)} in no "
                         f"partition file, e.g. {', '.join(unlisted.examples['unlisted'])}")
    if source.has_splits or partition is not None:
        return names, np.frombuffer(splits, dtype=np.int8)
    if not species_codes:
        usable = len(keys) - problems.counts.get("barcode", 0)
        log.warning("%s: no record names a species (SINTAX ;tax=, lineage headers or --taxonomy): %s to no_split, "
                    "unlabelled, for pretraining only", source.path,
                    "its one record goes" if usable == 1 else f"all {counted(usable, 'record')} go")
    return names, clibd_partition(np.frombuffer(species, dtype=np.int64), list(species_codes),
                                  np.frombuffer(keys, dtype=np.uint64), seed)


def _with_photos(source: Source, splits: np.ndarray, images: bool, workers: int, resize: int | None,
                 problems: Problems) -> Iterator[tuple[SourceRecord, int]]:
    """Pass 2: the kept records in input order with their split and, when asked, their photo."""
    kept = _kept(source, splits)
    if not images:
        yield from kept
        return
    in_flight = max(64, 8 * workers)  # photos read ahead: enough to keep the threads busy, bounded memory
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clibd-photo") as pool:
        pending: deque[tuple[SourceRecord, int, Future | None]] = deque()
        for item, split in kept:
            wanted = item.record.image is None and item.image_paths
            photo = pool.submit(_read_photo, item.image_paths, resize) if wanted else None
            pending.append((item, split, photo))
            if len(pending) >= in_flight:
                yield _collect(*pending.popleft(), problems)
        while pending:
            yield _collect(*pending.popleft(), problems)


def _kept(source: Source, splits: np.ndarray) -> Iterator[tuple[SourceRecord, int]]:
    for i, item in enumerate(source.records()):
        if splits[i] >= 0:
            item.record.barcode = normalize_barcode(item.record.barcode)
            yield item, int(splits[i])


def _collect(item: SourceRecord, split: int, photo: Future | None,
             problems: Problems) -> tuple[SourceRecord, int]:
    if photo is not None:
        item.record.image, problem = photo.result()
        if problem:
            problems.add(*problem)
    return item, split


def _read_photo(paths: tuple[Path, ...], resize: int | None) -> tuple[bytes | None, tuple[str, str] | None]:
    """(bytes, None), or (None, (problem kind, example)) for a missing or unusable photo."""
    for path in paths:
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            return None, ("unreadable", f"{path} ({exc.strerror or exc})")
        try:
            return stored_photo(data, str(path), resize), None
        except ImageError as exc:
            return None, ("unreadable", str(exc))
    return None, ("missing", str(paths[0]))


def _check_unique(source: Source, keys: np.ndarray, lines: array) -> None:
    order = np.argsort(keys, kind="stable")
    repeats = np.flatnonzero(keys[order][1:] == keys[order][:-1])
    if not repeats.size:
        return
    first, second = int(order[repeats[0]]), int(order[repeats[0] + 1])
    ids = {i: item.key for i, item in enumerate(source.records()) if i in (first, second)}
    if ids[first] == ids[second]:  # (a 64-bit hash collision would be the only other reason)
        raise ClibdError(f"{source.path}:{lines[second]}: duplicate {source.key_name} {ids[second]!r} "
                         f"(first on line {lines[first]}); {repeats.size} repeated {source.key_name}s in all")


def _key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def _barcode_problem(seq: str) -> str:
    seq = seq.strip().upper()
    if not seq:
        return "empty barcode"
    if not clean_barcode(seq):
        return "alignment gaps only"
    if len(seq) > MAX_LENGTH:
        return f"barcode over {MAX_LENGTH:,} characters (the cap; COI-5P barcodes are under 2 kb)"
    odd = sorted(set(seq) - set(NUCLEOTIDES))
    return f"non-nucleotide barcode (characters {''.join(odd[:10])!r})"


def _progress(enabled: bool, total: int | None, what: str) -> tqdm:
    return tqdm(total=total, disable=not enabled, unit=" records", desc=what, file=sys.stderr, leave=False,
                mininterval=0.5)
