"""`clibd import`: upstream CLIBD checkpoints and BarcodeBERT weights, checked against a reference
forward pass written here from the CLIBD authors' published code, on synthetic checkpoints
with the published key names (tiny widths; the full clibd-paper key/shape list is checked on meta).
Fast and independent of ../shared; tests/test_import_upstream.py runs the authors' own code."""

import itertools
import json
import math
import pickle
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from safetensors.torch import save_file

from clibd_cli.main import cli
from models import ModelError, create_model, load_model, save_model
from models.config import VOCAB_DIR
from models.upstream import import_barcodebert, import_clibd_checkpoint
from models.importing import read_checkpoint

TINY = {"embed": 24, "vit": 32, "vit_depth": 2, "vit_heads": 2, "patch": 8, "image": 32,
        "dna": 32, "dna_layers": 2, "dna_heads": 2, "text": 32, "text_layers": 2, "text_heads": 2}
PAPER = {"embed": 768, "vit": 768, "vit_depth": 12, "vit_heads": 12, "patch": 16, "image": 224,
         "dna": 768, "dna_layers": 12, "dna_heads": 12, "text": 512, "text_layers": 4, "text_heads": 8}
# Upper case only: upstream turns lowercase k-mers into <UNK>, clibd reads them as upper case
# (BIOSCAN barcodes and everything clibd prepares are upper case).
BARCODES = ["ACGTTGCAAGTCCGATTACG" * 40, "AACTTTATATTTTATTTTTGGNNTGRTCAGG-ACGT", "ACGT" * 30, ""]
LABELS = ["Diptera Sciaridae Corynoptera Corynoptera boletiphaga",
          "Hymenoptera Braconidae Aleiodes Aleiodes sp. 1", "Lepidoptera not_classified not_classified x"]


# ---------------------------------------------------------------- synthetic upstream checkpoints
def upstream_shapes(d: dict, lora_bert: bool = False) -> dict[str, tuple]:
    """Every tensor of an upstream SimpleCLIP state_dict (full fine-tuning layout unless lora_bert)."""
    shapes: dict[str, tuple] = {"logit_scale": ()}
    vit, n = d["vit"], (d["image"] // d["patch"]) ** 2
    pre = "image_encoder.base_image_encoder."
    shapes.update({pre + "cls_token": (1, 1, vit), pre + "pos_embed": (1, n + 1, vit),
                   pre + "patch_embed.proj.weight": (vit, 3, d["patch"], d["patch"]),
                   pre + "patch_embed.proj.bias": (vit,), pre + "norm.weight": (vit,),
                   pre + "norm.bias": (vit,),
                   pre + "head.weight": (d["embed"], vit), pre + "head.bias": (d["embed"],)})
    for i in range(d["vit_depth"]):
        b = f"{pre}blocks.{i}."
        shapes.update({b + "norm1.weight": (vit,), b + "norm1.bias": (vit,), b + "norm2.weight": (vit,),
                       b + "norm2.bias": (vit,), b + "attn.qkv.qkv.weight": (3 * vit, vit),
                       b + "attn.qkv.qkv.bias": (3 * vit,), b + "attn.proj.weight": (vit, vit),
                       b + "attn.proj.bias": (vit,), b + "mlp.fc1.weight": (4 * vit, vit),
                       b + "mlp.fc1.bias": (4 * vit,), b + "mlp.fc2.weight": (vit, 4 * vit),
                       b + "mlp.fc2.bias": (vit,)})
        for x in "qv":  # rank-4 LoRA in every ViT block, even after full fine-tuning
            shapes.update({b + f"attn.qkv.linear_a_{x}.weight": (4, vit),
                           b + f"attn.qkv.linear_b_{x}.weight": (vit, 4)})
    pre = "dna_encoder.base_dna_encoder."
    shapes.update(bert_shapes(pre + "bert.", d["dna"], d["dna_layers"], 1027, lora_bert))
    h = d["dna"]
    shapes.update({pre + "bert.embeddings.position_ids": (1, 512),
                   pre + "cls.predictions.transform.dense.weight": (h, h),
                   pre + "cls.predictions.transform.dense.bias": (h,),
                   pre + "cls.predictions.transform.LayerNorm.weight": (h,),
                   pre + "cls.predictions.transform.LayerNorm.bias": (h,),
                   pre + "cls.predictions.bias": (1027,),
                   pre + "cls.predictions.decoder.weight": (d["embed"], h),
                   pre + "cls.predictions.decoder.bias": (d["embed"],)})
    pre = "language_encoder."
    shapes.update(bert_shapes(pre + "base_language_encoder.", d["text"], d["text_layers"], 30522, lora_bert))
    h = d["text"]
    shapes.update({pre + "base_language_encoder.pooler.dense.weight": (h, h),
                   pre + "base_language_encoder.pooler.dense.bias": (h,),
                   pre + "proj.weight": (d["embed"], h), pre + "proj.bias": (d["embed"],)})
    return shapes


def bert_shapes(pre: str, h: int, layers: int, vocab: int, lora: bool) -> dict[str, tuple]:
    shapes = {pre + "embeddings.word_embeddings.weight": (vocab, h),
              pre + "embeddings.position_embeddings.weight": (512, h),
              pre + "embeddings.token_type_embeddings.weight": (2, h),
              pre + "embeddings.LayerNorm.weight": (h,), pre + "embeddings.LayerNorm.bias": (h,)}
    for i in range(layers):
        b = f"{pre}encoder.layer.{i}."
        for name, out, inp in (("attention.self.query", h, h), ("attention.self.key", h, h),
                               ("attention.self.value", h, h), ("attention.output.dense", h, h),
                               ("intermediate.dense", 4 * h, h), ("output.dense", h, 4 * h)):
            wrapped = lora and name in ("attention.self.query", "attention.self.value")
            base = b + name + (".w" if wrapped else "")
            shapes.update({base + ".weight": (out, inp), base + ".bias": (out,)})
            if wrapped:
                shapes.update({b + name + ".w_a.weight": (4, h), b + name + ".w_b.weight": (h, 4)})
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes.update({b + norm + ".weight": (h,), b + norm + ".bias": (h,)})
    return shapes


def random_state(shapes: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        if name.endswith("position_ids"):
            state[name] = torch.arange(shape[1]).unsqueeze(0)
        elif "norm" in name.lower() and name.endswith("weight"):
            state[name] = 1 + 0.1 * torch.randn(shape, generator=gen)
        else:
            state[name] = 0.3 * torch.randn(shape, generator=gen)
    state["logit_scale"] = torch.tensor(math.log(1 / 0.07))
    return state


def tiny_preset(tmp_path: Path, d: dict = TINY) -> Path:
    bert = {"num_layers": 2, "num_heads": 2, "intermediate_size": 4 * d["dna"],
            "max_position_embeddings": 512}
    config = {"embed_dim": d["embed"],
              "image": {"backbone": "vit_tiny_patch16_224", "image_size": d["image"],
                        "backbone_kwargs": {"patch_size": d["patch"], "embed_dim": d["vit"],
                                            "depth": d["vit_depth"], "num_heads": d["vit_heads"]}},
              "dna": {**bert, "hidden_size": d["dna"]}, "text": {**bert, "hidden_size": d["text"]}}
    path = tmp_path / "tiny-upstream.json"
    path.write_text(json.dumps(config))
    return path


# ---------------------------------------------------------------- reference upstream forward pass
def linear(s: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    """x W^T + b, adding the LoRA branch B A x when the layer is wrapped (upstream _LoRALayer)."""
    if name + ".w.weight" in s:
        return linear(s, name + ".w", x) + x @ s[name + ".w_a.weight"].T @ s[name + ".w_b.weight"].T
    return F.linear(x, s[name + ".weight"], s.get(name + ".bias"))


def layer_norm(s: dict, name: str, x: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], s[name + ".weight"], s[name + ".bias"], eps)


def attention(q, k, v, heads: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    b, n, width = q.shape
    q, k, v = (t.reshape(b, n, heads, width // heads).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(width // heads)
    if bias is not None:
        scores = scores + bias
    return (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, width)


def ref_bert(s: dict, pre: str, ids: torch.Tensor, heads: int, mask: torch.Tensor | None) -> torch.Tensor:
    e = pre + "embeddings."
    x = s[e + "word_embeddings.weight"][ids] + s[e + "position_embeddings.weight"][: ids.shape[1]]
    x = layer_norm(s, e + "LayerNorm", x + s[e + "token_type_embeddings.weight"][0], 1e-12)
    bias = None if mask is None else ((1 - mask.double()) * torch.finfo(torch.float64).min)[:, None, None, :]
    i = 0
    while f"{pre}encoder.layer.{i}.output.dense.weight" in s:
        b = f"{pre}encoder.layer.{i}."
        q, k, v = (linear(s, b + f"attention.self.{n}", x) for n in ("query", "key", "value"))
        x = layer_norm(s, b + "attention.output.LayerNorm",
                       x + linear(s, b + "attention.output.dense", attention(q, k, v, heads, bias)), 1e-12)
        hidden = F.gelu(linear(s, b + "intermediate.dense", x))
        x = layer_norm(s, b + "output.LayerNorm", x + linear(s, b + "output.dense", hidden), 1e-12)
        i += 1
    return x


def ref_image(s: dict, pixels: torch.Tensor, d: dict) -> torch.Tensor:
    """timm ViT (class token, pre-norm blocks, final norm) with upstream _LoRA_qkv_timm; no normalisation."""
    p = "image_encoder.base_image_encoder."
    x = F.conv2d(pixels, s[p + "patch_embed.proj.weight"], s[p + "patch_embed.proj.bias"], stride=d["patch"])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([s[p + "cls_token"].expand(len(x), -1, -1), x], dim=1) + s[p + "pos_embed"]
    for i in range(d["vit_depth"]):
        b = f"{p}blocks.{i}."
        h = layer_norm(s, b + "norm1", x, 1e-6)
        qkv = linear(s, b + "attn.qkv.qkv", h)
        qkv[..., : d["vit"]] += linear(s, b + "attn.qkv.linear_b_q", linear(s, b + "attn.qkv.linear_a_q", h))
        qkv[..., -d["vit"]:] += linear(s, b + "attn.qkv.linear_b_v", linear(s, b + "attn.qkv.linear_a_v", h))
        x = x + linear(s, b + "attn.proj", attention(*qkv.chunk(3, dim=-1), d["vit_heads"]))
        h = layer_norm(s, b + "norm2", x, 1e-6)
        x = x + linear(s, b + "mlp.fc2", F.gelu(linear(s, b + "mlp.fc1", h)))
    return F.normalize(linear(s, p + "head", layer_norm(s, p + "norm", x, 1e-6)[:, 0]), dim=-1)


def ref_dna_tokens(barcodes: list[str]) -> torch.Tensor:
    """Upstream get_sequence_pipeline(k=5): N-pad/cut to 660, 5-mers, torchtext vocab, [0] prepended."""
    vocab = {kmer: i + 3 for i, kmer in enumerate("".join(p) for p in itertools.product("ACGT", repeat=5))}
    rows = []
    for seq in barcodes:
        seq = seq[:660] + "N" * (660 - len(seq))
        rows.append([0] + [vocab.get(seq[i:i + 5], 2) for i in range(0, 656, 5)])
    return torch.tensor(rows)


def ref_dna(s: dict, ids: torch.Tensor, d: dict) -> torch.Tensor:
    """BertForMaskedLM(ids).logits.softmax(-1).mean(1): no attention mask, decoder = new head."""
    p = "dna_encoder.base_dna_encoder."
    x = ref_bert(s, p + "bert.", ids, d["dna_heads"], None)
    x = layer_norm(s, p + "cls.predictions.transform.LayerNorm",
                   F.gelu(linear(s, p + "cls.predictions.transform.dense", x)), 1e-12)
    return F.normalize(linear(s, p + "cls.predictions.decoder", x).softmax(-1).mean(1), dim=-1)


def ref_text_tokens(labels: list[str]) -> dict[str, torch.Tensor]:
    from transformers import BertTokenizer

    tok = BertTokenizer(str(VOCAB_DIR / "wordpiece-uncased.txt"), do_lower_case=True)
    return tok(labels, padding="max_length", max_length=20, truncation=True, return_tensors="pt")


def ref_text(s: dict, tokens: dict, d: dict) -> torch.Tensor:
    """BertModel(**tokens).last_hidden_state.mean(1) (padding included) -> proj."""
    x = ref_bert(s, "language_encoder.base_language_encoder.", tokens["input_ids"], d["text_heads"],
                 tokens["attention_mask"])
    return F.normalize(linear(s, "language_encoder.proj", x.mean(1)), dim=-1)


# ---------------------------------------------------------------- equivalence
@pytest.mark.parametrize("lora_bert", [False, True], ids=["full-finetune", "lora"])
def test_imported_model_matches_upstream_forward(tmp_path, lora_bert):
    state = random_state(upstream_shapes(TINY, lora_bert))
    model = import_clibd_checkpoint(dict(state), tiny_preset(tmp_path)).model
    s = {k: v.double() for k, v in state.items()}
    pixels = torch.rand(2, 3, TINY["image"], TINY["image"], generator=torch.Generator().manual_seed(1))
    dna = model.tokenize_dna(BARCODES)
    assert torch.equal(dna["input_ids"], ref_dna_tokens(BARCODES))
    text = model.tokenize_text(LABELS)
    upstream_text = ref_text_tokens(LABELS)
    assert torch.equal(text["input_ids"], upstream_text["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(pixels).double(), ref_image(s, pixels.double(), TINY),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_dna(**dna).double(), ref_dna(s, dna["input_ids"], TINY),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_text(**text).double(), ref_text(s, upstream_text, TINY),
                                   atol=1e-5, rtol=0)
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))


def test_paper_key_set_and_shapes_are_what_the_converter_expects():
    """The full clibd-paper upstream layout converts strictly (on the meta device: shapes only)."""
    shapes = upstream_shapes(PAPER)
    assert sum(k.endswith("linear_a_q.weight") for k in shapes) == 12
    with torch.device("meta"):
        state = {name: torch.empty(shape) for name, shape in shapes.items()}
        model = import_clibd_checkpoint(state).model
    config = model.config
    assert config["embed_dim"] == 768 and config["image"]["mean"] is None
    assert config["dna"]["prepend_token"] == 0 and config["dna"]["pooling"] == "mlm-softmax-mean"
    assert config["dna"]["attend_padding"] and config["text"]["pooling"] == "mean-all-positions"
    assert config["image"]["resize_float"] and config["text"]["missing_rank"] == "not_classified"
    assert model.label_string({"order": "Diptera", "genus": "Aedes"}) == \
        "Diptera not_classified Aedes not_classified"
    assert model.tokenize_dna(["ACGT"])["input_ids"].shape == (1, 133)
    assert model.tokenize_text(["Diptera"])["input_ids"].shape == (1, 20)


def test_cli_import_round_trip_and_yaml(tmp_path):
    state = random_state(upstream_shapes(TINY))
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "best.pth")
    preset = tiny_preset(tmp_path)
    args = ["import", "--from", "clibd-checkpoint", str(tmp_path / "best.pth"), "--preset", str(preset)]
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "model")])
    assert result.exit_code == 0, result.output
    loaded = load_model(tmp_path / "model")
    direct = import_clibd_checkpoint(state, preset).model
    assert loaded.fingerprint() == direct.fingerprint()
    assert loaded.extra["imported_from"]["format"] == "clibd-checkpoint"
    (tmp_path / "id.yaml").write_text("model_config:\n  output_dim: 24\n  image: {input_type: image}\n"
                                      "  dna: {input_type: sequence}\n")
    result = CliRunner().invoke(cli, [*args, "--config", str(tmp_path / "id.yaml"),
                                      "-o", str(tmp_path / "m2")])
    assert result.exit_code == 1
    assert "towers image, dna but the checkpoint has image, dna, text" in result.output
    (tmp_path / "bad.yaml").write_text("model_config:\n  output_dim: 24\n  dna: {input_type: sequence\n")
    result = CliRunner().invoke(cli, [*args, "--config", str(tmp_path / "bad.yaml"), "-o", str(tmp_path / "m4")])
    assert result.exit_code == 1  # was: "<unicode string>", line 4
    assert f"{tmp_path / 'bad.yaml'}:4: not valid YAML (expected ','" in result.output
    # a model clibd wrote is not an upstream checkpoint: say so instead of listing missing tensors
    for source in (tmp_path / "model", tmp_path / "model" / "model.safetensors"):
        result = CliRunner().invoke(cli, ["import", "--from", "clibd-checkpoint", str(source), "-o", str(tmp_path / "m3")])
        assert result.exit_code == 1 and "already a clibd model" in result.output and "--model" in result.output


def test_older_checkpoints_tower_names_import_alike(tmp_path):
    """Older upstream checkpoints name the towers lora_vit, lora_barcode_bert and lora_bert (upstream
    renames them in util.update_checkpoint_param_names)."""
    state = random_state(upstream_shapes(TINY))
    renames = {"base_image_encoder": "lora_vit", "base_dna_encoder": "lora_barcode_bert",
               "base_language_encoder": "lora_bert"}
    older = {}
    for name, tensor in state.items():
        for new, old in renames.items():
            name = name.replace(new, old)
        older[name] = tensor
    assert older.keys() != state.keys()
    preset = tiny_preset(tmp_path)
    imported = (import_clibd_checkpoint(dict(s), preset).model.fingerprint() for s in (older, state))
    assert next(imported) == next(imported)


def test_buffers_older_transformers_saved_with_the_bert_embeddings_are_left_out(tmp_path):
    state = random_state(upstream_shapes(TINY))
    plain = import_clibd_checkpoint(dict(state), tiny_preset(tmp_path)).model.fingerprint()
    for tower in ("dna_encoder.base_dna_encoder.bert.", "language_encoder.base_language_encoder."):
        state[f"{tower}embeddings.token_type_ids"] = torch.zeros(1, 512, dtype=torch.int64)
    assert import_clibd_checkpoint(state, tiny_preset(tmp_path)).model.fingerprint() == plain


# ---------------------------------------------------------------- refusals
def test_strict_key_report_is_one_readable_line(tmp_path):
    state = random_state(upstream_shapes(TINY))
    del state["language_encoder.proj.bias"]
    state["language_encoder.extra_head.weight"] = torch.zeros(3)
    state["dna_encoder.base_dna_encoder.cls.predictions.decoder.weight"] = torch.zeros(5, 5)
    with pytest.raises(ModelError) as err:
        import_clibd_checkpoint(state, tiny_preset(tmp_path))
    message = str(err.value)
    assert "\n" not in message
    # named as in the file, not by clibd's names (text_encoder.proj.bias, dna_encoder.proj.weight)
    assert "missing 1 (language_encoder.proj.bias)" in message
    assert "unexpected 1 (language_encoder.extra_head.weight)" in message
    decoder = "dna_encoder.base_dna_encoder.cls.predictions.decoder.weight"
    assert f"wrong shape 1 ({decoder} (5, 5), not (24, 32))" in message
    assert "--preset" not in message  # most tensors fit: the preset is right


def test_a_checkpoint_of_other_sizes_or_format_is_told_which_option_fits(tmp_path):
    state = random_state(upstream_shapes(TINY))
    wider = tiny_preset(tmp_path, TINY | {"text": 64, "dna": 64, "vit": 64})  # most tensors of the wrong size
    with pytest.raises(ModelError, match="most tensors do not fit the sizes of .*--preset"):
        import_clibd_checkpoint(dict(state), wider)
    with pytest.raises(ModelError, match="looks like a CLIBD checkpoint: --from clibd-checkpoint"):
        import_barcodebert(dict(state), {})
    bert = {**_bert_state(), "logit_scale": torch.zeros(())}
    with pytest.raises(ModelError, match="looks like BarcodeBERT weights: --from barcodebert"):
        import_clibd_checkpoint(bert, wider)
    del bert["bert.encoder.layer.0.output.dense.bias"]
    with pytest.raises(ModelError, match=r"missing 1 \(bert.encoder.layer.0.output.dense.bias\)"):
        import_barcodebert(bert, {"num_attention_heads": 2}, wider)


def test_k4_dna_tower_and_foreign_state_dicts_are_refused(tmp_path):
    state = random_state(upstream_shapes(TINY))
    state["dna_encoder.base_dna_encoder.bert.embeddings.word_embeddings.weight"] = torch.zeros(258, 32)
    with pytest.raises(ModelError, match="only the 2023 5-mer BarcodeBERT"):
        import_clibd_checkpoint(state, tiny_preset(tmp_path))
    foreign = {"conv1.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}
    with pytest.raises(ModelError, match="not a CLIBD checkpoint.*conv1.weight"):
        import_clibd_checkpoint(foreign)
    with pytest.raises(ModelError, match="not a BarcodeBERT checkpoint"):
        import_barcodebert(foreign, {})


def test_unreadable_files_are_refused(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(random_state(upstream_shapes(TINY)), good)
    cases = {"random.pth": bytes(range(256)) * 40,
             "truncated.pth": good.read_bytes()[: good.stat().st_size // 2],
             "empty.pth": b"", "broken.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{not json",
             "hello.pth": b"hello\n", "json.pth": b'{"a": 1}\n', "just.pth": b"just text\n"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        refusals = "not a readable|is not a PyTorch checkpoint|corrupt or truncated"
        with pytest.raises(ModelError, match=refusals) as refused:
            read_checkpoint(tmp_path / name)
        assert not str(refused.value).rstrip().endswith(":"), refused.value  # an exception without a message
    (tmp_path / "three.fa").write_text(">a\nACGT\n")  # said what it looks like, not "Unsupported operand 62"
    (tmp_path / "plain.pth").write_bytes(pickle.dumps({"a": 1}, protocol=4))  # was "Unsupported operand 149"
    for name, looks in (("three.fa", "it starts like a FASTA file"), ("just.pth", "it is text"),
                        ("empty.pth", "it is empty"), ("truncated.pth", "corrupt or truncated"),
                        ("plain.pth", "(it is a Python pickle that torch.save did not write)")):
        with pytest.raises(ModelError, match=re.escape(looks)):
            read_checkpoint(tmp_path / name)
    with warnings.catch_warnings():  # torch's "Detected pickle protocol 4" warning reached the user first
        warnings.simplefilter("error")
        with pytest.raises(ModelError, match="torch.save did not write"):
            read_checkpoint(tmp_path / "plain.pth")
    legacy = tmp_path / "legacy.pth"
    torch.save(random_state(upstream_shapes(TINY)), legacy, _use_new_zipfile_serialization=False)
    legacy.write_bytes(legacy.read_bytes()[:3000])
    for name in ("truncated.pth", "legacy.pth"):  # torch's reason was cut mid-word at 200 characters
        whole_words = r"corrupt or truncated \(torch.load: [^;]*\w; the whole reason at -v\)$"
        with pytest.raises(ModelError, match=whole_words):
            read_checkpoint(tmp_path / name)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ModelError, match="not a state dict"):
        read_checkpoint(tmp_path / "list.pth")


def test_a_training_state_names_what_it_holds_and_the_model_folder_it_is_in(tmp_path):
    """`import RUN/last/train_state.pt` said "expected a mapping of names to tensors, got dict" (a dict
    is a mapping): it names the entry that is no tensor and, inside a clibd model, the folder to use."""
    model = tmp_path / "run" / "last"
    save_model(create_model("clibd-tiny", modalities=("dna", "text")), model)
    torch.save({"step": 12, "optimizer": {"state": {}}}, model / "train_state.pt")
    result = CliRunner().invoke(cli, ["import", "--from", "clibd-checkpoint", str(model / "train_state.pt"),
                                      "-o", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert (f"expected a mapping of names to tensors, got a dict whose 'step' is int, not a tensor); {model} "
            "is a clibd model: give that folder to --model as it is") in result.output
    torch.save({"step": 12}, tmp_path / "state.pt")  # outside a model folder: what it holds only
    with pytest.raises(ModelError, match=r"got a dict whose 'step' is int, not a tensor\)$"):
        read_checkpoint(tmp_path / "state.pt")


def _bert_state(h: int = 32) -> dict[str, torch.Tensor]:
    state = random_state(bert_shapes("bert.", h, 2, 1027, False))
    state.pop("logit_scale")
    return state


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path):
    # it was imported, and every photo then embedded as NaN, indexed and classified as such without a word
    state = random_state(upstream_shapes(TINY))
    state["image_encoder.base_image_encoder.head.weight"][0, 0] = float("nan")
    with pytest.raises(ModelError, match=r"NaN or infinite values in 1 \(image_encoder.base_image_encoder.head"):
        import_clibd_checkpoint(state, tiny_preset(tmp_path))


@pytest.mark.parametrize("case", ["lora shape", "qkv 1-d", "dna words 0-d", "bert words 1-d", "config list",
                                  "hidden_act", "layer_norm_eps"])
def test_malformed_tensors_and_configs_are_refused_with_a_reason_not_an_internal_error(tmp_path, case):
    # each of these ended in "clibd: error: internal error (RuntimeError/IndexError/ValueError/AttributeError/
    # KeyError ...)": tensors of the wrong rank or shape, a config.json that is no object, a BERT setting
    # no BERT has
    source, kind = tmp_path / "best.pth", "clibd-checkpoint"
    state = random_state(upstream_shapes(TINY))
    vit = "image_encoder.base_image_encoder.blocks.0.attn.qkv."
    if case == "lora shape":
        state[vit + "linear_b_v.weight"] = torch.zeros(32, 5)
    elif case == "qkv 1-d":
        state[vit + "qkv.weight"] = torch.zeros(96)
    elif case == "dna words 0-d":
        state["dna_encoder.base_dna_encoder.bert.embeddings.word_embeddings.weight"] = torch.zeros(())
    else:
        kind, state = "barcodebert", _bert_state()
        if case == "bert words 1-d":
            state["bert.embeddings.word_embeddings.weight"] = torch.zeros(1027)
        elif case == "config list":
            source = tmp_path / "hf"
            source.mkdir()
            (source / "config.json").write_text("[1, 2]")
            save_file(state, str(source / "model.safetensors"))
        else:
            state = {"model": state, "bert_config": {"num_attention_heads": 2, "hidden_act": "nonsense"}
                     if case == "hidden_act" else {"num_attention_heads": 2, "layer_norm_eps": "small"}}
    if not source.exists():
        torch.save(state, source)
    result = CliRunner().invoke(cli, ["import", "--from", kind, str(source), "--preset",
                                      str(tiny_preset(tmp_path)), "-o", str(tmp_path / "m")])
    assert result.exit_code == 1 and "clibd: error: " in result.output, result.output
    assert "internal error" not in result.output and not (tmp_path / "m").exists()


class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_code_executing_pickle_is_refused_without_running(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"logit_scale": torch.zeros(()), "x": _Payload(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))  # the legacy (non-zip) torch format
    with pytest.raises(ModelError, match="refusing to load"):
        read_checkpoint(path)
    args = ["import", "--from", "clibd-checkpoint", str(path), "-o", str(tmp_path / "m")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "clibd: error:" in result.output and "Traceback" not in result.output
    assert not marker.exists() and not (tmp_path / "m").exists()


# ---------------------------------------------------------------- BarcodeBERT
def test_barcodebert_2023_initialises_the_dna_tower(tmp_path):
    bert = bert_shapes("bert.", 48, 2, 1027, False)  # 48: divisible by the default 12 heads
    mlm = {"cls.predictions.bias": (1027,), "cls.predictions.transform.dense.weight": (48, 48),
           "cls.predictions.decoder.weight": (1027, 48), "cls.predictions.decoder.bias": (1027,)}
    state = random_state({**bert, **mlm, "bert.embeddings.position_ids": (1, 512)})
    state.pop("logit_scale")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "model_41.pth")
    preset = tiny_preset(tmp_path)
    outputs = []
    for out in ("a", "b"):
        args = ["--seed", "7", "import", "--from", "barcodebert", str(tmp_path / "model_41.pth"),
                "--preset", str(preset), "-o", str(tmp_path / out)]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        outputs.append(load_model(tmp_path / out))
    model = outputs[0]
    assert outputs[1].fingerprint() == model.fingerprint()  # fresh towers come from --seed
    assert model.config["dna"]["k"] == 5 and model.config["dna"]["pooling"] == "masked-mean"
    assert model.config["dna"]["num_heads"] == 12  # BertConfig default: the 2023 file stores no config
    own = model.dna_encoder.bert.state_dict()
    for name, tensor in state.items():
        if name.startswith("bert.") and "position_ids" not in name:
            assert torch.equal(own[name.removeprefix("bert.")], tensor), name
    with pytest.raises(ModelError, match="clibd-fast: its DNA tower is a kmer-bag, which BarcodeBERT weights"):
        import_barcodebert(state, {}, "clibd-fast")
    with pytest.raises(ModelError, match="clibd-fast: its DNA tower is a kmer-bag"):
        import_clibd_checkpoint(random_state(upstream_shapes(TINY)), "clibd-fast")


def test_barcodebert_hf_directory_v2_vocabulary(tmp_path):
    shapes = {**bert_shapes("bert.", 32, 3, 4 ** 4 + 2, False), "classifier.weight": (256, 32),
              "classifier.bias": (256,)}
    state = random_state(shapes)
    state.pop("logit_scale")
    hf = tmp_path / "BarcodeBERT"
    hf.mkdir()
    save_file(state, str(hf / "model.safetensors"))
    (hf / "config.json").write_text(json.dumps({"model_type": "bert", "num_attention_heads": 4,
                                                "hidden_act": "gelu", "vocab_size": 258}))
    tensors, config = read_checkpoint(hf)
    imported = import_barcodebert(tensors, config, tiny_preset(tmp_path))
    dna = imported.model.config["dna"]
    assert (dna["k"], dna["kmer_vocab"], dna["num_layers"], dna["num_heads"]) == (4, "barcodebert-v2", 3, 4)
    ids = imported.model.tokenize_dna(["AAAACCCCNNNN"])["input_ids"][0, :3].tolist()
    assert ids == [2, 2 + 0b01010101, 1]  # k-mers start at 2 and <UNK> is 1 in the v2 vocabulary
    assert torch.equal(imported.model.dna_encoder.bert.state_dict()["encoder.layer.2.output.dense.weight"],
                       state["bert.encoder.layer.2.output.dense.weight"])


def test_import_output_follows_the_o_rules(tmp_path):
    """import -o replaced an earlier model folder even when it held the checkpoint being imported
    (best.pth gone with the old folder); it now follows every other command's -o rules."""
    state = random_state(upstream_shapes(TINY))
    preset = tiny_preset(tmp_path)
    args = ["import", "--from", "clibd-checkpoint", "--preset", str(preset)]
    first = tmp_path / "best.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, first)
    assert CliRunner().invoke(cli, [*args, str(first), "-o", str(tmp_path / "model")]).exit_code == 0
    inside = tmp_path / "model" / "best.pth"
    inside.write_bytes(first.read_bytes())
    result = CliRunner().invoke(cli, [*args, str(inside), "-o", str(tmp_path / "model")])
    assert result.exit_code == 2 and "holds the input" in result.output and inside.is_file()
    assert CliRunner().invoke(cli, [*args, str(first), "-o", str(first)]).exit_code == 2  # a file
    assert first.is_file() and load_model(tmp_path / "model").fingerprint()
