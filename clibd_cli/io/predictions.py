"""Writing classification results: the TSV columns (README "Input and output at a glance"), JSON
lines, and the long top-k format. This module owns those formats."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TextIO

from models.config import RANKS

COLUMNS = ("query_id", "modality", "status", *RANKS, *(f"{r}_conf" for r in RANKS),
           "lineage", "nearest_id", "nearest_sim", "strand", "prior_unseen")  # new columns only ever appended
NEIGHBOUR_COLUMNS = ("query_id", "hit", "reference_id", "similarity", *RANKS)
FORMATS = ("tsv", "jsonl", "neighbours")
CONFIDENCE_DIGITS = 4  # decimals of the confidences written; a label is given where its confidence as written
# reaches the cutoff (classification/taxonomy.py, RankedPrediction.assigned), so the columns agree with it
_SPACES = str.maketrans("\t\r\n", "   ")


def tsv_line(cells: Sequence) -> str:
    """One line of plain TSV, no quoting: a tab or newline inside a cell (a photo path) becomes a space."""
    line = "\t".join(map(str, cells))
    if line.count("\t") == len(cells) - 1 and "\n" not in line and "\r" not in line:  # as a rule: nothing to replace
        return line + "\n"
    return "\t".join(str(c).translate(_SPACES) for c in cells) + "\n"


class PredictionWriter:
    """Streams results (``clibd_cli.classification.classifier.Result``) as ``tsv``, ``jsonl`` or
    ``neighbours``.

    ``neighbours`` is the long format of ``--top-k N``: one row per (query, nearest reference)
    with the reference's labels.
    """

    def __init__(self, handle: TextIO, fmt: str = "tsv"):
        if fmt not in FORMATS:
            raise ValueError(f"unknown prediction format {fmt!r}")
        self.handle, self.fmt = handle, fmt
        if fmt != "jsonl":
            handle.write(tsv_line(COLUMNS if fmt == "tsv" else NEIGHBOUR_COLUMNS))

    def write(self, results: Iterable) -> None:
        """Write results and flush (a reader of a pipe sees each batch as soon as it is done)."""
        for result in results:
            if self.fmt == "tsv":
                self.handle.write(tsv_line(tsv_row(result)))
            elif self.fmt == "jsonl":
                self.handle.write(json.dumps(json_record(result), ensure_ascii=False) + "\n")
            else:
                for row in self._neighbour_rows(result):
                    self.handle.write(tsv_line(row))
        self.handle.flush()

    @staticmethod
    def _neighbour_rows(result) -> list[Sequence]:
        """``--top-k`` rows of one query; an invalid query gets one row with hit 0 and empty cells."""
        if result.prediction is None:
            return [(result.query.id, 0, *[""] * (len(NEIGHBOUR_COLUMNS) - 2))]
        return [(result.query.id, hit, n.id, f"{n.similarity:.4f}", *((n.labels.get(r) or "") for r in RANKS))
                for hit, n in enumerate(result.neighbours or [], start=1)]


def tsv_row(result) -> list[str]:
    """One TSV row: labels only where confident, confidences always (valid records)."""
    query, prediction = result.query, result.prediction
    if prediction is None:
        return [query.id, query.modality, "invalid", *[""] * (2 * len(RANKS) + 5)]
    assigned = prediction.assigned
    return [query.id, query.modality, prediction.status,
            *((assigned.get(r) or "") for r in RANKS),
            *(f"{prediction.confidence.get(r, 0.0):.{CONFIDENCE_DIGITS}f}" for r in RANKS),
            prediction.lineage(), prediction.nearest_id, f"{prediction.nearest_sim:.4f}", query.strand or "",
            "" if result.prior_unseen is None else f"{result.prior_unseen:.4f}"]


def json_record(result) -> dict:
    """One JSON object per query, with the best label and confidence at every rank."""
    query, prediction = result.query, result.prediction
    record = {"query_id": query.id, "modality": query.modality, "status": result.status}
    if query.note:
        record["note"] = query.note
    if prediction is None:
        record["problem"] = result.problem
        return record
    assigned = prediction.assigned
    record["ranks"] = {r: {"label": prediction.labels.get(r),
                           "confidence": round(prediction.confidence.get(r, 0.0), CONFIDENCE_DIGITS),
                           "assigned": assigned.get(r) is not None} for r in [*prediction.labels, *RANKS]}
    record.update(lineage=prediction.lineage(), nearest_id=prediction.nearest_id,
                  nearest_sim=round(prediction.nearest_sim, 4))
    if query.strand:
        record["strand"] = query.strand
    if result.prior_unseen is not None:  # the share of new species the confidences assume
        record["prior_unseen"] = round(result.prior_unseen, 4)
    if result.neighbours is not None:
        record["neighbours"] = [{"id": n.id, "similarity": round(n.similarity, 4),
                                 "ranks": {r: n.labels.get(r) for r in RANKS}} for n in result.neighbours]
    return record
