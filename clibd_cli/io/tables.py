"""Delimited tables: streaming reads with checked headers, taxonomy tables."""

from __future__ import annotations

import csv
import difflib
import itertools
import logging
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TextIO

from clibd_cli.io.lineages import (SINTAX_RANKS, Provisional, UnknownRanks, check_record, is_ranked_lineage,
                                   parse_lineage)
from clibd_cli.io.streams import display_name, open_text, reading
from models.config import RANKS
from models.errors import ClibdError, counted

TAXONOMY_RANKS = tuple(SINTAX_RANKS.values())  # domain, kingdom, phylum, class, order ... species
_ID_COLUMNS = ("id", "feature id", "feature-id", "featureid", "#otu id", "#otuid", "otu id", "otuid")  # any case
_LINEAGE_COLUMNS = ("taxon", "taxonomy")
_QUIET_COLUMNS = ("confidence",)  # QIIME 2's Feature ID, Taxon, Confidence: nothing clibd reads, nothing lost

Rows = Iterator[tuple[int, list[str]]]
log = logging.getLogger("clibd")


def read_rows(source: str | Path, required: Sequence[str] = (),
              delimiter: str = "\t") -> tuple[dict[str, int], Rows]:
    """Open a delimited table (``-`` = stdin, compression detected) and check its header.

    Returns ``(columns, rows)``: the column name -> index map and an iterator of
    ``(line_number, fields)`` that streams the file (blank lines skipped). ClibdError when the
    file is empty, a ``required`` column is missing (named, with near misses suggested), or a
    row has the wrong number of fields.
    """
    name = display_name(source)
    handle = open_text(source)
    try:
        with reading(source):
            reader = csv.reader(handle, delimiter=delimiter)
            header = next((fields for _, fields in numbered_rows(reader, name)), None)
        if not header:
            raise ClibdError(f"{name}: empty file, expected a header line")
        header[0] = header[0].lstrip("\ufeff")
        columns = {column.strip(): i for i, column in enumerate(header)}
        missing = [column for column in required if column not in columns]
        if missing:
            raise ClibdError(f"{name}:1: {_missing_message(missing, header, delimiter)}")
    except BaseException:
        handle.close()
        raise
    return columns, _rows(reader, handle, source, len(header))


def read_taxonomy(source: str | Path) -> dict[str, dict[str, str]]:
    """A taxonomy table: TSV with an id column and rank columns (``order`` ... ``species``), or
    without them, a lineage column (QIIME 2's ``Feature ID``/``Taxon``, biom's ``#OTU ID``/``taxonomy``),
    or headerless ``ID<TAB>lineage`` lines (QIIME 2's HeaderlessTSVTaxonomyFormat: the
    Greengenes and UNITE taxonomies for QIIME); column names in any case; lineages as
    ``clibd_cli/io/lineages.py`` reads them.

    Returns id -> {rank: name} with underscores read as spaces, and empty cells and names that
    name nothing (``not_classified``, ``Aedes sp.``, ``Aedes cf. albopictus``: ``lineages.named``) left
    out, an epithet-only species joined to its genus. ClibdError on
    a missing id column, no rank or lineage column, a malformed lineage, a repeated or empty id, or
    a name with a tab or newline (``lineages.check_record``); a
    warning naming the first row with no rank from order to species (``Unassigned``, ``k__Animalia``):
    its records are left unlabelled; one for lineage prefixes that are none of d, k, p, c, o, f, g, s
    (``sk__``, ``t__``: ``lineages.UnknownRanks``); one counting provisional identifications
    (``lineages.Provisional``); one naming the columns it does not read (``notes``,
    ``subfamily``, BOLD's ``taxon`` beside rank columns), QIIME 2's ``Confidence`` aside.
    """
    name = display_name(source)
    columns, rows = read_rows(source)
    header = sorted(columns, key=columns.get)
    lower: dict[str, int] = {}
    for column in header:
        lower.setdefault(column.lower(), columns[column])
    id_column = next((lower[c] for c in _ID_COLUMNS if c in lower), None)
    lineage = next((lower[c] for c in _LINEAGE_COLUMNS if c in lower), None)
    headerless = id_column is None and len(header) >= 2 and _is_lineage(header[1])
    if headerless:  # ID<TAB>lineage lines
        id_column, lineage, rows = 0, 1, itertools.chain([(1, header)], rows)
    if id_column is None:
        raise ClibdError(f"{name}:1: {_missing_message(['id'], header, chr(9))}; or QIIME 2's Feature ID "
                         "and Taxon, or ID<TAB>lineage lines without a header")
    ranks = [] if headerless else [(rank, lower[rank]) for rank in TAXONOMY_RANKS if rank in lower]
    if ranks:  # rank columns first: BOLD's and BIOSCAN's taxon column is the lowest name, not a lineage
        lineage = None
    if not ranks and lineage is None:
        raise ClibdError(f"{name}:1: no rank column; expected some of {', '.join(TAXONOMY_RANKS)} "
                         "(or QIIME 2's Feature ID and Taxon)")
    if not headerless:
        _warn_ignored(name, columns, {id_column, *([lineage] if lineage is not None else dict(ranks).values())},
                      from_lineage=lineage is not None)
    taxonomy: dict[str, dict[str, str]] = {}
    first_line: dict[str, int] = {}
    unranked, first_unranked = 0, (0, "")  # rows naming no rank from order to species; the first's line, id
    strays, provisional = UnknownRanks(), Provisional()
    for line, fields in rows:
        record_id = fields[id_column].strip()
        if record_id in taxonomy:
            raise ClibdError(f"{name}:{line}: id {record_id!r} repeated "
                             f"(first on line {first_line[record_id]})")
        first_line[record_id] = line
        if lineage is not None:
            try:
                taxonomy[record_id], unknown = parse_lineage(fields[lineage], partial(provisional.named, line))
            except ValueError as exc:
                raise ClibdError(f"{name}:{line}: {exc}") from None
            strays.add(line, unknown)
        else:
            taxonomy[record_id] = provisional.named(line, {rank: fields[i].strip().replace("_", " ")
                                                           for rank, i in ranks})
        check_record(f"{name}:{line}", "id", record_id, taxonomy[record_id])
        if not any(taxonomy[record_id].get(rank) for rank in RANKS):
            if not unranked:
                cell = f": {fields[lineage].strip()[:60]!r}" if lineage is not None else ""
                first_unranked = (line, f"{record_id!r}{cell}")
            unranked += 1
    if unranked:
        log.warning("%s:%d: %s of the taxonomy table naming no rank from %s to %s (Unassigned, or ranks "
                    "above %s only; the first is %s): left unlabelled", name, first_unranked[0],
                    counted(unranked, "id"), RANKS[0], RANKS[-1], RANKS[0], first_unranked[1])
    strays.warn(name)
    provisional.warn(name)
    return taxonomy


def _warn_ignored(name: str, columns: dict[str, int], read: set[int], from_lineage: bool) -> None:
    """One warning naming the columns of a taxonomy table that clibd does not read: neither the id,
    a rank (domain to species) nor, in a table without rank columns, the lineage."""
    ignored = [column for column, i in columns.items()
               if i not in read and column and column.lower() not in _QUIET_COLUMNS]
    if ignored:
        log.warning("%s:1: column%s %s ignored: %s", name, "s" * (len(ignored) > 1), ", ".join(map(repr, ignored)),
                    "clibd reads the id and the lineage" if from_lineage
                    else f"clibd reads the id and the ranks ({', '.join(TAXONOMY_RANKS)})")


def _is_lineage(cell: str) -> bool:
    """Whether a header cell is a lineage (``k__Animalia;...``, ``Root;...;Aedes_albopictus``, QIIME 2's
    ``Unassigned``): the first line of a headerless taxonomy."""
    return is_ranked_lineage(cell) or cell.count(";") >= len(RANKS) - 1 or cell.strip().lower() == "unassigned"


def numbered_rows(reader, name: str) -> Rows:
    """``(line, fields)`` of a ``csv.reader``, each row on the line it starts on. A double quote
    opens a quoted field that may hold the delimiter; one left open swallows the lines after it,
    so a row that runs over several lines, or a field over the csv module's limit, is a
    ClibdError naming the line where it starts."""
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader, None)
        except csv.Error as exc:
            raise ClibdError(f"{name}:{start}: unreadable row ({exc}): a double quote (\") opens a field "
                             "that is never closed?") from None
        if fields is None:
            return
        if reader.line_num > start:
            raise ClibdError(f"{name}:{start}: a double quote (\") opens a field that runs on to line "
                             f"{reader.line_num}; close it on the same line or remove it")
        yield start, fields


def _rows(reader, handle: TextIO, source: str | Path, width: int) -> Rows:
    name = display_name(source)
    at = [1]  # the last line read whole: the next is named if the file turns out truncated
    with handle, reading(source, at):
        for line, fields in numbered_rows(reader, name):
            at[0] = line
            if len(fields) != width:
                if not fields or fields == [""]:
                    continue
                raise ClibdError(f"{name}:{line}: expected {counted(width, 'field')} as in the header, "
                                 f"found {len(fields)}")
            yield line, fields


def _missing_message(missing: list[str], header: list[str], delimiter: str) -> str:
    message = f"missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
    kind = {"\t": "tab", ",": "comma", ";": "semicolon"}  # ';': spreadsheets where ',' is the decimal mark
    other = next((d for d in kind if d != delimiter and len(header) == 1 and d in header[0]), None)
    if other and delimiter in kind:
        return f"{message}; the header is {kind[other]}-separated, expected {kind[delimiter]}-separated"
    hints = []
    for column in missing:
        near = difflib.get_close_matches(column, header, n=1, cutoff=0.6)
        if near:
            hints.append(f"{near[0]!r} for {column!r}?")
    found = ", ".join(header[:30]) + (" ..." if len(header) > 30 else "")
    return f"{message} (found: {found})" + (f"; renamed? {' '.join(hints)}" if hints else "")
