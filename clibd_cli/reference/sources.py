"""Reference records for ``clibd index``: labelled barcodes, photos or taxonomy label strings,
the held-out queries of ``--calibrate-on``, and their embedding.

Sources (README "Reference indexes and classification"): FASTA/FASTQ with SINTAX ``;tax=``,
QIIME 2/UNITE or RDP lineage headers or a ``--taxonomy`` table (``clibd_cli/data/fasta.py``), a
BOLD public data TSV (``clibd_cli/data/bold.py``), photo files/folders with a ``--taxonomy``
table keyed by file stem, or a dataset HDF5 (``clibd prepare`` output or the CLIBD authors'
files) with ``--split`` names.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clibd_cli.embedding.embedder import Embedder, batched
from clibd_cli.embedding.shards import (CHUNK_BATCHES, Part, describe_inputs, describe_photos, embed_chunks,
                                        read_chunks)
from clibd_cli.io.images import PhotoIds, load_photos
from clibd_cli.io.outputs import UsageError
from clibd_cli.io.lineages import RANKS_ABOVE_ORDER
from clibd_cli.io.sequences import checked_barcode
from clibd_cli.io.streams import display_name, is_hdf5
from models.config import RANKS
from models.errors import ClibdError, counted

if TYPE_CHECKING:
    from clibd_cli.data.bold import BoldSource
    from clibd_cli.data.fasta import FastaSource
    from clibd_cli.distributed import World

log = logging.getLogger("clibd")


@dataclass
class References:
    """Reference records of one modality, with one label (or None) per rank and record."""

    modality: str
    ids: list[str] = field(default_factory=list)
    labels: dict[str, list[str | None]] = field(default_factory=lambda: {r: [] for r in RANKS})
    items: list = field(default_factory=list)  # barcodes, label strings, or photo loaders
    skipped: list[str] = field(default_factory=list)  # "ID: why" of each record left out
    above: dict[str, Counter] = field(default_factory=dict)  # order -> records naming (rank, name) above it
    photos: list = field(default_factory=list)  # the photo sources as embedding/shards.py describes them

    def add(self, record_id: str, ranks: dict[str, str | None], item) -> None:
        self.ids.append(record_id)
        for rank in RANKS:
            self.labels[rank].append(ranks.get(rank) or None)
        self.items.append(item)
        order = ranks.get(RANKS[0])
        if order:
            self.above.setdefault(order, Counter()).update(
                (rank, ranks[rank]) for rank in RANKS_ABOVE_ORDER if ranks.get(rank))

    def lineages_above_order(self) -> dict[str, dict[str, str]]:
        """Per order, the name most of its records carry at each rank above it (domain to class),
        for the index manifest's ``above_order`` (``classification.taxonomy.ReferenceTaxonomy``)."""
        out: dict[str, dict[str, str]] = {}
        for order, counts in sorted(self.above.items()):
            ranks: dict[str, str] = {}
            for (rank, name), _ in counts.most_common():  # ties: the name read first
                ranks.setdefault(rank, name)
            if ranks:
                out[order] = {rank: ranks[rank] for rank in RANKS_ABOVE_ORDER if rank in ranks}
        return out

    def __len__(self) -> int:
        return len(self.ids)


def read_references(inputs: Sequence[str], modality: str, *, taxonomy: str | None = None,
                    splits: Sequence[str] = (), what: str = "reference records") -> References:
    """Collect labelled reference records of ``modality`` from FASTA, photo or HDF5 inputs
    (``splits`` of the HDF5 ones; refused when none is a dataset HDF5); ``what`` they are, for
    the messages."""
    if splits and not any(is_hdf5(source) for source in inputs):
        raise UsageError(f"splits {', '.join(splits)}: splits are chosen in a dataset HDF5 (clibd prepare), "
                         f"and {', '.join(inputs)} is none")
    refs = References(modality)
    for source in inputs:
        if is_hdf5(source):
            _from_dataset(refs, source, splits or ("all",))
        elif modality == "image":
            _from_photos(refs, source, taxonomy)
        elif Path(source).is_dir():
            raise UsageError(f"{source}: is a directory, expected a file (a folder of reference photos goes "
                             "with --modality image and --taxonomy, or with --images beside their barcodes)")
        else:
            _from_fasta(refs, source, taxonomy)
    if modality == "text":
        refs = _distinct_lineages(refs)
    if not refs:
        hint = " (no photo is named after an id of the taxonomy table)" if modality == "image" else ""
        if refs.skipped:  # why, or the user is left guessing
            hint = f": {len(refs.skipped)} skipped, e.g. {refs.skipped[0]}"
        raise ClibdError(f"no usable reference records in {', '.join(inputs)}{hint}")
    unlabelled = [i for i in range(len(refs)) if not any(refs.labels[r][i] for r in RANKS)]
    if len(unlabelled) == len(refs):
        raise ClibdError(f"no reference record carries a taxonomy from {RANKS[0]} to {RANKS[-1]}; "
                         + ("the --taxonomy table labels none of them" if taxonomy else
                            "give SINTAX ;tax= headers or --taxonomy"))
    if unlabelled and taxonomy is None:  # a table's unlabelled rows and missing ids are warned about as it is read
        log.warning("%s naming no rank from %s to %s, %d in all (e.g. %s): kept without a label (a ;tax= header "
                    "or --taxonomy row from %s down labels one)", what, RANKS[0], RANKS[-1], len(unlabelled),
                    ", ".join(refs.ids[i] for i in unlabelled[:3]) + (" …" if len(unlabelled) > 3 else ""), RANKS[0])
    if refs.skipped:
        log.warning("%s skipped (no usable barcode or photo), %d in all: %s%s", what, len(refs.skipped),
                    ", ".join(refs.skipped[:3]), " …" if len(refs.skipped) > 3 else "")
    if len(set(refs.ids)) != len(refs.ids):
        seen, dupes = set(), []
        for record_id in refs.ids:
            if record_id in seen:
                dupes.append(record_id)
            seen.add(record_id)
        where = _lines_of([s for s in inputs if not is_hdf5(s)] if modality != "image" else [], set(dupes[:5]))
        shown = [f"{d} ({', '.join(where[d])})" if d in where else d for d in dict.fromkeys(dupes[:5])]
        raise ClibdError(f"reference record ids must be unique; repeated: {', '.join(shown)}"
                         f"{' …' if len(dupes) > 5 else ''}")
    return refs


def refuse_indexed(refs: References, indexed: Sequence[str], inputs: Sequence[str]) -> None:
    """ClibdError where a reference record of ``inputs`` has an id the index holds already (``indexed``),
    naming its ``FILE:LINE`` in a FASTA or BOLD TSV input (else the inputs); ``clibd index --append``
    asks before it embeds them. Ids repeated among the records were refused by :func:`read_references`."""
    present = set(indexed)
    again = [record_id for record_id in refs.ids if record_id in present]
    if not again:
        return
    first = again[0]
    where = _lines_of([s for s in inputs if not is_hdf5(s)] if refs.modality != "image" else [], {first})
    more = "" if len(again) == 1 else (f" (and {counted(len(again) - 1, 'other record')}: {', '.join(again[1:4])}"
                                      f"{' …' if len(again) > 4 else ''})")
    raise ClibdError(f"{where[first][0] if first in where else ', '.join(inputs)}: id {first} is already in the "
                     f"index{more}; rename or drop them, or rebuild the index without --append")


def _lines_of(inputs: Sequence[str], ids: set[str]) -> dict[str, list[str]]:
    """``FILE:LINE`` of every record of ``ids`` in FASTA or BOLD TSV ``inputs`` (read again: only
    for the message of a failed build)."""
    found: dict[str, list[str]] = {}
    for source in inputs:
        for entry in _barcode_source(source, report=False).records():
            if entry.key in ids:
                found.setdefault(entry.key, []).append(f"{display_name(source)}:{entry.line}")
    return found


def read_held_out(inputs: tuple[str, ...], splits: tuple[str, ...], modality: str, taxonomy: str | None,
                  reference_ids: list[str]) -> References | None:
    """The ``--calibrate-on`` queries (``References``), or None; refused if any is a reference record."""
    if not inputs:
        return None
    try:
        found = read_references(list(inputs), modality, taxonomy=taxonomy, splits=splits,
                                what="held-out (--calibrate-on) queries")
    except ClibdError as exc:
        raise type(exc)(f"--calibrate-on: {exc}") from None
    shared = set(found.ids) & set(reference_ids)
    if shared:
        dataset = any(is_hdf5(p) for p in inputs)
        hint = " (choose the held-out splits with --calibrate-split)" if dataset else ""
        raise ClibdError(f"--calibrate-on: {counted(len(shared), 'held-out query', 'held-out queries')} "
                         f"{'is a reference record' if len(shared) == 1 else 'are reference records'} too "
                         f"(e.g. {min(shared)}); calibrating on them would overstate the confidences{hint}")
    return found


def embed_references(embedder: Embedder, refs: References, folder: Path, world: World,
                     progress: bool = False) -> tuple[np.ndarray, list[int]] | None:
    """Vectors of the usable reference records and their positions in ``refs`` (an unreadable
    photo is left out), on process 0; None on the others.

    Embedded in chunks kept in ``folder`` until the caller discards it, shared among the processes
    of ``world`` and resumed after an interruption (``clibd_cli/embedding/shards.py``).
    """
    size = embedder.batch_size * CHUNK_BATCHES
    digest = hashlib.sha256()
    for record_id, item in zip(refs.ids, refs.items):
        digest.update(f"{record_id}\t{item if isinstance(item, str) else ''}\n".encode())
    # a photo is digested by its record id alone: its file (or dataset) tells a rewritten one apart
    fingerprint = {"command": "index", "modality": refs.modality, "records": digest.hexdigest(),
                   "photos": refs.photos, "model": embedder.model.fingerprint(), "precision": embedder.precision,
                   "chunk_records": size}
    chunks = (partial(_embed_chunk, embedder, refs, range(start, min(start + size, len(refs))))
              for start in range(0, len(refs), size))
    files = embed_chunks(chunks, folder, fingerprint, world, progress)
    if not world.is_main:
        return None
    vectors = np.empty((len(refs), embedder.model.embed_dim), np.float32)  # filled in place: no 2nd copy
    keep: list[int] = []
    for part in read_chunks(files):
        vectors[len(keep) : len(keep) + len(part["keep"])] = part["vectors"]
        keep.extend(part["keep"].tolist())
    return vectors[: len(keep)], keep


def _embed_chunk(embedder: Embedder, refs: References, positions: range) -> Part:
    """The vectors of the usable records at ``positions`` and where they are (``keep``)."""
    photos = refs.modality == "image"
    encode = {"dna": embedder.barcodes, "text": embedder.labels, "image": embedder.images}[refs.modality]
    vectors, keep = [np.empty((0, embedder.model.embed_dim), np.float32)], []
    for batch in batched(positions, embedder.batch_size if photos else len(positions)):
        items = [refs.items[i] for i in batch]
        if refs.modality == "text":  # the model's own label string (upstream models: not_classified)
            items = [embedder.model.label_string({rank: refs.labels[rank][i] for rank in RANKS}) for i in batch]
        if photos:  # decoded and shrunk to the model's input one at a time
            batch, items = load_photos(zip(batch, items), embedder.pixels, skipped="reference skipped")
        if items:
            vectors.append(encode(items))
            keep.extend(batch)
    return {"vectors": np.concatenate(vectors), "keep": np.asarray(keep, dtype=np.int64)}


def _barcode_source(source: str, taxonomy: str | None = None,
                    report: bool = True) -> BoldSource | FastaSource:
    """The record source of a barcode file: a BOLD TSV (``clibd_cli/data/bold.py``) by its header,
    else FASTA/FASTQ labelled by its headers or ``taxonomy``; without ``report``, with no warnings."""
    from clibd_cli.data.bold import BoldSource, is_bold_table
    from clibd_cli.data.fasta import FastaSource

    return BoldSource(source, report) if is_bold_table(source) else FastaSource(source, taxonomy, report=report)


def _from_fasta(refs: References, source: str, taxonomy: str | None) -> None:
    """Records of a FASTA/FASTQ file, or of a BOLD TSV (``clibd_cli/data/bold.py``)."""
    reader = _barcode_source(source, taxonomy)
    for entry in reader.records():
        entry.check(reader)
        record = entry.record
        barcode, problem = checked_barcode(record.barcode)
        if problem:
            refs.skipped.append(f"{entry.key} ({problem})")
            continue
        ranks = {r: getattr(record, r) for r in RANKS}
        refs.add(entry.key, {**ranks, **(entry.above or {})}, barcode if refs.modality == "dna" else _label(ranks))


def _from_photos(refs: References, source: str, taxonomy: str | None) -> None:
    from clibd_cli.io.images import check_photo_inputs, find_images
    from clibd_cli.io.tables import read_taxonomy

    check_photo_inputs([source], "--modality image indexes photos",
                       "photos of barcodes' specimens go with --images")
    if taxonomy is None:
        raise UsageError("photo references need --taxonomy (a TSV with an id column = photo file stem)")
    table = read_taxonomy(taxonomy)
    paths = find_images([source])
    photos = PhotoIds(paths)
    refs.photos.append(describe_photos(Path(source), [photos[i] for i in table if i in photos]))  # those used
    for record_id, ranks in table.items():
        path = photos.match(record_id)
        if path is None:
            refs.skipped.append(f"{record_id} (no photo named after it)")
            continue
        refs.add(record_id, ranks, _photo_loader(path))
    _warn_unused_photos(paths, photos, table)


def _warn_unused_photos(paths: list[Path], photos: PhotoIds, table: dict) -> None:
    """Name the photos a photo reference leaves out: second photos of an id (``ID.jpg`` and ``ID.png``)
    and those named after an id in another case (``io.images.warn_photo_pairs``), and those named
    after no id of the taxonomy table."""
    from clibd_cli.io.images import warn_photo_pairs, warn_unnamed_photos

    warn_photo_pairs(photos, table, "the others left out")
    warn_unnamed_photos(paths, table, "left out, named after no id of the taxonomy table")


def _from_dataset(refs: References, source: str, splits: Sequence[str]) -> None:
    from clibd_cli.data.store import open_dataset

    dataset = open_dataset(source)
    part = dataset.splits_union(splits)
    if refs.modality == "image" and not part.has_images:
        raise ClibdError(f"{source}: split {part.name} has no photos; use --modality dna")
    if refs.modality == "image":
        refs.photos += describe_inputs([source])
    ids = part.ids()
    columns = {rank: part.column(rank) for rank in RANKS}
    barcodes = part.column("barcode") if refs.modality == "dna" else None
    photo_sizes = part.image_sizes if refs.modality == "image" else None
    for i, record_id in enumerate(ids):
        ranks = {rank: columns[rank][i] for rank in RANKS}
        if refs.modality == "image" and photo_sizes[i] == 0:
            refs.skipped.append(f"{record_id} (no photo)")
            continue
        if refs.modality == "dna":
            item, problem = checked_barcode(barcodes[i])
            if problem:
                refs.skipped.append(f"{record_id} ({problem})")
                continue
        elif refs.modality == "image":
            item = _stored_photo_loader(part, i, f"{source}:{record_id}")
        else:
            item = _label(ranks)
        refs.add(record_id, ranks, item)


def _distinct_lineages(refs: References) -> References:
    """Text references: one record per distinct label string (the string is its id)."""
    out, seen = References("text", skipped=refs.skipped, above=refs.above), set()
    for i, text in enumerate(refs.items):
        if text and text not in seen:
            seen.add(text)
            out.add(text, {r: refs.labels[r][i] for r in RANKS}, text)
    return out


def _label(ranks: dict[str, str | None]) -> str:
    from models.tokenizers import label_string

    return label_string(ranks)


def _photo_loader(path: Path) -> Callable:
    from clibd_cli.io.images import load_image

    return lambda: load_image(path)


def _stored_photo_loader(part, i: int, name: str) -> Callable:
    from clibd_cli.io.images import load_image

    return lambda: load_image(part.image_bytes(i), name)
