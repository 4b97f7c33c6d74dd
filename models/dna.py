"""DNA tower: a BarcodeBERT-style BERT over non-overlapping k-mers of the barcode."""

from __future__ import annotations

from typing import Any

from models.bert import BertEncoder, build_bert
from models.tokenizers import KmerTokenizer


def dna_tokenizer(block: dict[str, Any]) -> KmerTokenizer:
    """The k-mer tokenizer of a resolved DNA block."""
    return KmerTokenizer(block["k"], block["max_len"], block["prepend_token"], block["kmer_vocab"],
                         block["kmer_mask"])


def build_dna_encoder(block: dict[str, Any], embed_dim: int, load_pretrained: bool = True) -> BertEncoder:
    """BERT over k-mer ids. No padding index: barcodes are N-padded, which tokenizes to <UNK>."""
    vocab_size = dna_tokenizer(block).vocab_size
    return BertEncoder(build_bert(block, vocab_size, None, load_pretrained), embed_dim, block)
