"""The kmer-bag DNA tower: overlapping k-mer tokens, gap/N invariance, config, save/load, training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from models import ModelError, create_model, load_model, save_model
from models.config import PRESET_DIR
from models.losses import ContrastiveLoss, label_ids
from models.tokenizers import OverlappingKmerTokenizer

BARCODE = "AACTTTATATTTTATTTTTGGAATTTGAGCAGGAATAGTAGGAACTTCTTTAAGATTATTAATTCGAGC"
TINY = {"tower": "kmer-bag", "ks": [3, 4], "bag_dim": 8, "hidden_size": 16, "dropout": 0.0}


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    """clibd-tiny with a small kmer-bag DNA tower, as a config file."""
    path = tmp_path_factory.mktemp("config") / "bag.json"
    path.write_text(json.dumps({**json.loads((PRESET_DIR / "clibd-tiny.json").read_text()), "dna": TINY}))
    return path


def tiny_bag(config: Path, **dna):
    torch.manual_seed(0)
    return create_model(config, modalities=("dna", "text"), dna=dna)


def test_hand_made_example():
    ids, mask = OverlappingKmerTokenizer((2, 3), max_len=100).encode(["ACGT"])
    # 2-mers AC CG GT (ids 1 + 1, 1 + 6, 1 + 11), then 3-mers ACG CGT (1 + 16 + 6, 1 + 16 + 27)
    assert ids.tolist() == [[2, 7, 12, 23, 44]] and mask.tolist() == [[1] * 5]


def test_gaps_padding_case_and_n_runs():
    tok = OverlappingKmerTokenizer((4,), max_len=1000)
    plain = tok.encode([BARCODE])
    for variant in ("---" + BARCODE + "-----", "NNNN" + BARCODE + "nn", ".." + BARCODE.lower(),
                    BARCODE[:30] + "--" + BARCODE[30:], BARCODE[:30] + ".." + BARCODE[30:]):
        ids, mask = tok.encode([variant])
        assert np.array_equal(ids[:, : plain[0].shape[1]], plain[0]) and mask.sum() == plain[1].sum()
    ids, mask = tok.encode([BARCODE[:30] + "NNNNN" + BARCODE[35:]])
    assert mask.sum() == plain[1].sum() - (5 + 3)  # the k-mers overlapping the N run are not valid
    assert (ids[mask == 0] == 0).all()


def test_width_max_len_and_empty():
    tok = OverlappingKmerTokenizer((3, 5), max_len=20)
    ids, mask = tok.encode(["ACGT" * 10, "ACG"])
    assert ids.shape == (2, 18 + 16) and mask[1].sum() == 1
    assert tok.encode([])[0].shape == (0, 3 + 1) and tok.encode([""])[1].sum() == 0
    assert tok.vocab_size == 1 + 64 + 1024 and tok.to_dict()["first_kmer_ids"] == [1, 65]
    with pytest.raises(ValueError):
        OverlappingKmerTokenizer((9,))
    with pytest.raises(ValueError, match="max_len >= k"):  # no barcode could give a k-mer
        OverlappingKmerTokenizer((3, 5), max_len=4)


def test_padded_and_n_run_barcodes_embed_like_the_plain_one(tiny_config):
    model = tiny_bag(tiny_config)
    with torch.no_grad():
        out = model.encode_dna(**model.tokenize_dna([BARCODE, "-" * 40 + BARCODE + "-" * 40, "NN" + BARCODE,
                                                     BARCODE[:40] + "N" * 3 + BARCODE[43:]]))
    assert torch.allclose(out[0], out[1], atol=1e-6) and torch.allclose(out[0], out[2], atol=1e-6)
    assert float(out[0] @ out[3]) > 0.9
    with torch.no_grad():  # a shorter barcode batched with a longer one: its padding does not count
        alone = model.encode_dna(**model.tokenize_dna([BARCODE[:100]]))
        batched = model.encode_dna(**model.tokenize_dna([BARCODE[:100], BARCODE]))
    assert torch.allclose(alone[0], batched[0], atol=1e-6)


def test_the_towers_max_len_cuts_the_barcodes_it_reads(tiny_config):
    model = tiny_bag(tiny_config, max_len=50)
    assert model.dna_tokenizer.max_len == 50
    with torch.no_grad():
        out = model.encode_dna(**model.tokenize_dna([BARCODE, BARCODE[:50]]))
    assert torch.allclose(out[0], out[1], atol=1e-6)


def test_config_errors_and_fingerprint_round_trip(tiny_config, tmp_path):
    for dna, message in (({"ks": []}, "dna.ks must be"), ({"ks": [4, 9]}, "dna.ks must be"),
                         ({"num_layers": 2}, "unknown key"), ({"tower": "lstm"}, "dna.tower must be"),
                         ({"pretrained": "x"}, "not supported by the kmer-bag")):
        with pytest.raises(ModelError, match=message):
            tiny_bag(tiny_config, **dna)
    model = tiny_bag(tiny_config)
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.fingerprint() == model.fingerprint() and again.config["dna"]["tower"] == "kmer-bag"
    assert json.loads((tmp_path / "m" / "dna_tokenizer.json").read_text())["type"] == "overlapping-kmers"
    fast = create_model("clibd-fast", modalities=("dna",))
    assert sum(p.numel() for p in fast.parameters()) * 2 / 1e6 < 10  # fp16 MB


def log_softmax_by_hand(row):
    lse = math.log(sum(math.exp(v) for v in row))
    return [v - lse for v in row]


def test_label_positives_and_dna_dna_term():
    torch.manual_seed(0)
    dna, text, image = (torch.nn.functional.normalize(torch.randn(4, 3, dtype=torch.float64), dim=1)
                        for _ in "abc")
    text[1] = text[0]  # records 0 and 1 share a label string
    scale = torch.tensor(2.0, dtype=torch.float64)
    labels = torch.tensor([7, 7, 3, 5])
    distinct = ContrastiveLoss()(dict(dna=dna, text=text), scale, labels=torch.arange(4))
    assert distinct.item() == pytest.approx(ContrastiveLoss()(dict(dna=dna, text=text), scale).item(), rel=1e-12)
    # dna-text: each record against the 3 distinct labels (0=label 7, 1=label 3, 2=label 5) ...
    classes = [text[0], text[2], text[3]]
    target = [0, 0, 1, 2]
    logits = [[float(scale * d @ t) for t in classes] for d in dna]
    forward = -sum(log_softmax_by_hand(row)[target[i]] for i, row in enumerate(logits)) / 4
    # ... and each label against the 4 records, its records sharing the target
    columns = [list(c) for c in zip(*logits)]
    backward = -sum(sum(log_softmax_by_hand(col)[i] for i in range(4) if target[i] == c)
                    / target.count(c) for c, col in enumerate(columns)) / 3
    by_hand = (forward + backward) / 2
    loss = ContrastiveLoss()(dict(dna=dna, text=text), scale, labels=labels).item()
    assert loss == pytest.approx(by_hand, rel=1e-12)
    # dna-image: B x B multi-hot targets, normalised
    sims = [[float(scale * d @ i) for i in image] for d in dna]

    def soft_ce(rows):
        return -sum(sum(log_softmax_by_hand(row)[j] for j in range(4) if labels[j] == labels[i])
                    / int((labels == labels[i]).sum()) for i, row in enumerate(rows)) / 4

    multi_hot = (soft_ce(sims) + soft_ce([list(c) for c in zip(*sims)])) / 2
    assert ContrastiveLoss()(dict(dna=dna, image=image), scale, labels=labels).item() == pytest.approx(
        multi_hot, rel=1e-12)
    dd = [[float(scale * x @ y) for y in dna] for x in dna]
    supcon = [-(dd[i][1 - i] - math.log(sum(math.exp(dd[i][j]) for j in range(4) if j != i)))
              for i in (0, 1)]  # only rows 0 and 1 have a positive
    with_dd = ContrastiveLoss(dna_dna=0.5)(dict(dna=dna, text=text), scale, labels=labels).item()
    assert with_dd == pytest.approx(by_hand + 0.5 * sum(supcon) / 2, rel=1e-9)
    with pytest.raises(ValueError, match="needs labels"):
        ContrastiveLoss(dna_dna=0.5)(dict(dna=dna, text=text), scale)


def test_label_ids():
    ids = torch.tensor([[101, 5, 6, 0], [101, 5, 6, 0], [101, 5, 7, 0]])
    out = label_ids(ids, torch.tensor([10, 11, 12]), torch.tensor([True, True, True]))
    assert out[0] == out[1] != out[2]
    out = label_ids(ids, torch.tensor([10, 11, 12]), torch.tensor([True, False, True]))
    assert out[1] == -12 and out[0] != out[1]

