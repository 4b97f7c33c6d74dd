"""Split names and the CLIBD seen/unseen partition protocol, with a fixed seed.

BIOSCAN-5M ships its own ``split`` column. For BIOSCAN-1M the CLIBD authors released
partition files (``{split}.txt`` lists of sampleids); their script that made them had no
seed. :func:`clibd_partition` re-implements that script's protocol reproducibly and is used
for BIOSCAN-1M without the files and for users' own FASTA:

1. records without a species -> ``no_split`` (the unlabelled pretraining pool);
2. species with >= ``TAIL_THRESHOLD`` records are "common"; 80 % of them are seen, 20 % unseen;
3. each seen species' records are split 70/10/10/10 into train_seen, val_seen, test_seen
   and seen_keys;
4. unseen species are split 50/50 into val and test species; each species' records 50/50
   into queries and keys (val_unseen/val_unseen_keys, test_unseen/test_unseen_keys);
5. tail species with 2..9 records are treated like unseen species and added to the same
   groups; species with one record -> ``single_species``.

The result depends only on the seed, the species names and the record keys, not on the
order of the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clibd_cli.io.streams import open_text, reading
from models.errors import ClibdError

BIOSCAN_5M_SPLITS = ("pretrain", "train", "val", "test", "key_unseen", "val_unseen", "test_unseen",
                     "other_heldout")
CLIBD_1M_SPLITS = ("no_split", "train_seen", "seen_keys", "single_species", "val_seen", "val_unseen",
                   "val_unseen_keys", "test_seen", "test_unseen", "test_unseen_keys")
TAIL_THRESHOLD = 10
SEEN_SPECIES_FRACTION = 0.8
SEEN_RECORD_FRACTIONS = (0.7, 0.1, 0.1, 0.1)  # train_seen, val_seen, test_seen, seen_keys
PROTOCOL_NAME = (f"clibd-1m protocol: seen/unseen species {SEEN_SPECIES_FRACTION:.0%}/"
                 f"{1 - SEEN_SPECIES_FRACTION:.0%}, seen records 70/10/10/10, unseen and tail "
                 f"(<{TAIL_THRESHOLD}) species val/test 50/50, queries/keys 50/50")

_CODE = {name: code for code, name in enumerate(CLIBD_1M_SPLITS)}
_SEEN_CUTS = [round(sum(SEEN_RECORD_FRACTIONS[:i]), 9) for i in (1, 2, 3)]  # 0.7, 0.8, 0.9, no float drift


def clibd_partition(species: np.ndarray, species_names: Sequence[str], keys: np.ndarray,
                    seed: int) -> np.ndarray:
    """Assign every record to a CLIBD 1M split; returns indices into ``CLIBD_1M_SPLITS``.

    ``species[i]`` is the index of record i's species in ``species_names`` (-1 = none);
    ``keys[i]`` is a stable integer derived from the record's id (ties are broken by input
    order). Records with ``species == -2`` are excluded and get -1.
    """
    species = np.asarray(species)
    out = np.full(len(species), _CODE["no_split"], dtype=np.int8)
    out[species == -2] = -1
    labelled = np.flatnonzero(species >= 0)
    counts = np.bincount(species[labelled], minlength=len(species_names))
    order = labelled[np.lexsort((keys[labelled], species[labelled]))]
    starts = np.searchsorted(species[order], np.arange(len(species_names) + 1))
    rng = np.random.default_rng(seed)

    def members(code: int) -> np.ndarray:
        return rng.permutation(order[starts[code]:starts[code + 1]])

    by_name = sorted((code for code in range(len(species_names)) if counts[code]),
                     key=species_names.__getitem__)
    common = rng.permutation([c for c in by_name if counts[c] >= TAIL_THRESHOLD]).astype(int)
    tail = rng.permutation([c for c in by_name if 1 < counts[c] < TAIL_THRESHOLD]).astype(int)
    n_seen = _round(SEEN_SPECIES_FRACTION * len(common))
    seen, unseen = sorted(common[:n_seen], key=species_names.__getitem__), common[n_seen:]
    for code in seen:
        records = members(code)
        cuts = [_round(f * len(records)) for f in _SEEN_CUTS]
        for part, name in zip(np.split(records, cuts), ("train_seen", "val_seen", "test_seen", "seen_keys")):
            out[part] = _CODE[name]
    for group in (unseen, tail):
        val_species = set(group[:_round(0.5 * len(group))])
        for code in sorted(group, key=species_names.__getitem__):
            records = members(code)
            stage = "val" if code in val_species else "test"
            half = len(records) // 2
            out[records[:half]] = _CODE[f"{stage}_unseen"]
            out[records[half:]] = _CODE[f"{stage}_unseen_keys"]
    for code in by_name:
        if counts[code] == 1:
            out[order[starts[code]]] = _CODE["single_species"]
    return out


def read_partition(directory: str | Path) -> dict[str, str]:
    """The released CLIBD partition: ``{split}.txt`` files of ids -> {id: split}.

    The ten split files must all be there (metasplit files like ``all_keys.txt`` are
    ignored); ClibdError names missing files and ids listed in two splits.
    """
    directory = Path(directory)
    missing = [f"{name}.txt" for name in CLIBD_1M_SPLITS if not (directory / f"{name}.txt").is_file()]
    if missing:
        raise ClibdError(f"{directory}: missing partition file{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing)} (expected one {{split}}.txt per CLIBD split)")
    assignment: dict[str, str] = {}
    for name in CLIBD_1M_SPLITS:
        path = directory / f"{name}.txt"
        with reading(path), open_text(path) as handle:  # a file that is not UTF-8 text: FILE:LINE
            for line_number, line in enumerate(handle, start=1):
                record_id = line.strip()
                if not record_id:
                    continue
                previous = assignment.setdefault(record_id, name)
                if previous != name:
                    raise ClibdError(f"{path}:{line_number}: {record_id!r} is also in {previous}.txt")
    if not assignment:
        raise ClibdError(f"{directory}: the partition files list no ids")
    return assignment


def _round(value: float) -> int:
    """Round half up (Python's round() rounds half to even)."""
    return int(np.floor(value + 0.5))


# name -> candidate group lists; the first candidate whose groups all exist in a file is used.
ALIASES: dict[str, tuple[tuple[str, ...], ...]] = {
    "pretrain": (("no_split",),),
    "train": (("train_seen",), ("seen_keys",)),
    "val": (("val_seen",),),
    "validation": (("val",), ("val_seen",)),
    "test": (("test_seen",),),
    "key_unseen": (("test_unseen_keys",), ("unseen_keys",)),
    "no_split": (("pretrain",),),
    "train_seen": (("train",), ("seen_keys",)),
    "seen_keys": (("train",),),
    "val_seen": (("val",),),
    "test_seen": (("test",),),
    "unseen_keys": (("key_unseen",), ("val_unseen_keys", "test_unseen_keys")),
    "val_unseen_keys": (("key_unseen",), ("unseen_keys",)),
    "test_unseen_keys": (("key_unseen",), ("unseen_keys",)),
    "all_keys": (("train", "key_unseen"), ("seen_keys", "val_unseen_keys", "test_unseen_keys")),
    "no_split_and_seen_train": (("pretrain", "train"), ("no_split", "train_seen")),
    "pretrain+train": (("pretrain", "train"), ("no_split", "train_seen"), ("no_split_and_seen_train",)),
    "seen": (("train", "val", "test"), ("train_seen", "seen_keys", "val_seen", "test_seen"),
             ("seen_keys", "val_seen", "test_seen")),
    "unseen": (("key_unseen", "val_unseen", "test_unseen"),
               ("val_unseen", "val_unseen_keys", "test_unseen", "test_unseen_keys"),
               ("unseen_keys", "val_unseen", "test_unseen")),
}
LISTING_ORDER = BIOSCAN_5M_SPLITS + CLIBD_1M_SPLITS + ("unseen_keys", "all_keys", "no_split_and_seen_train")
