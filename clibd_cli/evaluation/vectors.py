"""Embeddings of dataset groups: a CLIBD model's towers or k-mer profiles, cached on disk.

A group's vectors are one ``[N, D]`` float32 array in record order, L2-normalised, with a zero
row for a record that lacks the modality (no photo, unusable barcode). Model embeddings are
cached as ``.npy`` files keyed by the model fingerprint, the dataset file (path, size, mtime),
the group and the modality, so evaluating other pairs or baselines later does not re-embed.
A query group sampled by ``evaluate --limit`` has only its sampled rows embedded (the others
stay zero), cached under a key that adds the rows: never read back as the whole group, which
a sampled run reads when cached. k-mer profiles take seconds and are not cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import partial
from pathlib import Path

import numpy as np

from clibd_cli.evaluation.protocol import Records

from models.config import RANKS
from models.files import atomic_path
from models.errors import counted

log = logging.getLogger("clibd")
CACHE_FORMAT = 1


class KmerProfiles:
    """The model-free baseline: square-root k-mer frequency profiles of barcodes."""

    modalities = ("dna",)

    def __init__(self, k: int = 5):
        from clibd_cli.embedding.kmer import KmerProfileModel

        self.model = KmerProfileModel(k)
        self.name = "kmer"
        self.fingerprint = None  # cheap to recompute: not cached

    def embed(self, records: Records, modality: str, progress: bool = False,
              rows: np.ndarray | None = None) -> np.ndarray:
        """Every record's profile (cheap enough to ignore ``rows``)."""
        vectors = self.model.embed_barcodes(records.barcodes)
        vectors[~records.has_barcode] = 0.0
        return vectors


class ModelVectors:
    """A CLIBD model run by an :class:`~clibd_cli.embedding.embedder.Embedder`."""

    name = "model"

    def __init__(self, embedder, batch_size: int = 256):
        self.embedder = embedder
        self.modalities = tuple(embedder.model.modalities)
        self.fingerprint = embedder.model.fingerprint()
        self.precision = embedder.precision
        self.block = batch_size * 4

    def embed(self, records: Records, modality: str, progress: bool = False,
              rows: np.ndarray | None = None) -> np.ndarray:
        """``[N, D]`` vectors of the records (of ``rows`` only, if given; the others zero)."""
        from tqdm import tqdm

        if modality == "text":
            return self._labels(records, np.arange(len(records)) if rows is None else rows)
        out = np.zeros((len(records), self.embedder.model.embed_dim), dtype=np.float32)
        usable = np.flatnonzero(records.has(modality))
        if rows is not None:
            usable = np.intersect1d(usable, rows)
        bar = tqdm(total=len(usable), unit=" records", disable=not progress, leave=False,
                   desc=f"embedding {'+'.join(records.groups)} ({modality})")
        for start in range(0, len(usable), self.block):
            rows = usable[start:start + self.block]
            if modality == "dna":
                out[rows] = self.embedder.barcodes([records.barcodes[i] for i in rows])
            else:
                rows, images = self._photos(records, rows)
                if len(rows):
                    out[rows] = self.embedder.images(images)
            bar.update(len(usable[start:start + self.block]))
        bar.close()
        return out

    def _labels(self, records: Records, rows: np.ndarray) -> np.ndarray:
        """The label string of each record of ``rows`` embedded (each distinct string once)."""
        strings = [self.embedder.model.label_string({rank: records.labels[rank][i] for rank in RANKS})
                   for i in rows]
        distinct, which = np.unique(np.array(strings, dtype=object).astype(str), return_inverse=True)
        out = np.zeros((len(records), self.embedder.model.embed_dim), dtype=np.float32)
        if len(rows):
            out[rows] = self.embedder.labels(distinct.tolist())[which]
        return out

    @staticmethod
    def _photos(records: Records, rows: np.ndarray) -> tuple[np.ndarray, list]:
        from clibd_cli.io.images import load_image, load_photos

        kept, images = load_photos((int(i), partial(load_image, records.split.image_bytes(int(i)),
                                                    records.name(int(i)))) for i in rows)
        return np.array(kept, dtype=np.int64), images


class Embeddings:
    """Vectors per (source, groups, modality): from memory, the cache folder, or the source."""

    def __init__(self, dataset, cache: Path | None, progress: bool = False,
                 samples: dict[str, np.ndarray] | None = None):
        """``samples``: group -> the only rows of it to embed (a query group ``--limit`` samples)."""
        self.dataset, self.cache, self.progress = dataset, cache, progress
        self.samples = samples or {}
        self._memory: dict[tuple, np.ndarray] = {}
        self._records: dict[str, Records] = {}
        stat = Path(dataset.path).stat()
        self._data_key = {"path": str(Path(dataset.path).resolve()), "size": stat.st_size,
                          "mtime_ns": stat.st_mtime_ns}

    def get(self, source, groups: tuple[str, ...], modality: str) -> np.ndarray:
        """``[N, D]`` vectors of the records of ``groups`` (in order) as ``modality``."""
        return np.concatenate([self._group(source, g, modality) for g in groups])

    def _group(self, source, group: str, modality: str) -> np.ndarray:
        memo = (id(source), group, modality)
        if memo not in self._memory:
            self._memory[memo] = self._load_or_embed(source, group, modality)
        return self._memory[memo]

    def _load_or_embed(self, source, group: str, modality: str) -> np.ndarray:
        records = self._records.setdefault(group, Records(self.dataset, (group,)))
        rows = self.samples.get(group)
        paths = [self._path(source, group, modality)]  # the whole group's cache serves a sample too
        if rows is not None:
            paths.append(self._path(source, group, modality, rows))
        for path in paths:
            if path is not None and path.is_file():
                vectors = np.load(path, allow_pickle=False)
                if len(vectors) == len(records):
                    log.debug("cached embeddings: %s", path)
                    return vectors
        if source.fingerprint is not None:
            some = "" if rows is None else f"{len(rows):,} of "
            log.info("embedding %s%s (%s)", some, counted(len(records), f"{group} record"), modality)
        vectors = source.embed(records, modality, self.progress, rows)
        path = paths[-1]
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as temp, open(temp, "wb") as f:
                np.save(f, vectors, allow_pickle=False)
        return vectors

    def _path(self, source, group: str, modality: str, rows: np.ndarray | None = None) -> Path | None:
        """The cache file of the group's vectors (of a sample of its rows: another file)."""
        if self.cache is None or source.fingerprint is None:
            return None
        key = {"format": CACHE_FORMAT, "model": source.fingerprint, "data": self._data_key,
               "group": group, "modality": modality, "precision": source.precision}
        sample = ""
        if rows is not None:
            key["rows"] = hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()
            sample = f"sample-{len(rows)}."
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        return self.cache / f"{group}.{modality}.{sample}{digest}.npy"
