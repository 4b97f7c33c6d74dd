"""A model-free barcode embedding: overlapping k-mer frequency profiles.

Each barcode becomes the vector of counts of its overlapping k-mers over ACGT (4**k
dimensions), square-root scaled (a Hellinger-style embedding: cosine similarity of two
profiles is the Bhattacharyya coefficient of their k-mer distributions) and L2-normalised.
k-mers containing any other letter (N, IUPAC codes, gaps) are skipped. It is the `evaluate`
baseline, ``clibd index --model kmer``, and a test bed for the reference index and the
predictor on real barcodes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np

from clibd_cli.embedding.unit import unit_rows
from models.tokenizers import base_codes, overlapping_kmers


def kmer_profile(
    barcodes: Sequence[str], k: int = 5, *, scale: str = "sqrt", chunk: int = 2048
) -> np.ndarray:
    """Embed barcodes as ``[N, 4**k]`` float32 L2-normalised k-mer profiles.

    ``scale`` is ``"sqrt"``, ``"log"`` (log1p of counts) or ``"none"``. A barcode without
    a single valid k-mer embeds as the zero vector (cosine 0 to everything).
    """
    if not 1 <= k <= 8:
        raise ValueError(f"k must be in 1..8, got {k}")
    transform = {"sqrt": np.sqrt, "log": np.log1p, "none": lambda x: x}.get(scale)
    if transform is None:
        raise ValueError(f"scale must be sqrt, log or none, got {scale!r}")
    out = np.zeros((len(barcodes), 4**k), dtype=np.float32)
    for start in range(0, len(barcodes), chunk):
        block = barcodes[start : start + chunk]
        out[start : start + len(block)] = transform(_counts(block, k))
    return unit_rows(out)


def _counts(barcodes: Sequence[str], k: int) -> np.ndarray:
    """k-mer count matrix ``[len(barcodes), 4**k]`` for one chunk, fully vectorised."""
    # One byte string with a separator after each barcode, so no k-mer spans two barcodes.
    codes = base_codes("\0".join(barcodes) + "\0")
    counts = np.zeros((len(barcodes), 4**k), dtype=np.float32)
    if codes.size < k:
        return counts
    [(index, valid)] = overlapping_kmers(codes[None, :], [k])
    lengths = np.fromiter((len(b) + 1 for b in barcodes), dtype=np.int64, count=len(barcodes))
    owner = np.repeat(np.arange(len(barcodes)), lengths)[: valid.shape[1]][valid[0]]
    counts.reshape(-1)[:] = np.bincount(owner * 4**k + index[0][valid[0]], minlength=counts.size)
    return counts


@functools.cache
def reverse_complement_columns(k: int) -> np.ndarray:
    """``[4**k]``: at each k-mer's column of a profile, its reverse complement's, so that a
    barcode's profile read through it is the profile of its other strand (A, C, G, T are 0-3 as
    :func:`_counts` codes them: a base's complement is 3 minus it)."""
    digits = (np.arange(4**k)[:, None] // 4 ** np.arange(k)) % 4  # least significant (last base) first
    return ((3 - digits) * 4 ** np.arange(k)[::-1]).sum(axis=1)


def composition_profile(barcodes: Sequence[str], k: int = 5) -> np.ndarray:
    """``[N, 4**k]``: the unit profile each barcode's base composition would give with endless
    k-mers (each k-mer's share the product of its bases' shares; square roots, as :func:`kmer_profile`
    scales counts), in :func:`kmer_profile`'s columns. A shuffle of the barcode tends to it."""
    counts = kmer_profile(barcodes, 1, scale="none")  # base counts, unit length
    roots = profile = np.sqrt(counts / np.maximum(counts.sum(axis=1, keepdims=True), 1e-12))
    for _ in range(k - 1):
        profile = (profile[:, :, None] * roots[:, None, :]).reshape(len(profile), 4 * profile.shape[1])
    return unit_rows(profile)


KMER_MODEL = "kmer"  # what users pass as --model for the model-free embedding
PEPTIDE_MODEL = "kmer-aa"  # the same plus the barcode's translation (translation.py)
PEPTIDE_WEIGHT = 1.0  # chosen on val / val_unseen (benchmarks/README.md, "kmer-aa")
PEPTIDE_K, PEPTIDE_COLUMNS = 3, 1024  # amino-acid triplets, hashed into 1,024 columns (translation.peptide_profile)


class KmerProfileModel:
    """The k-mer profile in the place of a model: DNA only, no weights, nothing to train.

    ``clibd index --model kmer`` / ``clibd classify`` use it like a trained model; its
    fingerprint names the embedding, so indexes built with it are refused by real models.
    With ``peptide_k`` the vector also holds the amino-acid ``peptide_k``-mer profile of the
    barcode's translation (``clibd_cli/embedding/translation.py``), scaled so that the cosine of
    two barcodes is (nucleotide cosine + ``peptide_weight`` x peptide cosine) / (1 + weight).
    """

    modalities = saved_modalities = ("dna",)  # nothing left unbuilt

    def __init__(self, k: int = 5, peptide_k: int = 0, peptide_weight: float = 0.0, peptide_columns: int = 0):
        self.k, self.peptide_k, self.peptide_weight = k, peptide_k, peptide_weight
        self.peptide_columns = peptide_columns
        self.embed_dim = 4**k + ((peptide_columns or 20**peptide_k) if peptide_k else 0)

    def fingerprint(self) -> str:
        columns = f"-c{self.peptide_columns}" if self.peptide_columns else ""
        peptide = f"+peptide-k{self.peptide_k}-w{self.peptide_weight:g}{columns}" if self.peptide_k else ""
        return f"kmer-profile-k{self.k}-sqrt{peptide}"  # square-root scaled

    @classmethod
    def of_fingerprint(cls, fingerprint: str) -> KmerProfileModel | None:
        """The profile a :meth:`fingerprint` names (None for another's): an index built by an earlier
        ``kmer-aa`` (amino-acid pairs, weight 2, before session 32) is searched with its own profile."""
        found = re.fullmatch(r"kmer-profile-k(\d)-sqrt(?:\+peptide-k(\d)-w([0-9.]+)(?:-c(\d+))?)?", fingerprint)
        if not found:
            return None
        k, peptide_k, weight, columns = found.groups()
        return cls(int(k), int(peptide_k or 0), float(weight or 0), int(columns or 0))

    @property
    def calibration_hints(self) -> dict:
        """What the peptide profile asks of ``clibd index``'s calibration (``query_kinds.calibrate``):
        whole barcodes' species read from the nucleotides alone (amino acids blur species that
        differ by synonymous changes), partial barcodes read from the nucleotides at every rank
        (the translation of a short stretch is too sparse a profile), and new-species
        pseudo-queries that leave out their nearest species too, drawn with probability
        proportional to their species' records^-2 (both chosen on BOLD val_unseen: without them
        genus confidences were under-confident; benchmarks/README.md; the scenario model reads them
        with that species left in as well, ``fitting.fit_calibration``), and whole barcodes' family maps
        reading the family's barcode gap (a batch of new families was otherwise named a family at
        confidence >= 0.8 for half its records: ``fitting.fit_calibration``). With or without it, partial
        barcodes' species are read by k-mer containment (``calibration.rank_similarities``: the
        share of the stretch's 5-mers a reference record holds, read from square-root profiles;
        by cosine a stretch of a known species lies nearly as far from its records as a new
        species' stretch from its congeners': benchmarks/README.md, *Partial barcodes' species by
        k-mer containment*)."""
        contained = {"partial_containment": ["species"]}
        if not self.peptide_k:
            return contained
        nucleotides = [0, 4**self.k]
        return {"rank_parts": {"species": nucleotides}, "partial_part": nucleotides, "sisters": 1,
                "species_weight": 2.0, "gap_ranks": ["family"], **contained}

    def embed_barcodes(self, barcodes: Sequence[str], reads: bool = False) -> np.ndarray:
        """``[N, embed_dim]`` profiles of unit length (zero for a barcode without a valid k-mer);
        with ``reads`` (reads with sequencing errors, ``query_kinds.READ_KIND``), the translation
        reads an insertion's or deletion's frame shift through (``translation.peptide_profile``)."""
        nucleotides = kmer_profile(barcodes, self.k)
        if not self.peptide_k:
            return nucleotides
        from clibd_cli.embedding.translation import peptide_profile

        share = self.peptide_weight / (1.0 + self.peptide_weight)
        peptides = peptide_profile(barcodes, self.peptide_k, reads=reads, columns=self.peptide_columns)
        return unit_rows(np.hstack([nucleotides * np.sqrt(1.0 - share), peptides * np.sqrt(share)]))


MODEL_FREE = {KMER_MODEL: lambda: KmerProfileModel(),
              PEPTIDE_MODEL: lambda: KmerProfileModel(peptide_k=PEPTIDE_K, peptide_weight=PEPTIDE_WEIGHT,
                                                    peptide_columns=PEPTIDE_COLUMNS)}


def is_model_free(model: object) -> bool:
    """Whether ``model`` is the k-mer profile (no neural network: torch is never imported)."""
    return isinstance(model, KmerProfileModel)
