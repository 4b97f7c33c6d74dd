"""Query records for ``classify`` and ``embed``: barcodes and photos, paired by specimen id.

Records come out in input order: every FASTA/FASTQ record in the order read (with the photo
named after its id, ``ID.jpg`` or ``ID.1024px.jpg``, if any: a fused ``image+dna`` specimen),
then the photos that matched no barcode, in sorted path order. Nothing but the photo list and
8 bytes per distinct id of the first 16.8 million records (``clibd_cli/io/repeated_ids.py``) is
held in memory, so inputs of any length stream through. Repeated ids are kept: every record gets its own row (a photo pairs with
the first record of its id only), and one warning at the end counts them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from clibd_cli.io.images import PhotoIds, find_images, warn_photo_pairs
from clibd_cli.io.repeated_ids import RepeatedIds
from clibd_cli.io.sequences import MIN_BASES, bad_size, checked_barcode, parse_abundance, read_sequences
from clibd_cli.io.streams import display_name

log = logging.getLogger("clibd")


@dataclass(slots=True)
class Query:
    """One specimen to classify: a barcode, a photo, or both."""

    id: str
    barcode: str | None = None
    image: Path | None = None
    problem: str | None = None  # why the record is unusable; None when usable
    where: str = ""  # FILE:LINE of a barcode record, the path of a photo (for messages)
    note: str | None = None  # a part of a fused specimen that was dropped, and why
    size: int | None = None  # reads it stands for (a ``;size=N`` header annotation)
    sample: str | None = None  # a ``;sample=NAME`` header annotation
    source: str = ""  # the input it came from, as named in messages
    strand: str | None = None  # "+" or "-" (read reverse-complemented) once the classifier oriented the barcode

    @property
    def modality(self) -> str:
        return "+".join(m for m, v in (("image", self.image), ("dna", self.barcode)) if v is not None)

    def drop(self, part: str, reason: str) -> None:
        """Go on without the barcode or photo of a fused specimen (``part``: dna or image)."""
        if part == "dna":
            self.barcode = None
        else:
            self.image = None
        self.note = f"{'barcode' if part == 'dna' else 'photo'} not used ({reason}); classified by its " \
                    f"{'photo' if part == 'dna' else 'barcode'} alone"


def iter_queries(sequence_inputs: Iterable[str], image_inputs: Iterable[str], *, fuse: bool = True,
                 min_bases: int = MIN_BASES) -> Iterator[Query]:
    """Barcodes from FASTA/FASTQ inputs and photos from files/folders, fused by id if ``fuse``.

    A fused specimen with an unusable barcode keeps its photo (see :meth:`Query.drop`). Records
    that repeat an earlier record's id are counted in a warning once all are read, as are those with
    more than one photo (``io.images.warn_photo_pairs``: the first in path order is fused).
    """
    paths = find_images(image_inputs)
    photos = PhotoIds(paths if fuse else [])
    paired: set[Path] = set()
    fused: set[str] = set()  # ids of the records that took a photo
    misread: set[str] = set()  # inputs with a malformed size= annotation, warned about once each
    repeated = RepeatedIds()
    for source in sequence_inputs:
        name = display_name(source)
        for record in read_sequences(source):
            photo = photos.match(record.id)
            if photo in paired:  # a repeated id: the photo went to the first record
                photo = None
            elif photo is not None:
                paired.add(photo)
                fused.add(record.id)
            size, sample = parse_abundance(record.description)
            bad = None if name in misread else bad_size(record.description)
            if bad is not None:
                misread.add(name)
                log.warning("%s:%d: size=%s is not a read count (a whole number, as vsearch --sizeout writes): "
                            "read as one read, as is any other such record of this input", name, record.line, bad)
            barcode, problem = checked_barcode(record.seq, min_bases)
            query = Query(record.id, barcode=barcode, image=photo, where=f"{name}:{record.line}",
                          size=size, sample=sample, source=name)
            repeated.add(record.id, query.where)
            if problem and photo is not None:
                query.drop("dna", problem)
            else:
                query.problem = problem
            yield query
    warn_photo_pairs(photos, fused, "the others classified on their own")
    for path in paths:
        if path not in paired:  # a photo given twice (--images plate/ --images plate/A1.jpg) repeats its id
            repeated.add(str(path), str(path))
            yield Query(str(path), image=path, where=str(path))
    repeated.report("record", "each gets its own row, so ids in the output are not unique (QIIME 2 refuses "
                              "such tables)")
