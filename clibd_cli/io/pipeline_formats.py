"""``clibd classify --format qiime2|sintax|blast6``: the prediction formats other pipelines read,
and a reader of SINTAX tables (ours and ``vsearch --sintax --tabbedout``).

* ``qiime2``: the taxonomy TSV QIIME 2 imports as ``FeatureData[Taxonomy]``
  (``qiime tools import --type 'FeatureData[Taxonomy]' --input-format TSVTaxonomyFormat``):
  header ``Feature ID<TAB>Taxon<TAB>Confidence``, one row per record, ``Taxon`` the assigned
  ranks (``o__Diptera; f__Culicidae; g__Aedes; s__Aedes_albopictus``, down to the deepest rank
  whose confidence reaches ``--min-confidence``; a rank above it that no reference labels is an
  empty ``f__``) and ``Confidence`` that rank's. A record with
  no assigned rank is ``Unassigned`` with the confidence of its best order; an unreadable one
  ``Unassigned`` with 0. QIIME 2 needs unique feature ids and refuses a file in which no
  taxon is deeper than one rank.
* ``sintax``: exactly ``vsearch --sintax --tabbedout --sintax_cutoff C``: query id, the best
  label and confidence at every rank (``o:Diptera(1.00),...``), strand, and the same lineage
  without confidences cut at the first rank below the cutoff. An unreadable record, and one
  with no support at any rank (a barcode unlike every reference), is its id and three empty
  fields, as vsearch writes a query without hits.
* ``blast6``: BLAST ``-outfmt 6`` (``qaccver saccver pident length mismatch gapopen qstart qend
  sstart send evalue bitscore``), one line per nearest reference record (``--top-k``, default
  1), best first; no line for an unreadable record, a photo, or a record with no support at
  any rank (a barcode unlike every reference), as BLAST writes none for a query without hits. clibd aligns nothing: ``pident`` is 100 × the embedding's cosine
  similarity, the alignment columns describe the whole query (``length`` its bases,
  ``mismatch`` the share the identity implies, no gaps; a record read reverse-complemented has
  ``sstart`` > ``send``, as BLAST writes a minus-strand hit) and ``evalue``/``bitscore`` are -1/0,
  vsearch's ``--blast6out`` values for what it does not compute.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from clibd_cli.io.lineages import SINTAX_RANKS, qiime_taxon, sintax_lineage
from clibd_cli.io.predictions import tsv_line
from clibd_cli.io.streams import display_name, open_text, reading
from models.config import RANKS
from models.errors import ClibdError

PIPELINE_FORMATS = ("qiime2", "sintax", "blast6")
QIIME2_HEADER = ("Feature ID", "Taxon", "Confidence")


def strand(result) -> str:
    """The strand a record was classified on (``-``: read reverse-complemented, as
    ``vsearch --strand both`` reports it); ``+`` where no strand was decided (photos, indexes
    without a sketch)."""
    return result.query.strand or "+"


def supported(result) -> bool:
    """Whether a record has support at some rank: not unreadable, and not a barcode unlike every
    reference (all confidences 0), which vsearch and BLAST would write as a query without hits."""
    return result.prediction is not None and any(result.prediction.confidence.values())


class PipelineWriter:
    """Streams results (``clibd_cli.classification.classifier.Result``) in one of
    ``PIPELINE_FORMATS``; ``blast6`` needs results with ``neighbours``."""

    def __init__(self, handle: TextIO, fmt: str):
        if fmt not in PIPELINE_FORMATS:
            raise ValueError(f"unknown pipeline format {fmt!r}")
        self.handle, self.fmt = handle, fmt
        if fmt == "qiime2":
            handle.write(tsv_line(QIIME2_HEADER))

    def write(self, results: Iterable) -> None:
        """Write results and flush (a reader of a pipe sees each batch as soon as it is done)."""
        rows = {"qiime2": lambda r: [qiime2_row(r)], "sintax": lambda r: [sintax_row(r)],
                "blast6": blast6_rows}[self.fmt]
        for result in results:
            for row in rows(result):
                self.handle.write(tsv_line(row))
        self.handle.flush()


def qiime2_row(result) -> tuple[str, str, str]:
    """``Feature ID, Taxon, Confidence`` of one record."""
    prediction = result.prediction
    if prediction is None:
        return result.query.id, "Unassigned", "0.0000"
    assigned = prediction.assigned
    named = [rank for rank, name in assigned.items() if name]
    if not named:
        coarsest = next((r for r in RANKS if prediction.labels.get(r)), RANKS[0])
        return result.query.id, "Unassigned", f"{prediction.confidence.get(coarsest, 0.0):.4f}"
    return result.query.id, qiime_taxon(assigned), f"{prediction.confidence[named[-1]]:.4f}"


def sintax_row(result) -> tuple[str, str, str, str]:
    """``id, lineage(confidences), strand, lineage cut at the cutoff`` of one record."""
    prediction = result.prediction
    if not supported(result):
        return result.query.id, "", "", ""
    cut, assigned = {}, prediction.assigned
    for rank, name in prediction.labels.items():
        if name is not None and assigned[rank] is None:
            break
        cut[rank] = name
    return result.query.id, prediction.lineage(), strand(result), sintax_lineage(cut)


def blast6_rows(result) -> list[tuple]:
    """BLAST outfmt 6 lines of one record's nearest references (none for an unusable record or
    one without hits)."""
    barcode = result.query.barcode
    if not barcode or not result.neighbours or not supported(result):
        return []
    length = len(barcode)
    rows = []
    for hit in result.neighbours:
        identity = min(max(hit.similarity, 0.0), 1.0)
        mismatches = round(length * (1.0 - identity))
        subject = (1, length) if strand(result) == "+" else (length, 1)  # minus strand: sstart > send, as BLAST
        rows.append((result.query.id, hit.id, f"{100 * identity:.1f}", length, mismatches, 0,
                     1, length, *subject, -1, 0))
    return rows



@dataclass
class SintaxLine:
    """One line of a SINTAX table: per rank the label and its support, and the cutoff call."""

    query: str
    ranks: dict[str, tuple[str, float]]  # rank -> (label as written, support)
    strand: str
    cutoff: dict[str, str] | None  # rank -> label; None in a 3-column table


def read_sintax(source: str | Path) -> Iterator[SintaxLine]:
    """Lines of ``vsearch --sintax --tabbedout`` or ``clibd classify --format sintax`` output.

    Raises ClibdError ``FILE:LINE: ...`` on a line that is not 2-4 tab-separated fields with
    ``rank:label(support)`` entries.
    """
    name = display_name(source)
    with reading(source), open_text(source) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            cells = line.rstrip("\r\n").split("\t")
            if not 2 <= len(cells) <= 4:
                raise ClibdError(f"{name}:{number}: expected 2-4 tab-separated fields (id, lineage, "
                                 f"strand, cutoff lineage), found {len(cells)}")
            try:
                ranks = {_rank(letter): (label, float(support.rstrip(")")))
                         for letter, label, support in _entries(cells[1], with_support=True)}
                cutoff = ({_rank(letter): label for letter, label, _ in _entries(cells[3], False)}
                          if len(cells) == 4 else None)
            except ValueError as exc:
                raise ClibdError(f"{name}:{number}: {exc}") from None
            yield SintaxLine(cells[0], ranks, cells[2] if len(cells) > 2 else "", cutoff)


def _entries(text: str, with_support: bool) -> Iterator[tuple[str, str, str]]:
    for entry in filter(None, text.split(",")):
        letter, sep, rest = entry.partition(":")
        label, paren, support = rest.rpartition("(") if with_support else (rest, "", "")
        if not sep or (with_support and not paren):
            form = "rank:label(support)" if with_support else "rank:label"
            raise ValueError(f"entry {entry!r} is not of the form {form}")
        yield letter, label, support


def _rank(letter: str) -> str:
    return SINTAX_RANKS.get(letter, letter)
