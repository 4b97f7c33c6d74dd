"""The BERT core shared by the DNA and text towers: BERT -> pooling -> linear projection.

The default pooling is the mean over the attention mask. Two other poolings reproduce the
upstream CLIBD checkpoints: ``mean-all-positions`` (text: padding included) and
``mlm-softmax-mean`` (DNA: BarcodeBERT's MLM transform -> projection -> softmax over the
features -> mean over every position).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import BertConfig, BertModel
from transformers.models.bert.modeling_bert import BertPredictionHeadTransform
from transformers.utils import logging as hf_logging

from models.errors import ModelError, counted


class BertEncoder(nn.Module):
    """BERT over token ids; the last hidden state is pooled as the block's ``pooling`` says and projected.

    With ``attend_padding`` the attention mask is not passed to BERT (every position is attended).
    """

    def __init__(self, bert: BertModel, embed_dim: int, block: dict[str, Any]):
        super().__init__()
        self.bert = bert
        self.pooling = block["pooling"]
        self.attend_padding = block["attend_padding"]
        if self.pooling == "mlm-softmax-mean":
            self.transform = BertPredictionHeadTransform(bert.config)
        self.proj = nn.Linear(bert.config.hidden_size, embed_dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        bert_mask = None if self.attend_padding else attention_mask
        hidden = self.bert(input_ids=input_ids, attention_mask=bert_mask).last_hidden_state
        if self.pooling == "mlm-softmax-mean":
            return self.proj(self.transform(hidden)).softmax(dim=-1).mean(dim=1)
        if self.pooling == "mean-all-positions":
            return self.proj(hidden.mean(dim=1))
        return self.proj(masked_mean(hidden, attention_mask))


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden [B, L, H] over positions where mask [B, L] is 1 (zeros for an all-zero mask)."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def build_bert(block: dict[str, Any], vocab_size: int, pad_token_id: int | None,
               load_pretrained: bool) -> BertModel:
    """A BertModel (no pooler) from a resolved block; weights from its local ``pretrained`` dir if asked."""
    dropout = {"hidden_dropout_prob": block["dropout"], "attention_probs_dropout_prob": block["dropout"]}
    if load_pretrained and block["pretrained"]:
        try:
            with _quiet_transformers():  # we check the loading info ourselves
                bert, info = BertModel.from_pretrained(block["pretrained"], local_files_only=True,
                                                       add_pooling_layer=False, output_loading_info=True,
                                                       **dropout)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{block['pretrained']}: cannot load BERT weights ({exc})") from exc
        broken = info["missing_keys"] or info.get("mismatched_keys")
        if broken:
            raise ModelError(f"{block['pretrained']}: checkpoint lacks "
                             f"{counted(len(broken), 'BERT weight')}, "
                             f"e.g. {', '.join(sorted(map(str, broken))[:3])}")
        return bert.float()
    try:
        config = BertConfig(vocab_size=vocab_size, hidden_size=block["hidden_size"],
                            num_hidden_layers=block["num_layers"], num_attention_heads=block["num_heads"],
                            intermediate_size=block["intermediate_size"],
                            max_position_embeddings=block["max_position_embeddings"],
                            pad_token_id=pad_token_id, **dropout, **block["bert_kwargs"])
        return BertModel(config, add_pooling_layer=False)
    except Exception as exc:  # noqa: BLE001 - transformers checks bert_kwargs with several error types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelError(f"BERT settings {block['bert_kwargs']} make no BERT "
                         f"({type(exc).__name__}: {reason[:200]})") from exc


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bar and load report (they would land on the CLI's stderr)."""
    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
