"""Torch datasets over a dataset HDF5 for training and validation.

Work happens in DataLoader workers: each opens the HDF5 file itself (h5py handles must not
cross a fork), decodes and augments images with the model's transforms (the paper's: random
resized crop, flips, rotation for training; resize + centre crop for evaluation), cuts a
share of the training barcodes to a random stretch of themselves (``io.sequences.random_stretch``:
partial barcodes then embed like whole ones), and
tokenises barcodes and label strings as batches are collated, so nothing is pre-tokenised in
the main process. A record that lacks a modality (e.g. a pretrain record without an image)
gets a placeholder input and ``present[modality] = False``, so the loss ignores it for every
pair with that modality while its other modalities still count.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from clibd_cli.io.sequences import clean_barcode, random_stretch
from clibd_cli.distributed import World
from models.errors import ClibdError

log = logging.getLogger("clibd")

CROP_SHORTEST = 200  # bases: the shortest stretch --dna-crop cuts (mini-barcodes are 130-300)


def default_splits(data: str, splits: tuple[str, ...]) -> tuple[str, ...]:
    """The default training splits that ``data`` has (a file from labelled FASTA has no
    ``pretrain``: every record has a species); all of them if it has none, for the error."""
    from clibd_cli.data.store import open_dataset

    present = []
    with open_dataset(data) as dataset:
        for name in splits:
            try:
                dataset.resolve(name)
                present.append(name)
            except ClibdError:
                pass
    if not present or len(present) == len(splits):
        return splits
    log.info("training on %s: %s has no %s split", ",".join(present), data,
             ",".join(s for s in splits if s not in present))
    return tuple(present)


def dataset_fingerprint(path: str, splits: Sequence[str]) -> dict:
    """What identifies the training records of ``path``'s ``splits`` wherever the file is: their
    number, the digest of their ids (``store.Split.ids_digest``) and that of their barcodes and labels
    (``store.Split.content_digest``); RUN/args.json keeps the run's."""
    from clibd_cli.data.store import open_dataset

    with open_dataset(path) as dataset:
        part = dataset.splits_union(splits)
        return {"records": len(part), "ids_sha256": part.ids_digest(), "content_sha256": part.content_digest()}


class SpecimenDataset(Dataset):
    """The records of some splits of a dataset HDF5, as dicts of one specimen each.

    ``train`` picks the augmenting image transform and makes a modality that no record has
    an error (for validation it only leaves those metrics out). ``label_ranks`` (e.g. order,
    genus) adds each record's label string cut at those ranks (``label@genus``, None where the
    record lacks that rank), tokenised as ``text@genus_input_ids`` etc. with ``present["text@genus"]``.
    With ``train``, a share ``dna_crop`` of the barcodes is cut to a random stretch each epoch.
    """

    def __init__(self, path: str, splits: Sequence[str], modalities: Sequence[str], model,
                 train: bool, seed: int = 0, label_ranks: Sequence[str] = (), dna_crop: float = 0.0):
        from clibd_cli.data.store import open_dataset

        self.path, self.splits, self.modalities = str(path), tuple(splits), tuple(modalities)
        self.missing_rank = model.config["text"]["missing_rank"] if "text" in self.modalities else None
        self.seed, self.epoch, self.train = seed, 0, train
        self.label_ranks, self.dna_crop = tuple(label_ranks), dna_crop if train else 0.0
        with open_dataset(self.path) as ds:
            part = ds.splits_union(self.splits)
            self.size = len(part)
            if train and self.size == 0:  # not "no barcodes", "no images": there is nothing at all
                raise ClibdError(f"{path}: the {'+'.join(self.splits)} split holds no records; prepare the data "
                                 "with training records (clibd prepare), or name other splits")
            if train and "image" in self.modalities and not part.has_images:
                raise ClibdError(f"{path}: the {'+'.join(self.splits)} records have no images; "
                                 "drop image from --modalities (e.g. --modalities dna,text)")
            if train and "dna" in self.modalities and not any(part.column("barcode", 0, 1000)):
                raise ClibdError(f"{path}: the {'+'.join(self.splits)} records have no barcodes; "
                                 "drop dna from --modalities")
            if train and "text" in self.modalities and not _labelled(part):
                raise ClibdError(f"{path}: the {'+'.join(self.splits)} records have no label at any rank, so there "
                                 "is nothing to align the text tower to; drop text from --modalities, or prepare "
                                 "the data with labels (SINTAX headers or --taxonomy)")
        self.transform = model.image_transform(train=train) if "image" in self.modalities else None
        blank = None
        if self.transform is not None:
            from PIL import Image

            blank = torch.zeros_like(model.image_transform(train=False)(Image.new("RGB", (32, 32))))
        self.collate = Collate(self.modalities, model, blank, self.label_ranks)
        self._part = None
        self._pid = None

    def __len__(self) -> int:
        return self.size

    def labels(self, rank: str) -> list[str | None]:
        """The label of every record at ``rank`` (None where missing)."""
        return self._records().column(rank)

    def _records(self):
        """This process's own handle on the splits (opened on first use after a fork)."""
        if self._pid != os.getpid():
            from clibd_cli.data.store import open_dataset

            self._part, self._pid = open_dataset(self.path).splits_union(self.splits), os.getpid()
        return self._part

    def __getitem__(self, index: int) -> dict:
        part = self._records()
        sample: dict = {"index": index}
        if "dna" in self.modalities:
            stored = part.column("barcode", index, index + 1)[0] or ""
            sample["barcode"] = clean_barcode(stored) or None  # as embed and index read it
            if self.dna_crop and sample["barcode"]:
                rng = np.random.default_rng(_mix(self.seed, self.epoch, index, 1))
                if rng.random() < self.dna_crop:
                    sample["barcode"] = random_stretch(sample["barcode"], rng, CROP_SHORTEST)
        if "text" in self.modalities:
            from models.tokenizers import has_label, label_string

            ranks = part.ranks(index)
            sample["label"] = label_string(ranks, self.missing_rank) or None
            for rank in self.label_ranks:
                sample[f"label@{rank}"] = (label_string(ranks, self.missing_rank, down_to=rank)
                                           if has_label(ranks, rank) else None)
        if "image" in self.modalities:
            sample["image"] = self._image(part, index)
        return sample

    def _image(self, part, index: int) -> torch.Tensor | None:
        data = part.image_bytes(index)
        if not data:
            return None
        from clibd_cli.io.images import ImageError, load_image

        try:
            image = load_image(data, name=f"{self.path}:{'+'.join(self.splits)}[{index}]")
        except ImageError:
            return None  # a broken photo is a missing photo; the loss skips it
        if not self.train:
            return self.transform(image)
        # Augmentation randomness is a function of (seed, epoch, record): the same whatever the
        # number of processes or workers, and again after a resume.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_mix(self.seed, self.epoch, index))
            return self.transform(image)


class Collate:
    """Stacks samples into model inputs; tokenises barcodes and labels (runs in workers)."""

    def __init__(self, modalities: Sequence[str], model, blank_image: torch.Tensor | None,
                 label_ranks: Sequence[str] = ()):
        self.modalities, self.blank_image, self.label_ranks = tuple(modalities), blank_image, tuple(label_ranks)
        # The tokenizers themselves, not the model's methods: workers get them without the weights.
        self.tokenize = {m: getattr(model, f"{m}_tokenizer") for m in ("dna", "text") if m in modalities}

    def __call__(self, samples: list[dict]) -> dict:
        inputs, present = {}, {}
        fields = [(m, field, placeholder) for m, field, placeholder in (("dna", "barcode", "N"), ("text", "label", ""))
                  if m in self.modalities] + [(f"text@{r}", f"label@{r}", "") for r in self.label_ranks]
        for m, field, placeholder in fields:
            values = [s[field] for s in samples]
            present[m] = torch.tensor([v is not None for v in values])
            tokens = self.tokenize[m.split("@")[0]]([placeholder if v is None else v for v in values])
            inputs.update({f"{m}_{k}": v for k, v in tokens.items()})
        if "image" in self.modalities:
            present["image"] = torch.tensor([s["image"] is not None for s in samples])
            inputs["image"] = torch.stack([self.blank_image if s["image"] is None else s["image"]
                                           for s in samples])
        return {"index": torch.tensor([s["index"] for s in samples]), "inputs": inputs, "present": present}


class GlobalBatchSampler(Sampler[list[int]]):
    """DistributedSampler semantics, cut into global batches.

    Each epoch the records are shuffled by a generator seeded with (seed, epoch), identical on
    every rank, and cut into global batches of ``batch_size * world.size`` (an incomplete
    last batch is dropped, as are batches beyond a multiple of ``multiple_of``). Rank r takes
    the r-th contiguous slice of each global batch, so the features gathered across ranks are
    the batch one process with ``batch_size * world.size`` would see, in the same order.
    ``set_epoch(epoch, start)`` reshuffles and skips the first ``start`` batches (resume).
    """

    def __init__(self, n: int, batch_size: int, world: World, seed: int, multiple_of: int = 1):
        self.n, self.batch_size, self.world, self.seed = n, batch_size, world, seed
        full = n // (batch_size * world.size)
        self.batches_per_epoch = full - full % multiple_of
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(_mix(self.seed, self.epoch)))
        size = self.batch_size * self.world.size
        for b in range(self.start, self.batches_per_epoch):
            first = b * size + self.world.rank * self.batch_size
            yield order[first:first + self.batch_size].tolist()


def make_loader(dataset: SpecimenDataset, batch_sampler: Sampler | None, workers: int, seed: int = 0,
                batch_size: int = 1, indices: Sequence[int] | None = None) -> DataLoader:
    """A DataLoader whose workers ignore Ctrl-C and SIGTERM (the main process handles them: a
    terminal, `timeout` and Slurm signal every process of the job) and use one thread.

    It draws its worker seeds from its own generator, so iterating it leaves the global random
    state alone (dropout noise is then the same with and without a resume).
    """
    common = dict(num_workers=workers, collate_fn=dataset.collate, worker_init_fn=_worker_init,
                  generator=torch.Generator().manual_seed(seed), persistent_workers=False,
                  pin_memory=torch.cuda.is_available())
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **common)
    indices = range(len(dataset)) if indices is None else indices
    return DataLoader(dataset, batch_size=batch_size, sampler=list(indices), **common)


def _labelled(part, chunk: int = 10_000) -> bool:
    """Whether any record of ``part`` (a dataset split) has a label at some rank, read a chunk at
    a time up to the first."""
    from models.config import RANKS

    return any(any(part.column(rank, start, start + chunk)) for start in range(0, len(part), chunk) for rank in RANKS)


def _worker_init(worker_id: int) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    torch.set_num_threads(1)


def _mix(*numbers: int) -> int:
    """A 63-bit seed from several integers (no accidental overlaps like seed + epoch)."""
    digest = hashlib.sha256(np.asarray(numbers, dtype=np.int64).tobytes()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def with_label_prefixes(inputs: dict[str, torch.Tensor], ranks: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The model inputs with each rank's cut label rows appended to the text rows (one text pass)."""
    if not ranks:
        return inputs
    merged = {k: v for k, v in inputs.items() if "@" not in k}
    for part in ("input_ids", "attention_mask"):
        merged[f"text_{part}"] = torch.cat([inputs[f"text_{part}"], *(inputs[f"text@{r}_{part}"] for r in ranks)])
    return merged
