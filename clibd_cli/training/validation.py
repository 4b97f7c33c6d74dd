"""Validation during training: the paper's retrieval metrics on the val splits.

Queries of seen and unseen species are embedded and matched (exact cosine nearest neighbour)
against one pooled set of keys, as in CLIBD (README "Evaluating a model"): the splits of the
``paper`` scenario of ``clibd evaluate --on val`` (``clibd_cli/evaluation/protocol.py``), in
both dataset layouts.

For every query→key modality pair the model has (DNA→DNA, image→image, image→DNA), top-1
micro and macro accuracy per rank come from :mod:`clibd_cli.evaluation.metrics`, plus the harmonic mean
of seen and unseen macro accuracy. Metric names read ``dna-dna.species.macro.hm``.
Every rank embeds a share of the records; rank 0 computes the metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from clibd_cli.evaluation import metrics
from clibd_cli import distributed
from clibd_cli.defaults import VAL_KEYS_PER_SPECIES
from clibd_cli.training.datasets import SpecimenDataset, make_loader
from models.config import RANKS
from models.errors import ClibdError

log = logging.getLogger("clibd")

PAIRS = (("dna", "dna"), ("image", "image"), ("image", "dna"))


def best_metric(requested: str, modalities: tuple[str, ...], validation: Validation | None,
                data: str) -> str:
    """The metric that picks best/: ``requested``, or for ``auto`` the species-level macro harmonic
    mean of DNA→DNA if DNA is trained, else of image→image (without unseen-species queries to take
    a harmonic mean with, the seen species' macro accuracy)."""
    unseen = validation is None or "unseen" in validation.sets
    if requested == "auto":
        pair = "dna-dna" if "dna" in modalities else "image-image"
        return f"{pair}.species.macro.{'hm' if unseen else 'seen'}"
    if not unseen and requested.endswith((".unseen", ".hm")):
        raise ClibdError(f"--best-metric {requested}: {data} has no val_unseen split; "
                         "choose a .seen metric")
    return requested


def metric_names(modalities: tuple[str, ...]) -> list[str]:
    """Every name :meth:`Validation.run` can report for these modalities."""
    return [f"{q}-{k}.{rank}.{kind}.{part}"
            for q, k in PAIRS if q in modalities and k in modalities
            for rank in RANKS
            for kind, parts in (("micro", ("seen", "unseen")), ("macro", ("seen", "unseen", "hm")))
            for part in parts]


@dataclass
class Embedded:
    """Embeddings of one set of records per modality (rows of records that lack it are NaN)."""

    vectors: dict[str, torch.Tensor]
    labels: dict[str, np.ndarray]


class Validation:
    """Embeds the val queries and keys with the current weights and scores retrieval."""

    def __init__(self, path: str, protocol: tuple[tuple[str, ...], ...], modalities: tuple[str, ...],
                 model, world: distributed.World, batch_size: int, workers: int, limit: int = 0,
                 seed: int = 0):
        self.modalities = tuple(m for m in modalities if m != "text")
        self.sets = {name: SpecimenDataset(path, splits, self.modalities, model, train=False)
                     for name, splits in zip(("keys", "seen", "unseen"), protocol) if splits}
        if "unseen" in self.sets and not len(self.sets["unseen"]):  # an empty group: no unseen queries
            del self.sets["unseen"]
        self.records = sample(self.sets, limit, seed)
        self.model, self.world = model, world
        self.batch_size, self.workers = batch_size, workers

    @classmethod
    def for_dataset(cls, path: str, modalities: tuple[str, ...], model, world, batch_size: int,
                    workers: int, limit: int = 0, seed: int = 0) -> Validation | None:
        """Queries ``val`` and ``val_unseen`` against the keys of the paper's protocol
        (:func:`clibd_cli.evaluation.protocol.scenarios`, both dataset layouts); None, with a
        warning, without a ``val`` split."""
        from clibd_cli.data.store import open_dataset
        from clibd_cli.evaluation.protocol import scenarios

        with open_dataset(path) as ds:
            try:
                (paper,), _ = scenarios(ds, "val", ("paper",))
            except ClibdError:
                log.warning("%s: no val split; best/ will not be chosen", path)
                return None
        protocol = (paper.keys, paper.queries["seen"], paper.queries.get("unseen", ()))
        return cls(path, protocol, modalities, model, world, batch_size, workers, limit, seed)

    @torch.inference_mode()
    def run(self) -> dict[str, float]:
        """``{metric name: value}`` on rank 0; an empty dict on the other ranks."""
        self.model.eval()
        embedded = {name: self._embed(ds, self.records[name]) for name, ds in self.sets.items()}
        if not self.world.is_main:
            return {}
        keys, scores = embedded["keys"], {}
        for q, k in PAIRS:
            if q not in self.modalities or k not in self.modalities:
                continue
            macro = {}
            for part in ("seen", "unseen"):
                if part not in embedded:
                    continue
                found = nearest(embedded[part].vectors[q], keys.vectors[k])
                for rank in RANKS:
                    truth = embedded[part].labels[rank][found.query]
                    predicted = keys.labels[rank][found.key][:, None]
                    correct, scored = metrics.topk_correct(predicted, truth, 1)
                    scores[f"{q}-{k}.{rank}.micro.{part}"] = metrics.micro_accuracy(correct, scored)
                    macro[rank, part] = scores[f"{q}-{k}.{rank}.macro.{part}"] = \
                        metrics.macro_accuracy(correct, truth, scored)
            for rank in RANKS:
                if (rank, "unseen") in macro:
                    scores[f"{q}-{k}.{rank}.macro.hm"] = metrics.harmonic_mean(macro[rank, "seen"],
                                                                               macro[rank, "unseen"])
        return scores

    def _embed(self, dataset: SpecimenDataset, records: np.ndarray) -> Embedded:
        """``records`` embedded: each rank takes every world.size-th, then all are gathered in order."""
        device = next(self.model.parameters()).device
        share = records[self.world.rank::self.world.size].tolist()
        loader = make_loader(dataset, None, self.workers, batch_size=self.batch_size, indices=share)
        parts: dict[str, list[torch.Tensor]] = {m: [] for m in self.modalities}
        for batch in loader:
            inputs = {k: v.to(device) for k, v in batch["inputs"].items()}
            for m in self.modalities:
                vectors = _encode(self.model, m, inputs).float()
                vectors[~batch["present"][m].to(device)] = float("nan")
                parts[m].append(vectors)
        position = {record: i for i, record in enumerate(records.tolist())}
        order = torch.tensor([position[r] for r in share], dtype=torch.long)
        everyone = distributed.gather_rows(order[:, None], self.world)[:, 0]
        vectors = {}
        for m, chunks in parts.items():
            mine = torch.cat(chunks) if chunks else torch.zeros(0, self.model.embed_dim, device=device)
            rows = distributed.gather_rows(mine, self.world).cpu()
            vectors[m] = torch.empty_like(rows)
            vectors[m][everyone] = rows
        labels = {rank: np.asarray(dataset.labels(rank), dtype=object)[records] for rank in RANKS}
        return Embedded(vectors, labels)


def sample(sets: dict[str, SpecimenDataset], limit: int, seed: int) -> dict[str, np.ndarray]:
    """The records of each set that validation embeds: all of them for ``limit`` 0; else a seeded
    ``limit`` of each query set and of the keys, plus up to ``VAL_KEYS_PER_SPECIES`` keys (seeded) of
    every species among the chosen queries, so that each can be found.

    The seed and the dataset alone pick them, so a resumed run validates on the same records. Not
    every key of those species: on BOLD they would be most of the keys, no quick check any more."""
    rng = np.random.default_rng(seed)
    records = {name: np.sort(rng.choice(len(ds), limit, replace=False)) if 0 < limit < len(ds)
               else np.arange(len(ds)) for name, ds in sets.items()}
    if not 0 < limit < len(sets["keys"]):
        return records
    wanted = {label for name in sets if name != "keys"
              for label in np.asarray(sets[name].labels("species"), dtype=object)[records[name]] if label}
    of_species: dict[str, list[int]] = {label: [] for label in sorted(wanted)}
    for key, label in enumerate(sets["keys"].labels("species")):
        if label in of_species:
            of_species[label].append(key)
    picked = [rng.choice(keys, min(VAL_KEYS_PER_SPECIES, len(keys)), replace=False)
              for keys in of_species.values() if keys]
    records["keys"] = np.unique(np.concatenate([records["keys"], *picked]).astype(np.int64))
    return records


def _encode(model, modality: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    if modality == "image":
        return model.encode_image(inputs["image"])
    return getattr(model, f"encode_{modality}")(inputs[f"{modality}_input_ids"],
                                                inputs[f"{modality}_attention_mask"])


@dataclass
class Matches:
    """For each usable query (index into the query set), its nearest key (index into the keys)."""

    query: np.ndarray
    key: np.ndarray


def nearest(queries: torch.Tensor, keys: torch.Tensor, chunk: int = 4096) -> Matches:
    """Exact cosine top-1 neighbour of every query row that is not NaN, among non-NaN keys."""
    q_ok = ~torch.isnan(queries).any(dim=1)
    k_ok = torch.nonzero(~torch.isnan(keys).any(dim=1)).flatten()
    q_idx = torch.nonzero(q_ok).flatten()
    if len(k_ok) == 0:
        return Matches(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    usable = torch.nn.functional.normalize(keys[k_ok], dim=1)
    best = [torch.argmax(torch.nn.functional.normalize(queries[q_idx[i:i + chunk]], dim=1) @ usable.T, dim=1)
            for i in range(0, len(q_idx), chunk)]
    found = k_ok[torch.cat(best)] if best else torch.zeros(0, dtype=torch.long)
    return Matches(q_idx.numpy(), found.numpy())
