"""DNA tower: a BarcodeBERT-style BERT over non-overlapping k-mers of the barcode (``tower: "bert"``,
the default) or a bag of overlapping k-mers (``tower: "kmer-bag"``, models/kmer_bag.py)."""

from __future__ import annotations

from typing import Any

from torch import nn

from models.kmer_bag import KmerBagEncoder, kmer_bag_tokenizer
from models.tokenizers import KmerTokenizer, OverlappingKmerTokenizer


def dna_tokenizer(block: dict[str, Any]) -> KmerTokenizer | OverlappingKmerTokenizer:
    """The k-mer tokenizer of a resolved DNA block."""
    if block["tower"] == "kmer-bag":
        return kmer_bag_tokenizer(block)
    return KmerTokenizer(block["k"], block["max_len"], block["prepend_token"], block["kmer_vocab"],
                         block["kmer_mask"])


def build_dna_encoder(block: dict[str, Any], embed_dim: int, load_pretrained: bool = True) -> nn.Module:
    """BERT over k-mer ids (no padding index: barcodes are N-padded, which tokenizes to <UNK>),
    or the kmer-bag encoder."""
    if block["tower"] == "kmer-bag":
        return KmerBagEncoder(block, embed_dim)
    from models.bert import BertEncoder, build_bert  # transformers loads only for BERT towers

    vocab_size = dna_tokenizer(block).vocab_size
    return BertEncoder(build_bert(block, vocab_size, None, load_pretrained), embed_dim, block)
