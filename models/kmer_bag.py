"""DNA tower "kmer-bag": a fastText-style bag of overlapping k-mers -> mean -> MLP.

Each barcode is read as its overlapping k-mers for every k in the block's ``ks`` (one table of
4^k embeddings per k, exact, no hashing); the embeddings of its valid k-mers are averaged and
passed through LayerNorm and a two-layer MLP to ``embed_dim``. It is a learned map of the k-mer
profile that ``clibd_cli/embedding/kmer.py`` uses as is, cheap enough to train to convergence on
a CPU and to embed thousands of barcodes per second. See ``models.tokenizers.OverlappingKmerTokenizer``
for what counts as a valid k-mer (gap padding and N runs do not change the embedding).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models.tokenizers import OverlappingKmerTokenizer


def kmer_bag_tokenizer(block: dict[str, Any]) -> OverlappingKmerTokenizer:
    """The overlapping k-mer tokenizer of a resolved kmer-bag DNA block."""
    return OverlappingKmerTokenizer(tuple(block["ks"]), block["max_len"])


class KmerBagEncoder(nn.Module):
    """Mean of k-mer embeddings (valid k-mers only) -> LayerNorm -> Linear -> GELU -> Linear."""

    def __init__(self, block: dict[str, Any], embed_dim: int):
        super().__init__()
        rows = kmer_bag_tokenizer(block).vocab_size
        self.kmers = nn.EmbeddingBag(rows, block["bag_dim"], mode="sum", padding_idx=0)
        nn.init.normal_(self.kmers.weight, std=0.02)
        with torch.no_grad():
            self.kmers.weight[0].zero_()
        self.norm = nn.LayerNorm(block["bag_dim"])
        self.mlp = nn.Sequential(nn.Linear(block["bag_dim"], block["hidden_size"]), nn.GELU(),
                                 nn.Dropout(block["dropout"]), nn.Linear(block["hidden_size"], embed_dim))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        weights = attention_mask.to(self.kmers.weight.dtype)
        total = self.kmers(input_ids, per_sample_weights=weights)
        return self.mlp(self.norm(total / weights.sum(dim=1, keepdim=True).clamp(min=1)))
