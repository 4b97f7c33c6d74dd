"""Contrastive loss: hand-computed values, presence masks, and the 2-process gathered loss."""

import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from models.losses import ContrastiveLoss, gather_features


def info_nce_by_hand(a: list[list[float]], b: list[list[float]], scale: float) -> float:
    """Symmetric InfoNCE with explicit loops: mean over rows of -log softmax(scale * sims)[i][i]."""
    n = len(a)

    def dot(u, v):
        return sum(x * y for x, y in zip(u, v))

    def one_direction(x, y):
        total = 0.0
        for i in range(n):
            logits = [scale * dot(x[i], y[j]) for j in range(n)]
            total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
        return total / n

    return (one_direction(a, b) + one_direction(b, a)) / 2


def unit_rows(rows):
    return [[v / math.sqrt(sum(x * x for x in row)) for v in row] for row in rows]


IMAGE = unit_rows([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
DNA = unit_rows([[0.9, 0.1], [0.5, 0.5], [0.2, 0.9]])
TEXT = unit_rows([[1.0, 1.0], [0.0, 1.0], [1.0, -0.5]])
SCALE = 1 / 0.07


def tensors(**rows):
    return {name: torch.tensor(value, dtype=torch.float64) for name, value in rows.items()}


def test_two_modalities_equal_hand_computed_value():
    loss = ContrastiveLoss()(tensors(image=IMAGE, dna=DNA), torch.tensor(SCALE, dtype=torch.float64))
    assert loss.item() == pytest.approx(info_nce_by_hand(IMAGE, DNA, SCALE), rel=1e-12)
    # a hand-checkable case: orthogonal perfect matches at scale 1 -> -log(e / (e + 1))
    eye = [[1.0, 0.0], [0.0, 1.0]]
    simple = ContrastiveLoss()(tensors(image=eye, dna=eye), torch.tensor(1.0, dtype=torch.float64))
    assert simple.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-12)


def test_three_modalities_average_the_three_pairs():
    scale = torch.tensor(SCALE, dtype=torch.float64)
    loss = ContrastiveLoss()(tensors(image=IMAGE, dna=DNA, text=TEXT), scale)
    expected = (info_nce_by_hand(DNA, IMAGE, SCALE) + info_nce_by_hand(DNA, TEXT, SCALE)
                + info_nce_by_hand(IMAGE, TEXT, SCALE)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_present_masks_restrict_each_pair():
    present = {"image": torch.tensor([True, False, True]), "text": torch.tensor([True, True, False])}
    scale = torch.tensor(SCALE, dtype=torch.float64)
    loss = ContrastiveLoss()(tensors(image=IMAGE, dna=DNA, text=TEXT), scale, present)
    # dna-image: rows 0, 2; dna-text: rows 0, 1; image-text: only row 0 -> skipped
    expected = (info_nce_by_hand([DNA[0], DNA[2]], [IMAGE[0], IMAGE[2]], SCALE)
                + info_nce_by_hand(DNA[:2], TEXT[:2], SCALE)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_no_usable_pair_raises():
    features = tensors(image=IMAGE, dna=DNA)
    with pytest.raises(ValueError, match="no modality pair"):
        ContrastiveLoss()(features, torch.tensor(SCALE), {"image": torch.tensor([True, False, False])})
    with pytest.raises(ValueError, match="no modality pair"):
        ContrastiveLoss()(tensors(dna=DNA), torch.tensor(SCALE))
    with pytest.raises(ValueError, match="shape"):
        ContrastiveLoss()(features, torch.tensor(SCALE), {"image": torch.tensor([True, False])})


def test_gather_is_identity_without_distributed():
    features = tensors(image=IMAGE, dna=DNA)
    gathered, masks = gather_features(features)
    assert gathered["image"] is features["image"] and masks["dna"].all()


# ---- two CPU processes with gloo -------------------------------------------------------------

WORLD = 2
LOCAL_BATCH = 4


def global_batch():
    generator = torch.Generator().manual_seed(0)
    inputs = {m: torch.randn(WORLD * LOCAL_BATCH, 6, generator=generator) for m in ("image", "dna", "text")}
    present = {"image": torch.tensor([True, True, False, True, True, False, True, True]),
               "text": torch.tensor([True, False, True, True, True, True, True, False])}
    return inputs, present


def encoders():
    torch.manual_seed(1)
    heads = torch.nn.ModuleDict({m: torch.nn.Linear(6, 5) for m in ("image", "dna", "text")})
    return heads, torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))


def loss_and_grads(inputs, present):
    heads, logit_scale = encoders()
    features = {m: F.normalize(heads[m](x), dim=-1) for m, x in inputs.items()}
    loss = ContrastiveLoss()(features, logit_scale.exp(), present)
    loss.backward()
    grads = {f"{name}": p.grad for name, p in heads.named_parameters()}
    grads["logit_scale"] = logit_scale.grad
    return loss.detach(), grads


def worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        inputs, present = global_batch()
        local = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        loss, grads = loss_and_grads({m: x[local] for m, x in inputs.items()},
                                     {m: p[local] for m, p in present.items()})
        for grad in grads.values():  # what DDP does: average gradients over ranks
            dist.all_reduce(grad)
            grad /= WORLD
        save_file({"loss": loss.reshape(1), **{k: g.contiguous() for k, g in grads.items()}},
                  f"{out_dir}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gathered_loss_and_gradients_match_single_process(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    inputs, present = global_batch()
    loss, grads = loss_and_grads(inputs, present)
    for rank in range(WORLD):
        result = load_file(tmp_path / f"rank{rank}.safetensors")
        assert result["loss"].item() == pytest.approx(loss.item(), rel=1e-6)
        for name, grad in grads.items():
            assert torch.allclose(result[name], grad, rtol=1e-5, atol=1e-7), name
