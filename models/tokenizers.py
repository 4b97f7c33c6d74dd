"""Tokenizers: DNA barcodes as (non-)overlapping k-mers, taxonomy labels as WordPiece text.

Only numpy is imported at module level; torch and the ``tokenizers`` library load on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.config import KMER_MASKS, KMER_SPECIALS, MAX_K, RANKS, is_missing_label

_BASE_CODES = np.full(256, 4, dtype=np.uint8)  # byte -> A, C, G, T (either case) 0-3; 4 for any other
for _code, _base in enumerate(b"ACGT"):
    _BASE_CODES[_base] = _BASE_CODES[_base + 32] = _code
_RNA_CODES = _BASE_CODES.copy()
_RNA_CODES[[ord("U"), ord("u")]] = 3  # RNA reads as DNA


def base_codes(text: str, rna: bool = False) -> np.ndarray:
    """One uint8 per character of ``text``: 0-3 for A, C, G, T in either case (U too, as T, with
    ``rna``), 4 for any other (non-ASCII ones included)."""
    return (_RNA_CODES if rna else _BASE_CODES)[np.frombuffer(text.encode("ascii", "replace"), dtype=np.uint8)]


def label_string(ranks: Mapping[str, str | None], missing: str | None = None, down_to: str = "species") -> str:
    """The text-tower input for a specimen: its labels from order to species, missing ranks left out
    (or written as ``missing``: the upstream CLIBD models saw ``not_classified``, see models/upstream.py).

    ``{"order": "Diptera", "family": "Culicidae", "genus": None}`` gives ``"Diptera Culicidae"``;
    empty strings and placeholders (BIOSCAN's ``not_classified``: ``config.MISSING_LABELS``) count as missing. ``down_to`` cuts the string
    after that rank (``"genus"``: order, family, genus), whole labels, whatever spaces they hold.
    """
    labels = ((ranks.get(rank) or "").strip() for rank in RANKS[:RANKS.index(down_to) + 1])
    if missing is not None:
        return " ".join(missing if is_missing_label(label) else label for label in labels)
    return " ".join(label for label in labels if not is_missing_label(label))


def has_label(ranks: Mapping[str, str | None], rank: str) -> bool:
    """Whether a lineage names ``rank`` (empty and ``not_classified``, ``config.MISSING_LABELS``, do not count)."""
    return not is_missing_label(ranks.get(rank))


class _Tokenizer:
    """What a tower reads of every tokenizer: :meth:`encode`'s int64 arrays, as LongTensors."""

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, int64 arrays [len(texts), length]."""
        raise NotImplementedError

    def __call__(self, texts: Sequence[str]) -> dict[str, Any]:
        """``{"input_ids", "attention_mask"}`` as LongTensors [B, length]."""
        import torch

        ids, mask = self.encode(texts)
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


class KmerTokenizer(_Tokenizer):
    """Non-overlapping k-mers of a barcode padded with N (or cut) to ``max_len`` nucleotides.

    Vocabulary (``vocab="barcodebert-2023"``): ``<MASK>``=0, ``<CLS>``=1, ``<UNK>``=2, then the 4^k
    k-mers over ACGT in lexicographic order (``A...A``=3 ... ``T...T``=4^k+2); ``"barcodebert-v2"``
    has only ``<MASK>``=0, ``<UNK>``=1 in front. A k-mer holding any other character (N, IUPAC
    codes, gaps, ...) is ``<UNK>``; lowercase is accepted. The attention mask is 1 for k-mers that
    overlap the barcode and 0 for pure padding (``mask="overlap"``), or 1 only for k-mers lying
    wholly within the barcode (``mask="within"``, as BarcodeBERT's tokenizer: a last k-mer that
    reaches into the N-padding is masked too). ``prepend_token`` (e.g. 0 for the upstream CLIBD
    checkpoints) is put in front of every sequence with mask 1.
    """

    def __init__(self, k: int = 5, max_len: int = 660, prepend_token: int | None = None,
                 vocab: str = "barcodebert-2023", mask: str = "overlap"):
        if not 1 <= k <= MAX_K or max_len < 1:
            raise ValueError(f"need 1 <= k <= {MAX_K} and max_len >= 1, got k={k}, max_len={max_len}")
        if vocab not in KMER_SPECIALS:
            raise ValueError(f"unknown k-mer vocab {vocab!r} (expected one of {', '.join(KMER_SPECIALS)})")
        if mask not in KMER_MASKS:
            raise ValueError(f"unknown k-mer mask {mask!r} (expected one of {', '.join(KMER_MASKS)})")
        self.k = k
        self.max_len = max_len
        self.prepend_token = prepend_token
        self.vocab = vocab
        self.mask = mask
        self.specials = {token: index for index, token in enumerate(KMER_SPECIALS[vocab])}
        self.unk = self.specials["<UNK>"]
        self.n_kmers = -(-max_len // k)

    @property
    def vocab_size(self) -> int:
        return 4 ** self.k + len(self.specials)

    @property
    def length(self) -> int:
        """Tokens per barcode."""
        return self.n_kmers + (self.prepend_token is not None)

    def encode(self, barcodes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, both int64 arrays of shape [len(barcodes), length]."""
        if isinstance(barcodes, str):
            raise TypeError("encode() takes a sequence of barcodes, not a single string")
        width = self.n_kmers * self.k
        count = len(barcodes)
        # One byte per character ("?" for non-ASCII, which is not ACGT), N-padded to a k multiple.
        raw = "".join(barcode[: self.max_len].ljust(width, "N") for barcode in barcodes)
        codes = base_codes(raw)
        codes = codes.reshape(count, self.n_kmers, self.k)
        ids = np.zeros((count, self.n_kmers), dtype=np.int64)
        unknown = np.zeros((count, self.n_kmers), dtype=bool)
        for position in range(self.k):  # base-4 number, most significant base first
            base = codes[:, :, position]
            ids *= 4
            ids += base
            unknown |= base > 3
        ids += len(self.specials)
        ids[unknown] = self.unk
        lengths = np.fromiter((min(len(b), self.max_len) for b in barcodes), dtype=np.int64, count=count)
        ends = np.arange(self.n_kmers) * self.k + (self.k if self.mask == "within" else 1)
        mask = (ends <= lengths[:, None]).astype(np.int64)
        if self.prepend_token is not None:
            ids = np.concatenate([np.full((count, 1), self.prepend_token, dtype=np.int64), ids], axis=1)
            mask = np.concatenate([np.ones((count, 1), dtype=np.int64), mask], axis=1)
        return ids, mask

    def to_dict(self) -> dict[str, Any]:
        """A description other tools can tokenize from (written as dna_tokenizer.json)."""
        return {"type": "kmer", "k": self.k, "stride": self.k, "max_len": self.max_len, "pad": "N",
                "alphabet": "ACGT", "specials": dict(self.specials), "first_kmer_id": len(self.specials),
                "vocab_size": self.vocab_size, "prepend_token": self.prepend_token,
                "attention_mask": f"1 for k-mers {'starting' if self.mask == 'overlap' else 'wholly'} "
                                  "inside the barcode"}


class OverlappingKmerTokenizer(_Tokenizer):
    """Every overlapping k-mer of a barcode, for each k in ``ks`` (the kmer-bag tower's input).

    Gaps (``-`` and ``.``) are removed and leading/trailing characters other than ACGT stripped
    before the first ``max_len`` nucleotides are read, so aligned (gap-padded) barcodes tokenize
    like the raw ones. A k-mer holding any character other than ACGT (N, IUPAC codes) is not
    valid: it gets id 0 and mask 0, so an N run only removes the k-mers that overlap it. Ids:
    0 is padding; k-mers of the i-th k come after those of the k's before it, each in
    lexicographic order over ACGT.
    """

    _STRIP = "".join(chr(c) for c in range(33, 127) if chr(c) not in "ACGTacgt")

    def __init__(self, ks: tuple[int, ...] = (7,), max_len: int = 1000):
        if not ks or any(not 1 <= k <= MAX_K for k in ks) or max_len < max(ks):
            raise ValueError(f"need 1 <= k <= {MAX_K} for every k and max_len >= k, got ks={ks}, max_len={max_len}")
        self.ks, self.max_len = tuple(ks), max_len
        self.offsets = np.cumsum([1] + [4 ** k for k in self.ks])[:-1]

    @property
    def vocab_size(self) -> int:
        return 1 + sum(4 ** k for k in self.ks)

    def clean(self, barcode: str) -> str:
        """The barcode as read: gaps removed, non-ACGT ends stripped, cut to ``max_len``."""
        return barcode.replace("-", "").replace(".", "").strip(self._STRIP)[: self.max_len]

    def encode(self, barcodes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and mask, int64 arrays [len(barcodes), sum(L - k + 1)], L the longest cleaned
        barcode of the batch (at least the largest k)."""
        if isinstance(barcodes, str):
            raise TypeError("encode() takes a sequence of barcodes, not a single string")
        cleaned = [self.clean(b) for b in barcodes]
        longest = max([len(b) for b in cleaned] + [max(self.ks)])
        codes = base_codes("".join(b.ljust(longest, "N") for b in cleaned)).reshape(len(barcodes), longest)
        ids, masks = [], []
        for (number, valid), offset in zip(overlapping_kmers(codes, self.ks), self.offsets):
            ids.append(np.where(valid, number + offset, 0))
            masks.append(valid)
        return np.concatenate(ids, axis=1, dtype=np.int64), np.concatenate(masks, axis=1, dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """A description other tools can tokenize from (written as dna_tokenizer.json)."""
        return {"type": "overlapping-kmers", "ks": list(self.ks), "stride": 1, "max_len": self.max_len,
                "alphabet": "ACGT", "removed": "-.", "stripped": "leading/trailing non-ACGT",
                "padding_id": 0, "first_kmer_ids": [int(o) for o in self.offsets],
                "vocab_size": self.vocab_size, "attention_mask": "1 for k-mers of ACGT only"}


def overlapping_kmers(codes: np.ndarray, ks: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each k of ``ks``, ``(numbers, valid)`` ``[B, L - k + 1]``: the overlapping k-mers of the
    base codes ``[B, L]`` (:func:`base_codes`) as base-4 numbers (most significant base first; int32,
    k up to 15) and whether all their bases are ACGT. Each k-mer is joined from its two halves', so
    the codes are gone over about log2(k) times, not k."""
    joined = {1: ((codes & 3).astype(np.int32), codes < 4)}

    def join(k: int) -> tuple[np.ndarray, np.ndarray]:
        if k not in joined:
            head = (k + 1) // 2
            (first, first_ok), (second, second_ok) = join(head), join(k - head)
            width = codes.shape[1] - k + 1
            joined[k] = (first[:, :width] * 4 ** (k - head) + second[:, head: head + width],
                         first_ok[:, :width] & second_ok[:, head: head + width])
        return joined[k]

    return [join(k) for k in ks]


class TextTokenizer(_Tokenizer):
    """Uncased WordPiece (BERT) tokenizer: [CLS] label [SEP], padded/truncated to ``max_len``."""

    def __init__(self, vocab_file: str | Path, max_len: int):
        self.vocab_file = str(vocab_file)
        self.max_len = max_len

    def encode(self, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, int64 arrays [len(labels), max_len]."""
        if isinstance(labels, str):
            raise TypeError("encode() takes a sequence of labels, not a single string")
        encodings = _wordpiece(self.vocab_file, self.max_len).encode_batch(list(labels))
        ids = np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(labels), self.max_len)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64).reshape(ids.shape)
        return ids, mask


@functools.lru_cache(maxsize=8)
def _wordpiece(vocab_file: str, max_len: int):
    """A cached ``tokenizers`` BERT WordPiece tokenizer (same pipeline as transformers' BertTokenizer)."""
    from tokenizers import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer(vocab_file, lowercase=True)
    tokenizer.enable_truncation(max_len)
    tokenizer.enable_padding(length=max_len, pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    return tokenizer
