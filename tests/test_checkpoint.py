"""Model directories: bit-exact save/load, fingerprints, atomic replacement, clear errors."""

import json
import os
import shutil
from importlib import metadata

import pytest
import numpy as np
import torch

from models import CLIBD, ModelError, create_model, load_model, save_model


@pytest.fixture(scope="module")
def trained() -> CLIBD:
    """A tiny model whose weights are no longer the initial ones."""
    torch.manual_seed(0)
    model = create_model("clibd-tiny")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    return model


@pytest.fixture
def saved(trained, tmp_path):
    return save_model(trained, tmp_path / "model", extra={"epoch": 3, "metric": "species_hm"})


def assert_same_weights(a: CLIBD, b: CLIBD) -> None:
    left, right = a.state_dict(), b.state_dict()
    assert left.keys() == right.keys()
    for name in left:
        assert left[name].dtype == right[name].dtype, name
        assert torch.equal(left[name], right[name]), name


def test_save_load_is_bit_exact(trained, saved):
    loaded = load_model(saved)
    assert_same_weights(trained, loaded)
    assert loaded.fingerprint() == trained.fingerprint()
    assert loaded.extra == {"epoch": 3, "metric": "species_hm"}
    assert not loaded.training
    assert {k: v for k, v in loaded.config.items() if k != "text"} == \
        {k: v for k, v in trained.config.items() if k != "text"}
    barcodes = ["ACGTTGCA" * 30, "NNACGT"]
    tokens = trained.tokenize_dna(barcodes)
    assert torch.equal(loaded.tokenize_dna(barcodes)["input_ids"], tokens["input_ids"])
    assert torch.equal(trained.eval().encode_dna(**tokens), loaded.encode_dna(**tokens))
    text = trained.tokenize_text(["Diptera Culicidae"])
    assert torch.equal(loaded.tokenize_text(["Diptera Culicidae"])["input_ids"], text["input_ids"])


def test_version_of_a_source_tree_that_was_not_installed(monkeypatch):
    from models.version import clibd_version

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    assert clibd_version() == "0.0.0+unknown"


def test_directory_layout(saved):
    assert sorted(p.name for p in saved.iterdir()) == \
        ["config.json", "dna_tokenizer.json", "model.safetensors", "text_vocab.txt"]
    config = json.loads((saved / "config.json").read_text())
    assert config["format_version"] == 1 and config["clibd_version"] == metadata.version("clibd")
    assert config["text"]["vocab"] == "text_vocab.txt" and config["preset"] == "clibd-tiny"
    assert len(config["weights_sha256"]) == 64
    tokenizer = json.loads((saved / "dna_tokenizer.json").read_text())
    assert tokenizer["k"] == 4 and tokenizer["max_len"] == 660 and tokenizer["specials"]["<UNK>"] == 2
    umask = os.umask(0o022)
    os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in saved.iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes  # the weights too: safetensors writes them private


def test_fingerprint_tracks_weights_and_architecture(trained, saved):
    copy = load_model(saved)
    with torch.no_grad():
        copy.dna_encoder.proj.bias[0] += 1e-6
    assert copy.fingerprint() != trained.fingerprint()
    assert create_model("clibd-tiny").fingerprint() != create_model("clibd-tiny", embed_dim=16).fingerprint()


def test_half_precision_round_trip(tmp_path):
    model = create_model("clibd-tiny", modalities=("dna",)).half()
    loaded = load_model(save_model(model, tmp_path / "half"))
    assert loaded.logit_scale.dtype == torch.float16
    assert_same_weights(model, loaded)
    assert loaded.fingerprint() == model.fingerprint()


def test_saving_in_half_precision_halves_the_file_and_embeds_alike_in_fp32(tmp_path):
    from clibd_cli.embedding.embedder import Embedder, load_model_for

    model = create_model("clibd-tiny", modalities=("dna",))
    full = save_model(model, tmp_path / "full")
    half = save_model(model, tmp_path / "half", dtype=torch.float16)
    size = (half / "model.safetensors").stat().st_size / (full / "model.safetensors").stat().st_size
    assert 0.45 < size < 0.55
    loaded = load_model(half)
    assert loaded.logit_scale.dtype == torch.float16  # stored precision is kept on load ...
    barcodes = ["ACGT" * 160, "TTGACA" * 100]
    used = load_model_for(str(half), [])  # ... and the commands use it in fp32
    assert used.logit_scale.dtype == torch.float32
    assert used.fingerprint() == load_model_for(str(half), []).fingerprint()
    got = Embedder(used).barcodes(barcodes)
    assert got.dtype == np.float32
    assert np.abs(got - Embedder(model).barcodes(barcodes)).max() < 5e-3


def test_create_model_from_directory_can_drop_towers(trained, saved):
    dna_only = create_model(saved, modalities=("dna",))
    assert dna_only.modalities == ("dna",)
    tokens = trained.tokenize_dna(["ACGT" * 40])
    assert torch.equal(dna_only.encode_dna(**tokens), trained.eval().encode_dna(**tokens))
    with pytest.raises(ModelError, match="weights do not match.*wrong shape"):
        create_model(saved, embed_dim=16)


def test_load_towers_builds_only_those_and_keeps_the_whole_models_fingerprint(trained, saved, tmp_path):
    from models import load_towers

    dna_only = load_towers(saved, ["dna"])
    assert dna_only.modalities == ("dna",) and dna_only.text_encoder is None
    assert dna_only.fingerprint() == trained.fingerprint()  # indexes built with the whole model accept it
    assert create_model(saved, modalities=("dna",)).fingerprint() != trained.fingerprint()
    tokens = trained.tokenize_dna(["ACGT" * 40])
    assert torch.equal(dna_only.encode_dna(**tokens), trained.eval().encode_dna(**tokens))
    half = save_model(trained, tmp_path / "half", dtype=torch.float16)  # the bundled model's storage
    assert load_towers(half, ["dna"]).float().fingerprint() == load_model(half).float().fingerprint()
    assert load_towers(half, ["dna"]).fingerprint() == load_model(half).fingerprint()
    assert load_towers(saved, ["dna", "text", "image"]).absent is None  # nothing to leave out
    preset = load_towers("clibd-tiny", ["dna"])  # presets and configs are built whole
    assert preset.absent is None and "text" in preset.modalities
    with torch.no_grad():  # a changed weight of a left-out tower changes the fingerprint
        trained.text_encoder.proj.weight[0, 0] += 1.0
    try:
        changed = save_model(trained, tmp_path / "changed")
    finally:
        with torch.no_grad():
            trained.text_encoder.proj.weight[0, 0] -= 1.0
    assert load_towers(changed, ["dna"]).fingerprint() != dna_only.fingerprint()
    with pytest.raises(ModelError, match="towers left out"):  # saving would drop the text tower
        save_model(dna_only, tmp_path / "partial")
    mixed = create_model("clibd-tiny")  # a file holding fp32 DNA and fp16 text tensors
    mixed.text_encoder.half()
    mixed_dir = save_model(mixed, tmp_path / "mixed")
    for cast in (lambda m: m, lambda m: m.float(), lambda m: m.half()):
        assert cast(load_towers(mixed_dir, ["dna"])).fingerprint() == cast(load_model(mixed_dir)).fingerprint()


def test_save_replaces_model_directory_atomically(trained, saved):
    other = create_model("clibd-tiny", modalities=("dna",))
    save_model(other, saved)
    assert load_model(saved).modalities == ("dna",)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]  # no temp or old dirs left


def test_save_refuses_to_clobber_other_things(trained, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("precious")
    with pytest.raises(ModelError, match="not a clibd model directory; refusing"):
        save_model(trained, tmp_path / "notes")
    (tmp_path / "notes" / "config.json").write_text('{"learning_rate": 0.1}')  # e.g. a run directory
    with pytest.raises(ModelError, match="refusing"):
        save_model(trained, tmp_path / "notes")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelError, match="refusing"):
        save_model(trained, tmp_path / "file")
    with pytest.raises(ModelError, match="JSON-serialisable"):
        save_model(trained, tmp_path / "bad", extra={"when": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "notes"]
    (tmp_path / "empty").mkdir()
    assert load_model(save_model(trained, tmp_path / "empty")).modalities == trained.modalities


def test_missing_and_not_model_directories(tmp_path):
    with pytest.raises(ModelError, match="model directory not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelError, match="not a directory"):
        load_model(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"not a clibd model directory \(no config.json\)"):
        load_model(tmp_path / "empty")


def edit_config(directory, change):
    path = directory / "config.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("content, message", [
    ("{ broken", "config.json:1: invalid JSON"),
    ("[1, 2]", "not a saved clibd model"),
    ('{"embed_dim": 8}', "not a saved clibd model"),
    ('{"format_version": 99}', "newer than this clibd supports"),
])
def test_bad_config_json(saved, content, message):
    (saved / "config.json").write_text(content)
    with pytest.raises(ModelError, match=message):
        load_model(saved)


def test_missing_truncated_and_corrupt_weights(saved):
    weights = saved / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_model(saved)
    edit_config(saved, lambda c: c.pop("weights_sha256"))  # now safetensors itself must notice
    with pytest.raises(ModelError, match="corrupt or truncated weights file"):
        load_model(saved)
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="corrupt or truncated weights file"):
        load_model(saved)
    weights.unlink()
    with pytest.raises(ModelError, match="weights file is missing"):
        load_model(saved)


def test_weights_that_do_not_fit_the_config(saved, tmp_path):
    smaller = create_model("clibd-tiny", embed_dim=16, modalities=("dna", "text"))
    other = save_model(smaller, tmp_path / "other")
    shutil.copyfile(other / "model.safetensors", saved / "model.safetensors")
    edit_config(saved, lambda c: c.pop("weights_sha256"))
    with pytest.raises(ModelError, match=r"weights do not match the model config: missing \d+ \(image_enc"):
        load_model(saved)


def test_no_pickle_files(saved):
    assert not [p for p in saved.rglob("*") if p.suffix in {".pt", ".pth", ".bin", ".pkl"}]


@pytest.mark.parametrize("loader", ["load_model", "load_towers"])
def test_a_model_replaced_while_it_is_read_is_read_again_whole(trained, saved, monkeypatch, loader):
    """`clibd index -m RUN/best` while training saves a new best/: config.json of one version and
    the weights of the other ('checksum mismatch; the weights file is corrupt or was replaced')."""
    import models.factory
    from models.factory import load_towers

    newer = create_model("clibd-tiny")
    read_weights, replaced = models.factory.load_weights, []

    def replaced_while_reading(*args, **kwargs):
        if not replaced:  # the new best/ lands between config.json and the weights
            save_model(newer, saved)
            replaced.append(True)
        return read_weights(*args, **kwargs)

    monkeypatch.setattr(models.factory, "load_weights", replaced_while_reading)
    loaded = load_model(saved) if loader == "load_model" else load_towers(saved, ["dna"])
    assert replaced and loaded.fingerprint() == newer.fingerprint()


@pytest.fixture
def file_size_limit():
    """Lower this process's file size limit (``ulimit -f``, as a full disk: a write over it fails
    with EFBIG; Python ignores the SIGXFSZ) for the block, then put it back."""
    import contextlib
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    @contextlib.contextmanager
    def limited(size: int):
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    return limited


def test_a_full_disk_while_saving_a_model_or_a_checkpoint_is_one_line_naming_it(trained, saved, tmp_path,
                                                                                  file_size_limit):
    """safetensors and torch.save failed in their own words ('clibd: error: internal error
    (SafetensorError: ... File too large (os error 27))', '... unexpected pos 4184384 vs 4184272');
    now the cannot-write line naming the model folder, the previous version kept."""
    from clibd_cli.training.state import STATE_FILE, load_state, save_checkpoint
    from models.errors import ClibdError

    weights = (saved / "model.safetensors").stat().st_size
    with file_size_limit(64 << 10), pytest.raises(ClibdError) as refused:
        save_model(trained, saved)
    assert str(refused.value) == f"{saved}: cannot write (File too large); free some space or give another path"
    assert_same_weights(trained, load_model(saved))
    last = tmp_path / "run" / "last"
    last.parent.mkdir()
    save_checkpoint(trained, last, {}, state={"step": 1})
    state = {"step": 2, "moments": torch.zeros(weights // 4 + 1000)}  # more than the weights
    with file_size_limit(weights + 4096), pytest.raises(ClibdError) as refused:
        save_checkpoint(trained, last, {}, state=state)
    assert str(refused.value) == f"{last}: cannot write (File too large); free some space or give another path"
    assert load_state(last) == {"step": 1} and (last / STATE_FILE).is_file()
    assert sorted(p.name for p in last.parent.iterdir()) == ["last"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "run"]
