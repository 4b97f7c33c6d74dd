"""`clibd train --label-ranks`: label strings cut at coarser ranks as extra contrastive terms."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from clibd_cli.data.store_writer import DatasetWriter
from clibd_cli.main import cli
from clibd_cli.training import loop
from clibd_cli.training.datasets import SpecimenDataset
from clibd_cli.training.step import forward_backward
from models import create_model
from models.config import PRESET_DIR
from models.losses import ContrastiveLoss, _label_classes_loss
from models.tokenizers import has_label, label_string

BARCODE = "AACTTTATATTTTATTTTTGGAATTTGAGCAGGAATAGTAGGAACTTCTTTAAGATTATTAATTCGAGC"
# (order, family, genus, species): species names hold spaces, one record lacks its family,
# one its genus and species, two share a genus, two share an order only.
LINEAGES = [("Lepidoptera", "Tortricidae", "Acleris", "Acleris chalybeana"),
            ("Lepidoptera", "Tortricidae", "Acleris", "Acleris emargana"),
            ("Lepidoptera", None, "Idaea", "Idaea aversata"),
            ("Diptera", "Culicidae", None, None),
            ("Diptera", "Sciaridae", "Bradysia", "Bradysia sp. 1ES")]
GENUS = ["Lepidoptera Tortricidae Acleris", "Lepidoptera Tortricidae Acleris", "Lepidoptera Idaea", None,
         "Diptera Sciaridae Bradysia"]


def test_label_string_cut_at_a_rank_keeps_whole_labels():
    ranks = dict(zip(("order", "family", "genus", "species"), LINEAGES[4]))
    assert label_string(ranks) == "Diptera Sciaridae Bradysia Bradysia sp. 1ES"
    assert label_string(ranks, down_to="genus") == "Diptera Sciaridae Bradysia"  # not the first 3 words
    assert label_string(ranks, down_to="order") == "Diptera"
    no_family = dict(zip(("order", "family", "genus", "species"), LINEAGES[2]))
    assert label_string(no_family, down_to="genus") == "Lepidoptera Idaea"
    assert label_string(no_family, "not_classified", down_to="genus") == "Lepidoptera not_classified Idaea"
    assert not has_label({"genus": "not_classified"}, "genus") and not has_label({}, "genus")
    assert has_label(no_family, "genus")


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "hand.h5"
    with DatasetWriter(path, {"source": "hand-made"}) as writer:
        for i, lineage in enumerate(LINEAGES):
            writer.add("train", {"processid": f"P{i}", "barcode": BARCODE[i:],
                                 **dict(zip(("order", "family", "genus", "species"), lineage))})
    config = json.loads((PRESET_DIR / "clibd-tiny.json").read_text())
    for tower in ("dna", "text"):
        config[tower]["dropout"] = 0.0
    (path.parent / "tiny.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    return path, create_model(path.parent / "tiny.json", modalities=("dna", "text")).eval()


def test_batches_carry_the_cut_labels(hand_made):
    path, model = hand_made
    dataset = SpecimenDataset(path, ["train"], ("dna", "text"), model, train=True, label_ranks=("order", "genus"))
    samples = [dataset[i] for i in range(len(dataset))]
    assert [s["label@genus"] for s in samples] == GENUS
    assert [s["label@order"] for s in samples] == [lineage[0] for lineage in LINEAGES]
    batch = dataset.collate(samples)
    assert batch["present"]["text@genus"].tolist() == [g is not None for g in GENUS]
    assert batch["present"]["text@order"].all()
    expected = model.tokenize_text([g or "" for g in GENUS])
    assert torch.equal(batch["inputs"]["text@genus_input_ids"], expected["input_ids"])
    plain = SpecimenDataset(path, ["train"], ("dna", "text"), model, train=True)
    assert not any("@" in key for key in plain.collate([plain[i] for i in range(5)])["inputs"])


def test_loss_averages_the_rank_terms_with_the_full_label_term(hand_made):
    path, model = hand_made
    dataset = SpecimenDataset(path, ["train"], ("dna", "text"), model, train=True, label_ranks=("order", "genus"))
    batch = dataset.collate([dataset[i] for i in range(len(dataset))])
    config = dict(model="x", data=str(path), out="x", modalities=("dna", "text"), positives="label")
    with_ranks = forward_backward(model, batch, ContrastiveLoss(), _no_autocast, "cpu",
                                  loop.TrainConfig(**config, label_ranks=("order", "genus")), sync=True)[0]
    without = forward_backward(model, batch, ContrastiveLoss(), _no_autocast, "cpu",
                               loop.TrainConfig(**config), sync=True)[0]
    assert with_ranks != pytest.approx(without, rel=1e-3)
    # by hand: each rank's term compares the barcodes with the batch's distinct cut strings
    with torch.no_grad():
        dna = model.encode_dna(**model.tokenize_dna([BARCODE[i:] for i in range(5)]))
        scale = model.logit_scale.exp()
        terms = []
        for strings in ([lineage[0] for lineage in LINEAGES], GENUS):
            keep = [i for i, s in enumerate(strings) if s is not None]
            text = model.encode_text(**model.tokenize_text([strings[i] for i in keep]))
            ids = torch.tensor([sorted(set(filter(None, strings))).index(strings[i]) for i in keep])
            terms.append(_label_classes_loss(dna[keep], text, ids, scale).item())
    assert with_ranks == pytest.approx((without + sum(terms)) / 3, rel=1e-5)


def _no_autocast():
    return torch.autocast("cpu", enabled=False)


def test_label_ranks_need_label_positives_and_a_coarser_rank(tmp_path):
    common = ["train", "--data", str(tmp_path / "none.h5"), "--out", str(tmp_path / "run"), "--modalities", "dna,text"]
    (tmp_path / "none.h5").write_bytes(b"")
    out = CliRunner().invoke(cli, [*common, "--label-ranks", "order"])
    assert out.exit_code != 0 and "needs --positives label" in out.output
    out = CliRunner().invoke(cli, [*common, "--positives", "label", "--label-ranks", "species"])
    assert out.exit_code != 0 and "choose from order, family, genus" in out.output
