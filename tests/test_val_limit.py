"""`clibd train --val-limit N`: a seeded sample of the queries, validated against keys that hold
their species (clibd_cli/training/validation.py, ``sample``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clibd_cli.defaults import VAL_KEYS_PER_SPECIES
from clibd_cli.distributed import detect
from clibd_cli.training.validation import Validation
from models import create_model
from test_train import write_bold


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_bold(tmp_path_factory.mktemp("data") / "bold.h5")


def validation(data: Path, limit: int, seed: int = 0) -> Validation:
    model = create_model("clibd-tiny", modalities=("dna", "text"))
    return Validation.for_dataset(str(data), ("dna", "text"), model, detect(), batch_size=8, workers=0,
                                  limit=limit, seed=seed)


def species(validation: Validation, name: str) -> list[str]:
    return [label for label in np.asarray(validation.sets[name].labels("species"), dtype=object)[
        validation.records[name]] if label]


@pytest.mark.parametrize("limit, seed", [(3, 0), (5, 0), (5, 1), (10, 2)])
def test_the_sampled_keys_hold_every_sampled_querys_species(data, limit, seed):
    sampled = validation(data, limit, seed)
    everything = validation(data, 0)
    assert all(len(sampled.records[name]) == min(limit, len(sampled.sets[name])) for name in ("seen", "unseen"))
    assert len(sampled.records["keys"]) < len(everything.records["keys"])  # still a quick check
    keys = species(sampled, "keys")
    all_keys = species(everything, "keys")
    for name in ("seen", "unseen"):
        for label in species(sampled, name):
            assert keys.count(label) >= min(all_keys.count(label), VAL_KEYS_PER_SPECIES), label


def test_the_same_seed_samples_the_same_records_and_no_limit_takes_them_all(data):
    first, again, other = validation(data, 5), validation(data, 5), validation(data, 5, seed=1)
    assert all(np.array_equal(first.records[name], again.records[name]) for name in first.sets)
    assert any(not np.array_equal(first.records[name], other.records[name]) for name in first.sets)
    everything = validation(data, 0)
    assert all(np.array_equal(everything.records[name], np.arange(len(everything.sets[name])))
               for name in everything.sets)
