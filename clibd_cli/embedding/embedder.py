"""Batched embedding of barcodes, photos and label strings with one model, and its precision.

Shared by ``embed``, ``index``, ``classify`` and ``evaluate`` so that every command turns the
same input into the same vector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

from clibd_cli.embedding.kmer import is_model_free
from clibd_cli.io.outputs import UsageError
from models.errors import ClibdError

if TYPE_CHECKING:  # torch loads only with a neural model: the k-mer mode starts in a second
    import torch

T = TypeVar("T")

MODALITY_NAMES = {"dna": "DNA", "image": "image", "text": "text"}
PRECISIONS = ("auto", "fp32", "bf16")
# On a CPU, forward passes of a few dozen inputs keep the activations in cache: 1.3-1.6x the
# throughput of 256 at a time (clibd-small, 2 cores). GPUs take the whole batch.
CPU_FORWARD_BATCH = 32


class Encoder(Protocol):
    """What every command needs of a model: a CLIBD model (``models/clibd.py``) or the k-mer
    profile (``clibd_cli/embedding/kmer.py``)."""

    modalities: Sequence[str]
    saved_modalities: Sequence[str]  # the model's towers as saved, those it was loaded without included
    embed_dim: int

    def fingerprint(self) -> str: ...


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last one may be shorter)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def is_named_model(spec: str) -> bool:
    """Whether ``spec`` names a model that needs no path: ``kmer`` or a model shipped with clibd."""
    from clibd_cli.embedding.kmer import MODEL_FREE
    from models.config import list_pretrained

    return spec in MODEL_FREE or (spec in list_pretrained() and not Path(spec).exists())


def model_reference(spec: str) -> str:
    """How an index records the model that built it: a name, or the model directory's absolute path."""
    return spec if is_named_model(spec) else str(Path(spec).resolve())


def model_available(spec: str) -> bool:
    """Whether ``spec`` (a name or a model directory) can be loaded here."""
    return is_named_model(spec) or Path(spec).is_dir()


def load_model_for(spec: str, modalities: Sequence[str], built_with: str | None = None) -> Encoder:
    """Load a model (``kmer``, a preset, config or directory) and check it has the towers needed.

    A saved model is built with only those towers (all of them if ``modalities`` is empty): its
    fingerprint stays the whole model's (``models.factory.load_towers``). ``built_with``: the
    fingerprint of the index the model is for; a model-free name then gives the profile of that
    name the index was built with, where it differs from today's (``KmerProfileModel.of_fingerprint``)."""
    from clibd_cli.embedding.kmer import MODEL_FREE, PEPTIDE_MODEL, KmerProfileModel

    if spec in MODEL_FREE:
        model = MODEL_FREE[spec]()
        earlier = KmerProfileModel.of_fingerprint(built_with or "")
        if earlier is not None and bool(earlier.peptide_k) == (spec == PEPTIDE_MODEL):
            model = earlier
    else:
        from models import create_model, load_towers

        # Weights saved in half precision are used in fp32, so that every command computes the
        # same vectors and the same model fingerprint (shipped models load in fp32 already:
        # models.factory._build).
        model = (load_towers(spec, modalities) if modalities else create_model(spec)).float()
    missing = [m for m in modalities if m not in model.modalities]
    if missing:
        names = ", ".join(MODALITY_NAMES[m] for m in missing)
        raise UsageError(f"model {spec} has no {names} encoder (it has: {', '.join(model.saved_modalities)})")
    return model


def resolve_precision(precision: str, device: str) -> str:
    """``fp32`` or ``bf16``: ``auto`` means bf16 on CUDA and on CPUs that compute in bf16 natively
    (AVX512-BF16 or AMX, where it is about twice as fast as fp32), fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise ClibdError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if device.startswith("cuda") or cpu_has_native_bf16() else "fp32"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions (Linux: from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Embedder:
    """Runs one model on one device in inference mode, ``batch_size`` inputs at a time (on a CPU,
    at most :data:`CPU_FORWARD_BATCH` per forward pass, except barcodes for a kmer-bag tower).

    ``precision`` (see :func:`resolve_precision`): bf16 runs the matrix products in bfloat16
    (autocast) and changes the vectors by about 1e-5 in cosine; outputs are float32 either way.
    """

    def __init__(self, model: Encoder, device: str = "cpu", batch_size: int = 256, precision: str = "auto"):
        self.model = model if is_model_free(model) else model.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.precision = resolve_precision(precision, device)
        self._image_transform = model.image_transform(train=False) if "image" in model.modalities else None

    def barcodes(self, barcodes: Sequence[str]) -> np.ndarray:
        """L2-normalised DNA embeddings, float32 [N, D]."""
        if is_model_free(self.model):
            return self.model.embed_barcodes(list(barcodes))
        # The kmer-bag tower costs microseconds a barcode: in passes of 32 its time would go to
        # thread synchronisation, so on a CPU it takes whole batches.
        cheap = self.model.config["dna"].get("tower") == "kmer-bag"
        return self._run(barcodes, lambda chunk: self.model.encode_dna(**self._to_device(
            self.model.tokenize_dna(chunk))), cpu_batch=self.batch_size if cheap else CPU_FORWARD_BATCH)

    def reads(self, barcodes: Sequence[str]) -> np.ndarray:
        """Like :meth:`barcodes`, for reads with sequencing errors (``query_kinds.READ_KIND``): a
        model that translates barcodes (``--model kmer-aa``) reads their frame shifts through."""
        if is_model_free(self.model):
            return self.model.embed_barcodes(list(barcodes), reads=True)
        return self.barcodes(barcodes)

    @property
    def reads_apart(self) -> bool:
        """Whether :meth:`reads` embeds a barcode otherwise than :meth:`barcodes` does."""
        return is_model_free(self.model) and bool(self.model.peptide_k)

    def labels(self, labels: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings of taxonomy label strings, float32 [N, D]."""
        return self._run(labels, lambda chunk: self.model.encode_text(**self._to_device(
            self.model.tokenize_text(chunk))))

    def pixels(self, image) -> torch.Tensor:
        """A decoded RGB photo as the image tower's input ``[3, S, S]``.

        Convert each photo as soon as it is decoded: a tensor at the model's resolution is far
        smaller than a full-size photo, so batches of them fit in memory.
        """
        if self._image_transform is None:
            raise ClibdError(f"this model has no image encoder (it has: {', '.join(self.model.modalities)})")
        return self._image_transform(image)

    def images(self, images: Sequence) -> np.ndarray:
        """L2-normalised image embeddings, float32 [N, D], of RGB PIL images or their :meth:`pixels`."""
        import torch

        def encode(chunk: list) -> torch.Tensor:
            pixels = [x if isinstance(x, torch.Tensor) else self.pixels(x) for x in chunk]
            return self.model.encode_image(torch.stack(pixels).to(self.device))

        return self._run(images, encode)

    def _run(self, items: Sequence, encode: Callable[[list], torch.Tensor],
             cpu_batch: int = CPU_FORWARD_BATCH) -> np.ndarray:
        import torch

        out = np.empty((len(items), self.model.embed_dim), dtype=np.float32)
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        autocast = (torch.autocast(device_type, dtype=torch.bfloat16) if self.precision == "bf16"
                    else nullcontext())
        step = self.batch_size if device_type == "cuda" else min(self.batch_size, cpu_batch)
        with torch.inference_mode(), autocast:
            for start in range(0, len(items), step):
                chunk = list(items[start:start + step])
                vectors = encode(chunk).float()
                out[start:start + len(chunk)] = torch.nn.functional.normalize(vectors, dim=-1).cpu().numpy()
        return out

    def _to_device(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: tensor.to(self.device) for name, tensor in tokens.items()}
