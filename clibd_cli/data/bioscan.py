"""BIOSCAN-5M metadata CSV and BIOSCAN-1M metadata TSV as record sources.

Both are streamed row by row. Labels are taken as they are ("", ``not_classified`` and the
other ``models.config.MISSING_LABELS`` mean missing). Photos are looked up in the datasets' own folder layouts:

* 5M: ``{package}/{split}/{chunk}/{processid}.jpg`` (``chunk`` from the CSV; when it is
  empty, the MD5-prefix rule of the release and no chunk folder are both tried);
* 1M: ``{package}/part{chunk_number}/{image_file}``;

where ``{package}`` (original_full, cropped, original_256, cropped_256) is looked for under
the folder given with ``--images`` (``ROOT/{package}``, ``ROOT/images/{package}``,
``ROOT/bioscan5m/images/{package}``), or is that folder itself.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from clibd_cli.data.build import SourceRecord
from clibd_cli.data.splits import BIOSCAN_5M_SPLITS
from clibd_cli.data.store import Record
from clibd_cli.io.tables import read_rows
from models.config import RANKS, is_missing_label
from models.errors import ClibdError

_CHUNK_DIGITS = {"pretrain": 2, "train": 1, "other_heldout": 1}  # MD5-prefix length of 5M chunk folders
_PART = re.compile(r"part\d+")


class Bioscan5M:
    """Records of the BIOSCAN-5M metadata CSV (``BIOSCAN_5M_Insect_Dataset_metadata.csv[.gz]``)."""

    format = "bioscan-5m"
    key_name = "processid"
    has_splits = True
    required = ("processid", "order", "family", "genus", "species", "dna_barcode", "split")

    def __init__(self, path: str | Path, images: str | Path | None = None, package: str = "cropped_256"):
        self.path = Path(path)
        read_rows(self.path, self.required, delimiter=",")[1].close()  # fail now on a bad header
        self.image_dir = find_package_dir(Path(images), package, BIOSCAN_5M_SPLITS) if images else None

    def records(self) -> Iterator[SourceRecord]:
        for columns, line, fields, processid, labels in _metadata_rows(self, "dna_bin", delimiter=","):
            sampleid = _cell(fields, columns, "sampleid")
            record = Record(processid, sampleid, fields[columns["dna_barcode"]], *labels)
            split = fields[columns["split"]].strip() or (None if record.species else "pretrain")
            if split not in BIOSCAN_5M_SPLITS:
                raise ClibdError(f"{self.path}:{line}: split {fields[columns['split']]!r} is not one of "
                                 f"{', '.join(BIOSCAN_5M_SPLITS)}")
            chunk = _cell(fields, columns, "chunk")
            paths = self._image_paths(split, chunk, processid) if self.image_dir else ()
            yield SourceRecord(line, processid, record, split, paths)

    def _image_paths(self, split: str, chunk: str, processid: str) -> tuple[Path, ...]:
        folders = [self.image_dir / split / chunk] if chunk else [self.image_dir / split]
        if not chunk and split in _CHUNK_DIGITS:
            digest = hashlib.md5(processid.encode()).hexdigest()[:_CHUNK_DIGITS[split]]
            folders.insert(0, self.image_dir / split / digest)
        return tuple(folder / f"{processid}{suffix}" for folder in folders
                     for suffix in (".jpg", ".1024px.jpg"))


class Bioscan1M:
    """Records of the BIOSCAN-1M metadata TSV (``BIOSCAN_Insect_Dataset_metadata.tsv``)."""

    format = "bioscan-1m"
    key_name = "sampleid"
    has_splits = False
    required = ("sampleid", "order", "family", "genus", "species", "nucraw")

    def __init__(self, path: str | Path, images: str | Path | None = None, package: str = "cropped_256"):
        self.path = Path(path)
        self.required = self.required + (("image_file",) if images else ())
        read_rows(self.path, self.required)[1].close()
        self.image_dir = find_package_dir(Path(images), package, ()) if images else None

    def records(self) -> Iterator[SourceRecord]:
        for columns, line, fields, sampleid, labels in _metadata_rows(self, "uri"):
            processid = _cell(fields, columns, "processid") or sampleid
            record = Record(processid, sampleid, fields[columns["nucraw"]], *labels)
            paths: tuple[Path, ...] = ()
            name = _cell(fields, columns, "image_file") if self.image_dir else ""
            if name:
                part = _cell(fields, columns, "chunk_number")
                paths = ((self.image_dir / f"part{part}" / name,) if part else ()) + (self.image_dir / name,)
            yield SourceRecord(line, sampleid, record, None, paths)


def find_package_dir(root: Path, package: str, split_names: Sequence[str]) -> Path:
    """The folder of one image package under ``root`` (see the module docstring)."""
    candidates = [root / package, root / "images" / package, root / "bioscan5m" / "images" / package,
                  root / "bioscan1m" / "images" / package]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    children = [child.name for child in root.iterdir() if child.is_dir()] if root.is_dir() else []
    if any(name in split_names or _PART.fullmatch(name) for name in children):
        return root
    found = f"; it has {', '.join(sorted(children)[:10])}" if children else ""
    raise ClibdError(f"{root}: no {package!r} image folder (looked for {package}/, images/{package}/, "
                     f"or split/part folders{found}); pick the package with --image-package")


def _metadata_rows(source: Bioscan5M | Bioscan1M, bin_column: str, delimiter: str = "\t"
                   ) -> Iterator[tuple[dict[str, int], int, list[str], str, list[str | None]]]:
    """``(columns, line, fields, key, labels)`` per row of a BIOSCAN metadata table: the record's
    ``source.key_name`` (an empty one is refused by ``clibd_cli/data/build.py::SourceRecord.check``) and
    its order..species and BIN labels (None if missing)."""
    columns, rows = read_rows(source.path, source.required, delimiter=delimiter)
    labels = [columns.get(name) for name in (*RANKS, bin_column)]
    for line, fields in rows:
        key = fields[columns[source.key_name]].strip()
        yield columns, line, fields, key, [_label(fields, i) for i in labels]


def _cell(fields: list[str], columns: dict[str, int], name: str) -> str:
    """An optional column's stripped cell ("" without the column)."""
    return fields[columns[name]].strip() if name in columns else ""


def _label(fields: list[str], index: int | None) -> str | None:
    if index is None:
        return None
    value = fields[index].strip()
    return None if is_missing_label(value) else value
