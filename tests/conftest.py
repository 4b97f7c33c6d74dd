"""Session fixtures shared by the embed/index/classify tests: a saved clibd-tiny model and three
small reference indexes built once with ``clibd index`` (see fixtures/specimens.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture
def clibd_warnings(monkeypatch, request) -> list[str]:
    """The messages the ``clibd`` logger gives at WARNING and above during a test, those of CLI runs in
    this process included. A run replaces that logger's handlers with its own stderr one, in place, and
    stops its propagation (``clibd_cli/main.py``): ``caplog``, or a handler of the test's, sees nothing
    from then on. Every record the logger passes on goes through its ``callHandlers``, watched here (a
    run's ``-q`` sets the logger to ERROR: its warnings are then not given at all)."""
    messages: list[str] = []
    log = logging.getLogger("clibd")
    call = log.callHandlers

    def watched(record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            messages.append(record.getMessage())
        call(record)

    monkeypatch.setattr(log, "callHandlers", watched)
    monkeypatch.setattr(log, "handlers", [logging.NullHandler()])  # not an earlier run's stderr, now closed
    monkeypatch.setattr(log, "disabled", False)
    request.addfinalizer(lambda level=log.level: log.setLevel(level))
    log.setLevel(logging.INFO)  # setLevel, not the attribute: it clears the loggers' cached levels
    return messages


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A clibd-tiny model directory with random weights (seed 0)."""
    import torch

    from models import create_model, save_model

    torch.manual_seed(0)
    return save_model(create_model("clibd-tiny"), tmp_path_factory.mktemp("models") / "tiny")


@dataclass
class References:
    """Reference data on disk and the index built from it."""

    records: list  # fixtures.specimens.Specimen, index order
    fasta: Path
    index: Path
    photos: Path | None = None
    taxonomy: Path | None = None


@pytest.fixture(scope="session")
def barcode_refs(tiny_model, tmp_path_factory) -> References:
    """A DNA index of real barcodes (8 species x 3 + 4 unnamed, each as twins): calibrated for dna only."""
    from fixtures.specimens import run, specimens, twins, write_fasta

    root = tmp_path_factory.mktemp("barcode_refs")
    records = twins(specimens())
    fasta = write_fasta(root / "references.fasta", records)
    result = run("-q", "index", "-m", tiny_model, "-k", "20", fasta, "-o", root / "index")
    assert result.exit_code == 0, result.stderr
    return References(records, fasta, root / "index")


@pytest.fixture(scope="session")
def specimen_refs(tiny_model, barcode_refs, tmp_path_factory) -> References:
    """The same barcodes with photos of half of the records (``--images``): calibrated for dna,
    image and image+dna queries."""
    from fixtures.specimens import copy_photos, run

    root = tmp_path_factory.mktemp("specimen_refs")
    with_photo = [r.id for r in barcode_refs.records[::2]]
    copy_photos(root / "photos", with_photo)
    result = run("-q", "index", "-m", tiny_model, "-k", "20", barcode_refs.fasta, "--images", root / "photos",
                 "-o", root / "index")
    assert result.exit_code == 0, result.stderr
    return References(barcode_refs.records, barcode_refs.fasta, root / "index", photos=root / "photos")


@pytest.fixture(scope="session")
def photo_refs(tiny_model, tmp_path_factory) -> References:
    """An image index of 10 real photos (each as twins ID.jpg, ID-b.jpg) with a taxonomy table."""
    from fixtures.specimens import copy_photos, run, specimens, twins, write_fasta, write_taxonomy

    root = tmp_path_factory.mktemp("photo_refs")
    records = twins(specimens(n_species=5, per_species=2, unnamed=0))
    for i, record in enumerate(records):
        copy_photos(root / "photos", [record.id], first=i // 2)
    taxonomy = write_taxonomy(root / "taxonomy.tsv", {r.id: r.lineage for r in records})
    result = run("-q", "index", "-m", tiny_model, "-k", "20", "--modality", "image", root / "photos",
                 "--taxonomy", taxonomy, "-o", root / "index")
    assert result.exit_code == 0, result.stderr
    return References(records, write_fasta(root / "unused.fasta", records), root / "index",
                      photos=root / "photos", taxonomy=taxonomy)
