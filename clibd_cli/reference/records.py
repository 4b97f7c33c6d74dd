"""``records.tsv``: the reference records of an index or pack, one row each.

A header ``id<TAB>rank...`` (ranks coarse to fine), then one row per record: its id and its label
at each rank, an empty cell where it is not labelled. Ids and labels hold no tab or newline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from models.errors import ClibdError, counted

REBUILD = "rebuild with clibd index"


def check_records(
    ids: Sequence[str], labels: Mapping[str, Sequence[str | None]], n: int, ranks: list[str]
) -> None:
    """Refuse records that ``records.tsv`` cannot hold: ids or labels not one per each of the ``n``
    vectors, a rank not among ``ranks``, an empty id or rank, or one with a tab or newline."""
    if len(ids) != n:
        raise ClibdError(f"got {counted(n, 'vector')} but {counted(len(ids), 'record id')}")
    for rank, values in labels.items():
        if rank not in ranks:
            raise ClibdError(f"rank {rank!r} is not one of the index ranks {', '.join(ranks)}")
        if len(values) != n:
            raise ClibdError(f"got {counted(len(values), f'{rank} label')} for {counted(n, 'record')}")
    for text in [*ids, *ranks]:
        if not text or any(c in text for c in "\t\r\n"):
            raise ClibdError(f"record id or rank {text!r} is empty or contains a tab/newline")


def clean_labels(values: Sequence[str | None]) -> list[str | None]:
    """Labels with blanks as None; tabs and newlines (which records.tsv cannot hold) refused."""
    out = []
    for v in values:
        v = None if v is None or not str(v).strip() else str(v).strip()
        if v is not None and any(c in v for c in "\t\r\n"):
            raise ClibdError(f"label {v!r} contains a tab or newline")
        out.append(v)
    return out


def write_records(f: TextIO, ids: list[str], labels: dict[str, list[str | None]]) -> None:
    """Write records.tsv text: a header ``id<TAB>rank...``, then one row per record."""
    f.write("\t".join(["id", *labels]) + "\n")
    for i, rid in enumerate(ids):
        f.write("\t".join([rid, *(labels[r][i] or "" for r in labels)]) + "\n")


def read_records(f: TextIO, path: Path, ranks: list[str]) -> tuple[list[str], dict[str, list[str | None]]]:
    """Ids and per-rank labels from records.tsv text (``path`` names it in errors)."""
    header = f.readline().rstrip("\n").split("\t")
    if header != ["id", *ranks]:
        raise ClibdError(f"{path}:1: expected header {'/'.join(['id', *ranks])}; {REBUILD}")
    ids: list[str] = []
    labels: dict[str, list[str | None]] = {r: [] for r in ranks}
    for lineno, line in enumerate(f, start=2):
        cells = line.rstrip("\n").split("\t")
        if len(cells) != len(header):
            raise ClibdError(f"{path}:{lineno}: expected {counted(len(header), 'column')}; {REBUILD}")
        ids.append(cells[0])
        for rank, cell in zip(ranks, cells[1:]):
            labels[rank].append(cell or None)
    return ids, labels
