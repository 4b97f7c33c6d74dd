"""The CLIBD seen/unseen partition protocol and the released partition files."""

from collections import Counter, defaultdict

import numpy as np
import pytest

from clibd_cli.data.splits import CLIBD_1M_SPLITS, clibd_partition, read_partition
from models.errors import ClibdError


def synthetic(seed=0):
    """50 common species (10..29 records), 20 tail (2..9), 10 singletons, 100 unlabelled, 5 excluded."""
    rng = np.random.default_rng(seed)
    sizes = list(rng.integers(10, 30, 50)) + list(rng.integers(2, 10, 20)) + [1] * 10
    names = [f"Genus{i % 7} species{i}" for i in range(len(sizes))]
    labelled = [np.full(n, code) for code, n in enumerate(sizes)]
    species = np.concatenate(labelled + [np.full(100, -1), np.full(5, -2)])
    keys = rng.permutation(len(species)).astype(np.uint64) * 7919 + 1
    return species, names, keys, sizes


def by_split(species, assignment):
    groups = defaultdict(Counter)
    for code, split in zip(species, assignment):
        groups[CLIBD_1M_SPLITS[split] if split >= 0 else None][code] += 1
    return groups


def test_protocol_proportions():
    species, names, keys, sizes = synthetic()
    assignment = clibd_partition(species, names, keys, seed=1)
    groups = by_split(species, assignment)
    assert groups[None] == Counter({-2: 5}) and groups["no_split"] == Counter({-1: 100})
    seen = set(groups["train_seen"])
    assert len(seen) == 40 and all(sizes[c] >= 10 for c in seen)  # 80 % of the 50 common species
    for code in seen:
        n = sizes[code]
        parts = [groups[s][code] for s in ("train_seen", "val_seen", "test_seen", "seen_keys")]
        cuts = [int(np.floor(f * n + 0.5)) for f in (0.7, 0.8, 0.9)]
        assert parts == [cuts[0], cuts[1] - cuts[0], cuts[2] - cuts[1], n - cuts[2]]
    unseen = [c for c in range(50) if c not in seen]
    val, test = set(groups["val_unseen_keys"]), set(groups["test_unseen_keys"])
    assert not val & test and not (val | test) & seen
    assert len(val & set(unseen)) == 5 and len(test & set(unseen)) == 5  # unseen species 50/50
    for stage in ("val", "test"):
        for code in groups[f"{stage}_unseen_keys"]:
            queries, keys_ = groups[f"{stage}_unseen"][code], groups[f"{stage}_unseen_keys"][code]
            assert queries == sizes[code] // 2 and queries + keys_ == sizes[code]
    tail = set(range(50, 70))
    assert tail <= val | test and len(tail & val) == 10  # tail species split 50/50 into val and test
    assert set(groups["single_species"]) == set(range(70, 80))


def test_seed_fixes_the_split_and_input_order_does_not_matter():
    species, names, keys, _ = synthetic()
    first = clibd_partition(species, names, keys, seed=5)
    assert np.array_equal(first, clibd_partition(species, names, keys, seed=5))
    assert not np.array_equal(first, clibd_partition(species, names, keys, seed=6))
    order = np.random.default_rng(0).permutation(len(species))
    shuffled = clibd_partition(species[order], names, keys[order], seed=5)
    assert np.array_equal(shuffled, first[order])
    # renumbering species codes (another first-seen order) changes nothing either
    renumber = np.random.default_rng(1).permutation(len(names))
    renamed = [None] * len(names)
    for old, new in enumerate(renumber):
        renamed[new] = names[old]
    recoded = np.where(species >= 0, renumber[np.maximum(species, 0)], species)
    assert np.array_equal(clibd_partition(recoded, renamed, keys, seed=5), first)


def test_partition_files(tmp_path):
    for i, name in enumerate(CLIBD_1M_SPLITS):
        (tmp_path / f"{name}.txt").write_text(f"id{i}a\nid{i}b\n\n")
    (tmp_path / "all_keys.txt").write_text("id2a\n")  # metasplit files are ignored
    partition = read_partition(tmp_path)
    assert partition["id0a"] == "no_split" and partition["id9b"] == "test_unseen_keys"
    assert len(partition) == 20
    (tmp_path / "val_seen.txt").write_text("id0a\n")
    with pytest.raises(ClibdError, match="val_seen.txt:1: 'id0a' is also in no_split.txt"):
        read_partition(tmp_path)
    (tmp_path / "val_seen.txt").write_bytes(b"id0z\ncaf\xe9\n")  # Latin-1: was an internal error
    with pytest.raises(ClibdError, match=r"val_seen.txt:2: not UTF-8 text"):
        read_partition(tmp_path)
    (tmp_path / "seen_keys.txt").unlink()
    with pytest.raises(ClibdError, match="missing partition file seen_keys.txt"):
        read_partition(tmp_path)
