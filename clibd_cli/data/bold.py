"""BOLD public data TSV as a record source: barcodes and their taxonomy in one table.

Both layouts BOLD's downloads have are read (a header names the columns; order is free):

* the v4 public data portal and API (``combined``/``specimen`` TSV): ``processid``,
  ``sampleid``, ``order_name``, ``family_name``, ``genus_name``, ``species_name``,
  ``bin_uri``, ``markercode``, ``nucleotides``;
* the v5 portal (BCDM): ``processid``, ``sampleid``, ``order``, ``family``, ``genus``,
  ``species``, ``bin_uri``, ``marker_code``, ``nuc``.

Ranks above order (``phylum_name``, ``class_name``; ``phylum``, ``class``, ``kingdom``) are
read for the index's lineages above order. Names are read as in other references (``Aedes sp.`` and
``Aedes cf. albopictus`` name no species: ``clibd_cli/io/lineages.py::named``; BOLD's interim names,
``Megaselia sp. BOLD:ACZ1234``, do). Alignment gaps in the sequence are dropped. Where a
marker column exists, only ``COI-5P`` records are read (BOLD mixes markers; the others are counted and reported).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from clibd_cli.data.build import SourceRecord
from clibd_cli.data.store import Record
from clibd_cli.io.lineages import RANKS_ABOVE_ORDER, Provisional
from clibd_cli.io.streams import open_text, reading
from clibd_cli.io.tables import read_rows
from models.config import RANKS, is_missing_label
from models.errors import counted

log = logging.getLogger("clibd")
MARKER = "COI-5P"
_LAYOUTS = (  # (sequence, marker, rank suffix)
    ("nucleotides", "markercode", "_name"),
    ("nuc", "marker_code", ""),
)


def is_bold_table(source: str | Path) -> bool:
    """Whether a file's first line is a BOLD TSV header (``processid`` and a sequence column)."""
    with reading(source), open_text(source) as handle:
        header = handle.readline().rstrip("\r\n").lstrip("\ufeff").split("\t")
    return "processid" in header and any(layout[0] in header for layout in _LAYOUTS)


class BoldSource:
    """Records of a BOLD TSV, keyed by ``processid``."""

    format = "bold"
    key_name = "processid"
    has_splits = False

    def __init__(self, path: str | Path, report: bool = True):
        self.path = Path(path)
        self._reported = not report  # the warnings below are given once, by the first complete reading

    def records(self) -> Iterator[SourceRecord]:
        columns, rows = read_rows(self.path, required=("processid",))
        sequence, marker, suffix = next(layout for layout in _LAYOUTS if layout[0] in columns)
        ranks = {rank: columns.get(rank + suffix) for rank in RANKS}
        higher = {rank: columns[rank + suffix] for rank in RANKS_ABOVE_ORDER if rank + suffix in columns}
        other_markers: dict[str, int] = {}
        provisional = Provisional()
        for line, fields in rows:
            kind = fields[columns[marker]].strip() if marker in columns else MARKER
            if kind != MARKER:
                other_markers[kind] = other_markers.get(kind, 0) + 1
                continue
            labels = provisional.named(line, {rank: fields[i].strip() for rank, i in ranks.items() if i is not None})
            barcode = fields[columns[sequence]].replace("-", "").strip().upper()
            record = Record(fields[columns["processid"]].strip(), barcode=barcode,
                            sampleid=fields[columns["sampleid"]].strip() if "sampleid" in columns else "",
                            dna_bin=_label(fields[columns["bin_uri"]]) if "bin_uri" in columns else None,
                            **{rank: labels.get(rank) for rank in RANKS})
            above = {rank: name for rank, i in higher.items() if (name := _label(fields[i]))}
            yield SourceRecord(line, record.processid, record, above=above or None)
        if not self._reported:
            self._reported = True
            provisional.warn(str(self.path))
            if other_markers:
                shown = ", ".join(f"{n} {kind or 'without marker'}" for kind, n in sorted(other_markers.items()))
                log.warning("%s: %s of other markers than %s skipped (%s)", self.path,
                            counted(sum(other_markers.values()), "record"), MARKER, shown)


def _label(cell: str) -> str | None:
    value = cell.strip()
    return None if is_missing_label(value) else value
