"""Text tower: a BERT over WordPiece tokens of the taxonomy label string."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from models.config import vocab_path, vocab_tokens
from models.errors import ModelError
from models.tokenizers import TextTokenizer

if TYPE_CHECKING:
    from models.bert import BertEncoder


def text_tokenizer(block: dict[str, Any]) -> TextTokenizer:
    """The WordPiece tokenizer of a resolved text block."""
    return TextTokenizer(vocab_path(block), block["max_len"])


def build_text_encoder(block: dict[str, Any], embed_dim: int, load_pretrained: bool = True) -> BertEncoder:
    """BERT over the vocab's WordPiece ids; [PAD] is the padding index."""
    from models.bert import BertEncoder, build_bert  # transformers loads only when a text tower is built

    tokens = vocab_tokens(vocab_path(block))
    if "[PAD]" not in tokens:
        raise ModelError(f"{vocab_path(block)}: not a BERT WordPiece vocab (no [PAD] token)")
    return BertEncoder(build_bert(block, len(tokens), tokens.index("[PAD]"), load_pretrained), embed_dim,
                       block)
