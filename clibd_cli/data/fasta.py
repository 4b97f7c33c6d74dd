"""Users' own barcodes as a record source: FASTA/FASTQ with taxonomy, plus optional photos.

Taxonomy comes from SINTAX headers (``>ID;tax=o:Diptera,...,s:Aedes_albopictus;``), UNITE,
QIIME 2 or RDP lineage headers (``clibd_cli/io/lineages.py``), or from a ``--taxonomy`` table
(``id`` + rank columns, a lineage column or headerless ``ID<TAB>lineage`` lines:
``clibd_cli/io/tables.py::read_taxonomy``), the table winning where both
exist (with a warning naming the records whose header lineage disagrees). Photos are matched to
records by file name: ``ID.jpg`` (also ``ID.anything.jpg``) anywhere under the image folder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

from clibd_cli.data.build import SourceRecord
from clibd_cli.data.store import Record
from clibd_cli.io.images import PhotoIds, find_images, warn_photo_pairs
from clibd_cli.io.lineages import (RANKS_ABOVE_ORDER, Provisional, UnknownRanks, header_lineage, parse_sintax_header,
                                   sintax_lineage)
from clibd_cli.io.sequences import read_sequences
from clibd_cli.io.tables import read_taxonomy
from models.config import RANKS
from models.errors import ClibdError, counted

log = logging.getLogger("clibd")


class FastaSource:
    """Records of a FASTA/FASTQ file; ids are the header's first word (before any ``;``)."""

    format = "fasta"
    key_name = "id"
    has_splits = False

    def __init__(self, path: str | Path, taxonomy: str | Path | None = None,
                 images: Sequence[str | Path] = (), report: bool = True):
        self.path = Path(path)
        self.taxonomy = read_taxonomy(taxonomy) if taxonomy else None
        self.taxonomy_path = taxonomy
        self.images = images
        self.photo_paths = find_images(images)
        self.photos = PhotoIds(self.photo_paths)
        self._reported = not report  # the warnings below are given once, by the first complete reading

    def records(self) -> Iterator[SourceRecord]:
        """The records in file order; ClibdError at the end if a taxonomy table names none of them and
        none carries a taxonomy in its header either (the table's ids are not the FASTA's); a
        warning for rank prefixes that are none of d, k, p, c, o, f, g, s (``x:Foo``, ``t__``), one for
        provisional identifications (``s:Aedes_cf._albopictus``: :class:`clibd_cli.io.lineages.Provisional`),
        one for records whose header lineage the table's contradicts."""
        untaxed, bare, total, matched, first_id = 0, 0, 0, set(), None
        disagree, example = 0, None
        strays, provisional = UnknownRanks(), Provisional()
        for entry in read_sequences(self.path):
            total += 1
            record_id = entry.id
            try:
                ranks, unknown = parse_sintax_header(entry.description)
                ranks = provisional.named(entry.line, ranks)
                lineage = None if ranks else header_lineage(entry.id, entry.description,
                                                             partial(provisional.named, entry.line))
            except ValueError as exc:
                raise ClibdError(f"{self.path}:{entry.line}: {exc}") from None
            if lineage is not None:
                record_id, ranks, more = lineage
                unknown = [*unknown, *more]
            strays.add(entry.line, unknown)
            if self.taxonomy is not None:
                if record_id in self.taxonomy:
                    if _conflict(ranks, self.taxonomy[record_id]):
                        disagree += 1
                        example = example or (record_id, ranks, self.taxonomy[record_id])
                    ranks = self.taxonomy[record_id]
                    provisional.uncount(entry.line)  # the header's names are not this record's
                else:
                    untaxed += 1
                    bare += not ranks
                    first_id = first_id or record_id
            record = Record(record_id, barcode=entry.seq, **{rank: ranks.get(rank) for rank in RANKS})
            photo = self.photos.match(record_id)
            if photo:
                matched.add(record_id)
            above = {rank: ranks[rank] for rank in RANKS_ABOVE_ORDER if ranks.get(rank)}
            yield SourceRecord(entry.line, record_id, record, None, (photo,) if photo else (), above or None)
        if self.taxonomy is not None and total and bare == total:
            raise ClibdError(f"{self.taxonomy_path}: names no record of {self.path} "
                             f"({counted(total, 'record')}, e.g. "
                             f"{first_id!r}); its id column must hold the FASTA ids (a header's first word, "
                             "before any ';')")
        if not self._reported:
            self._reported = True
            if untaxed:
                log.warning("%s not in the taxonomy table (kept with any taxonomy in the header)",
                            counted(untaxed, "record"))
            if disagree:
                record_id, header, table = example
                log.warning("%s: %s whose header lineage disagrees with the taxonomy table, whose lineage is "
                            "used, e.g. %s: header %s, table %s", self.path, counted(disagree, "record"),
                            record_id, _lineage(header), _lineage(table))
            strays.warn(str(self.path))
            provisional.warn(str(self.path))
            seconds = warn_photo_pairs(self.photos, matched, "the others not stored")
            unmatched = sorted(set(self.photos.values()) - {self.photos[key] for key in matched} - seconds)
            if unmatched:
                log.warning("%s matching no record id, e.g. %s", counted(len(unmatched), "photo"),
                            ", ".join(str(path) for path in unmatched[:5]))
            if self.images and total and not matched:
                log.warning("no photo under %s is named after a record id (ID.jpg): the dataset has no photos",
                            ", ".join(map(str, self.images)))


def _conflict(header: dict[str, str], table: dict[str, str | None]) -> bool:
    """Whether a header's lineage names another taxon than the table's at a rank both name."""
    return any(header.get(rank) and table.get(rank) and header[rank] != table[rank] for rank in RANKS)


def _lineage(ranks: dict[str, str | None]) -> str:
    return sintax_lineage({rank: ranks.get(rank) for rank in RANKS})
