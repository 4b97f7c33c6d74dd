"""Feature tables (``clibd classify --counts``): reads of each feature in each sample.

Accepted layouts, features as rows and samples as columns, tab-separated:

* ``vsearch --otutabout`` and BIOM/QIIME 2 exports (``biom convert --to-tsv``): an optional
  ``# Constructed from biom file`` line, then ``#OTU ID<TAB>sample...`` (a trailing
  ``taxonomy`` column is ignored);
* any table with a feature id column first (``Feature ID``, ``id``, ...), then one column per
  sample;
* R's ``write.table(t(seqtab), sep="\\t")`` of a DADA2 sequence table: the header lacks the
  row-name cell, cells may be quoted, and the features may be the sequences themselves (they
  are then matched to records by barcode).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from clibd_cli.io.streams import display_name, open_text, reading
from clibd_cli.io.tables import numbered_rows
from models.errors import ClibdError, counted

MAX_READS = 10 ** 15  # a count above this is a mistake (a sequencing run holds ~1e10 reads)


@dataclass
class CountsTable:
    """Reads per feature and sample, samples in column order."""

    samples: list[str]
    reads: dict[str, list[int]] = field(default_factory=dict)  # feature -> reads per sample


def read_counts(source: str | Path) -> CountsTable:
    """Read a feature table; ClibdError ``FILE:LINE: ...`` on a malformed one."""
    name = display_name(source)
    with reading(source), open_text(source) as handle:
        lines = [(number, row) for number, row in numbered_rows(csv.reader(handle, delimiter="\t"), name)
                 if row and any(cell.strip() for cell in row)]
    while lines and _is_comment(lines[0][1]):
        lines.pop(0)  # '# Constructed from biom file'
    if len(lines) < 2:
        raise ClibdError(f"{name}: expected a header line (feature id, then sample names) and one row "
                         "per feature")
    header = [cell.strip() for cell in lines[0][1]]
    # R's write.table: no header cell above the row names (a '#OTU ID' header is vsearch's or biom's)
    if len(header) == len(lines[1][1]) - 1 and not header[0].startswith("#"):
        header = ["", *header]
    end = len(header) - (header[-1].lower() == "taxonomy")
    samples = header[1:end]
    if not samples:
        raise ClibdError(f"{name}:{lines[0][0]}: no sample columns after the feature id column")
    if "" in samples or len(set(samples)) < len(samples):
        repeated = sorted({s for s in samples if samples.count(s) > 1})
        raise ClibdError(f"{name}:{lines[0][0]}: sample names must be given and distinct; "
                         f"{'an empty one' if '' in samples else 'repeated: ' + ', '.join(map(repr, repeated))}")
    table = CountsTable(samples)
    for number, row in lines[1:]:
        if len(row) != len(header):
            raise ClibdError(f"{name}:{number}: expected {counted(len(header), 'field')} as in the header, "
                             f"found {len(row)}")
        feature = row[0].strip()
        if feature in table.reads:
            raise ClibdError(f"{name}:{number}: feature {feature!r} repeated")
        try:
            table.reads[feature] = [_count(cell) for cell in row[1:end]]
        except ValueError as exc:
            raise ClibdError(f"{name}:{number}: {exc}; reads must be whole numbers ≥ 0") from None
    return table


def _is_comment(row: list[str]) -> bool:
    """Whether a row is a comment (biom's ``# Constructed from biom file``): one cell starting with
    ``#``. A header starting with ``#`` has its sample columns (``#OTU ID``, ``#OTU_ID``, ``#ASV``)."""
    return row[0].startswith("#") and not any(cell.strip() for cell in row[1:])


def _count(cell: str) -> int:
    try:
        value = float(cell.strip() or "nan")  # biom writes 3.0
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and 0 <= value <= MAX_READS and value == int(value)):
        raise ValueError(f"{cell.strip()!r} is not a read count")
    return int(value)
