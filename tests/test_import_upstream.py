"""`clibd import` checked against the authors' own code (../shared/reference/upstream).

Upstream encoders are built by upstream's ``load_clip_model`` from the 5M model yamls (random,
trained-looking weights; no downloads), saved as ``scripts/train_cl.py`` saves ``best.pth``,
imported with ``clibd import`` and run on 4 real photos, 8 real BOLD barcodes and their 8 label
strings. Upstream's inputs come from its own data pipeline (``construct_dataloader`` over an
HDF5 in its layout: image transform, k-mer pipeline, bert-small tokenizer), clibd's from its
own photo reader, tokenizers and transforms, so the comparison covers preprocessing too.
BarcodeBERT files (2023 k=5 and v2) are compared with BarcodeBERT's own loaders and pooling.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from clibd_cli.embedding.embedder import Embedder
from clibd_cli.io.images import load_image
from clibd_cli.main import cli
from fixtures.samples import CROPPED_1M, ORDER_PHOTOS, PHOTOS_5M, RANKS, bold_table
from fixtures.upstream import (FULL_FINETUNE_YAML, LORA_YAML, UPSTREAM, enter_upstream, trained_looking,
                               upstream_args, write_barcodebert_2023, write_barcodebert_v2,
                               write_upstream_hdf5)
from models import load_model
from models.dna import dna_tokenizer
from models.image import image_transform
from models.text import text_tokenizer

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not UPSTREAM.is_dir(), reason=f"{UPSTREAM} is absent: the authors' code "
                                 "is the oracle of these tests (see its README)")]
MIN_COSINE = 0.99999  # per input, between upstream's embedding and clibd's
MAX_SIMILAR = 1 - 10 * (1 - MIN_COSINE)  # distinct inputs stay this far apart, so the check can fail
SPLIT = "test_seen"
N_PHOTOS = 4


@pytest.fixture(scope="module")
def upstream():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: 2:20 for this file on 2 cores at load ~10, two threads 4:54
    with enter_upstream() as modules:
        yield modules
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """8 real BOLD records covering the tokenizers' cases (658 nt, longer than 660, N, IUPAC codes,
    short, a multiple of 5, no species); the first 4 carry real photos of different kinds (two
    1024x768 BIOSCAN-5M plates, a cropped and a downscaled BIOSCAN-1M specimen), which the rest reuse."""
    rows = sorted(bold_table()[1], key=lambda row: row["processid"])
    wanted = [lambda b, r: len(b) == 658, lambda b, r: len(b) > 660, lambda b, r: "N" in b,
              lambda b, r: bool(set(b) - set("ACGTN")), lambda b, r: len(b) < 400,
              lambda b, r: len(b) % 5 == 0 and len(b) < 660, lambda b, r: not r["species"],
              lambda b, r: not r["species"] and len(b) % 5 == 3]
    chosen: list[dict] = []
    for test in wanted:
        chosen.append(next(r for r in rows if test(r["dna_barcode"], r) and r not in chosen))
    photos = sorted(PHOTOS_5M.glob("*.jpg"))[:2] + sorted(CROPPED_1M.glob("*.jpg"))[:1] + \
        sorted(ORDER_PHOTOS.glob("*.jpg"))[:1]
    return [{"processid": row["processid"], "barcode": row["dna_barcode"], "photo": photos[i % N_PHOTOS],
             **{rank: row[rank] for rank in RANKS}} for i, row in enumerate(chosen)]


@pytest.fixture(scope="module")
def barcodebert_2023(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A random 2023 BarcodeBERT file (upstream's CLIBD builds its DNA tower from one)."""
    path = tmp_path_factory.mktemp("barcodebert") / "model_41.pth"
    return path, write_barcodebert_2023(path, seed=1)


def cosines(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray:
    a, b = (torch.as_tensor(np.asarray(x), dtype=torch.float64) for x in (a, b))
    return F.cosine_similarity(a, b, dim=-1).numpy()


def assert_same_and_distinct(theirs: np.ndarray, ours: np.ndarray, what: str) -> None:
    """Every input within MIN_COSINE of upstream, and distinct inputs (rows that upstream does
    not embed identically) far further apart than that."""
    agreement = cosines(theirs, ours)
    assert agreement.min() >= MIN_COSINE, f"{what}: cosine to upstream per input {agreement}"
    pairs = cosines(theirs[:, None], theirs[None])[np.triu_indices(len(theirs), 1)]
    distinct = pairs[pairs < 1 - 1e-9]
    assert len(distinct) and distinct.max() <= MAX_SIMILAR, f"{what}: inputs hardly differ ({distinct.max()})"


def upstream_embeddings(upstream, model, args) -> dict[str, np.ndarray]:
    """Upstream inference (bioscanclip/epoch/inference_epoch.py, get_feature_and_label): one batch
    from construct_dataloader through SimpleCLIP.forward (its towers are independent, so the
    photos of the first N_PHOTOS records go in with all 8 barcodes and labels)."""
    loader = upstream.dataset.construct_dataloader(args, SPLIT, args.model_config.batch_size,
                                                   upstream.dna_encoder.get_sequence_pipeline(),
                                                   return_language=True)
    _, images, dna, input_ids, token_type_ids, attention_mask, _ = next(iter(loader))
    text = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
    with torch.no_grad():
        image_out, dna_out, text_out, _, _ = model.eval()(images[:N_PHOTOS], dna, text)
    return {"image": image_out.numpy(), "dna": dna_out.numpy(), "text": text_out.numpy()}


def build_and_save_upstream(upstream, tmp_path: Path, model_yaml: Path, records: list[dict],
                            barcodebert: Path) -> dict[str, np.ndarray]:
    """Build upstream's model for ``model_yaml``, save tmp_path/best.pth, return its embeddings."""
    hdf5 = write_upstream_hdf5(tmp_path / "bioscan_5m.hdf5", SPLIT, records)
    args = upstream_args(model_yaml, hdf5, barcodebert, batch_size=len(records))
    torch.manual_seed(2)
    model = upstream.simple_clip.load_clip_model(args)
    trained_looking(model, seed=2, sharpen={"cls.predictions.decoder": 0.1,
                                            "image_encoder.base_image_encoder.blocks": 0.1})
    # scripts/train_cl.py: torch.save(original_model.state_dict(), best_ckpt_path), no DDP prefix
    torch.save(model.state_dict(), tmp_path / "best.pth")
    return upstream_embeddings(upstream, model, args)


@pytest.mark.parametrize("model_yaml", [FULL_FINETUNE_YAML, LORA_YAML], ids=["full-finetune", "lora"])
def test_imported_checkpoint_embeds_like_upstream(upstream, records, barcodebert_2023, tmp_path, model_yaml):
    theirs = build_and_save_upstream(upstream, tmp_path, model_yaml, records, barcodebert_2023[0])
    result = CliRunner().invoke(cli, ["import", "--from", "clibd-checkpoint", str(tmp_path / "best.pth"),
                                      "--config", str(model_yaml), "-o", str(tmp_path / "imported")])
    assert result.exit_code == 0, result.output
    model = load_model(tmp_path / "imported")
    # What clibd embed, index and evaluate run: clibd's photo reader, tokenizers and transforms.
    embedder = Embedder(model, "cpu", batch_size=len(records), precision="fp32")
    photos = [load_image(r["photo"]) for r in records[:N_PHOTOS]]
    barcodes = [r["barcode"] for r in records]
    labels = [model.label_string({rank: r[rank] for rank in RANKS}) for r in records]
    assert_same_and_distinct(theirs["image"], embedder.images(photos), "photos")
    assert_same_and_distinct(theirs["dna"], embedder.barcodes(barcodes), "barcodes")
    assert_same_and_distinct(theirs["text"], embedder.labels(labels), "labels")
    if model_yaml == FULL_FINETUNE_YAML:
        check_each_quirk_matters(model, theirs, photos, barcodes, labels)


def check_each_quirk_matters(model, theirs: dict[str, np.ndarray], photos: list, barcodes: list[str],
                             labels: list[str]) -> None:
    """Leaving out any upstream quirk clibd reproduces moves the embeddings beyond MIN_COSINE."""
    image, dna, text = model.config["image"], model.config["dna"], model.config["text"]
    with torch.no_grad():
        pixels = image_transform({**image, "mean": [0.5] * 3, "std": [0.5] * 3})(photos[0])  # timm's stats
        assert cosines(theirs["image"][0], model.encode_image(pixels[None])[0]) < MIN_COSINE
        tokens = dna_tokenizer({**dna, "prepend_token": 1})(barcodes[:1])  # <CLS> in front, not <MASK>
        assert cosines(theirs["dna"][0], model.encode_dna(**tokens)[0]) < MIN_COSINE
        wider = model.encode_text(**text_tokenizer({**text, "max_len": 32})(labels))  # pads in the mean
        assert (cosines(theirs["text"], wider) < MIN_COSINE).all()
    without = [label.replace(" not_classified", "") for label in labels]  # clibd's own label strings
    changed = [i for i, label in enumerate(labels) if label != without[i]]
    assert changed and (cosines(theirs["text"][changed], model.encode_text(**model.tokenize_text(
        [without[i] for i in changed])).detach()) < MIN_COSINE).all()


# ---------------------------------------------------------------- BarcodeBERT
class _Frame(dict):
    """The columns of a pandas DataFrame that BarcodeBERT's representations_from_df reads."""

    class Column(list):
        def to_numpy(self) -> np.ndarray:
            return np.array(self)

    def __init__(self, barcodes: list[str]):
        super().__init__(nucleotides=self.Column(barcodes), order_name=self.Column(["x"] * len(barcodes)),
                         species_name=self.Column([str(i) for i in range(len(barcodes))]))


def barcodebert_features(upstream, model, specials: list[str], k: int, barcodes: list[str]) -> np.ndarray:
    """BarcodeBERT's embedding: its KmerTokenizer (stride k, N-padded to 660, attention mask) over
    the vocabulary its inference.py / knn_probing.py build, then datasets.representations_from_df."""
    kmers = ["".join(kmer) for kmer in itertools.product("ACGT", repeat=k)]
    vocab = upstream.bb_datasets.build_vocab_from_dict(dict.fromkeys(kmers, 1), specials=specials)
    vocab.set_default_index(vocab[specials[-1]])
    tokenizer = upstream.bb_datasets.KmerTokenizer(k, vocab, stride=k, padding=True, max_len=660)
    latent, _, _ = upstream.bb_datasets.representations_from_df(_Frame(barcodes), "species_name", model,
                                                                tokenizer, "CANADA-1.5M")
    return latent


def check_import_pools_like_barcodebert(path: Path, tmp_path: Path, latent: np.ndarray,
                                        barcodes: list[str]) -> None:
    """``clibd import --from barcodebert`` into a DNA-only model with a square (768) projection:
    its embeddings equal the projected BarcodeBERT features iff the pooled features are equal."""
    preset = tmp_path / "dna-768.json"
    preset.write_text('{"embed_dim": 768, "dna": {}}')
    result = CliRunner().invoke(cli, ["import", "--from", "barcodebert", str(path), "--preset", str(preset),
                                      "-o", str(tmp_path / "imported")])
    assert result.exit_code == 0, result.output
    model = load_model(tmp_path / "imported")
    with torch.no_grad():
        theirs = model.dna_encoder.proj(torch.from_numpy(latent).float()).numpy()
    ours = Embedder(model, "cpu", batch_size=len(barcodes), precision="fp32").barcodes(barcodes)
    assert_same_and_distinct(theirs, ours, "barcodes")


def test_barcodebert_2023_import_pools_like_barcodebert(upstream, records, barcodebert_2023, tmp_path):
    barcodes = [r["barcode"] for r in records]
    # The DDP pretraining (MGPU_MLM_train.py) saved the wrapped model: module. prefixes.
    state = {f"module.{name}": tensor for name, tensor in barcodebert_2023[1].items()}
    torch.save(state, tmp_path / "model_41.pth")
    reference = upstream.bb_io.load_old_pretrained_model(str(tmp_path / "model_41.pth"), k_mer=5)
    # load_old_pretrained_model loads with strict=False: make sure the weights did arrive.
    assert torch.equal(reference.bert.encoder.layer[11].output.dense.weight,
                       state["module.bert.encoder.layer.11.output.dense.weight"])
    latent = barcodebert_features(upstream, reference, ["<MASK>", "<CLS>", "<UNK>"], 5, barcodes)
    check_import_pools_like_barcodebert(tmp_path / "model_41.pth", tmp_path, latent, barcodes)


def test_barcodebert_v2_import_pools_like_barcodebert(upstream, records, tmp_path):
    barcodes = [r["barcode"] for r in records]
    path = tmp_path / "CANADA-1.5M-BEST_k4_4_4.pt"
    write_barcodebert_v2(upstream, path, seed=4)
    with torch.serialization.safe_globals([argparse.Namespace]):  # upstream ran torch 2.0 (no weights_only)
        reference, _ = upstream.bb_io.load_pretrained_model(str(path))
    reference.classifier = torch.nn.Identity()  # as knn_probing.py does
    latent = barcodebert_features(upstream, reference, ["[MASK]", "[UNK]"], 4, barcodes)
    check_import_pools_like_barcodebert(path, tmp_path, latent, barcodes)


@pytest.mark.parametrize("model_yaml", [FULL_FINETUNE_YAML, LORA_YAML], ids=["full-finetune", "lora"])
def test_the_authors_model_yamls_give_towers_and_output_dim(model_yaml):
    from models.importing import read_upstream_yaml

    assert read_upstream_yaml(model_yaml) == (("image", "dna", "text"), 768)
