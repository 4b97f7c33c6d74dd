"""Image tower: any timm backbone (pooled features) followed by a linear projection."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import timm
import torch
from torch import nn

from models.errors import ModelError
from models.weights import check_state_dict

MAX_ASPECT = 16  # a photo's longer side is cut, centred, to at most this many times its shorter side


class ImageEncoder(nn.Module):
    """timm backbone without classifier (pooled features) -> Linear to embed_dim."""

    def __init__(self, block: dict[str, Any], embed_dim: int, load_pretrained: bool = True):
        super().__init__()
        self.backbone = create_backbone(block, load_pretrained)
        # Pooled output size; differs from num_features when a model has a pre-logits head (MobileNetV3).
        width = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.proj = nn.Linear(width, embed_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(pixels))


def create_backbone(block: dict[str, Any], load_pretrained: bool) -> nn.Module:
    """The timm model of an image block; weights from a local file, timm's hub, or random."""
    hub = load_pretrained and block["pretrained"] == "hub"
    kwargs = {"pretrained": hub, "num_classes": 0, **block["backbone_kwargs"]}
    try:
        try:
            model = timm.create_model(block["backbone"], img_size=block["image_size"], **kwargs)
        except TypeError as exc:  # convnets take any input size and have no img_size argument
            if "img_size" not in str(exc):
                raise
            model = timm.create_model(block["backbone"], **kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise ModelError(f"image.backbone: unknown timm model {block['backbone']!r}") from exc
        raise
    except TypeError as exc:
        raise ModelError(f"image.backbone_kwargs do not fit {block['backbone']}: {exc}") from exc
    if load_pretrained and block["pretrained"] not in (None, "hub"):
        load_timm_checkpoint(model, Path(block["pretrained"]))
    return model


def load_timm_checkpoint(model: nn.Module, path: Path) -> None:
    """Load a local timm checkpoint (.safetensors, or .pth/.bin read with weights_only) strictly.

    The classifier head is dropped, and the model's own timm filter adapts the state dict (e.g.
    resamples ViT position embeddings to another image size). Any other mismatch is a ModelError.
    """
    if not path.is_file():
        raise ModelError(f"image.pretrained: {path} is not a file")
    try:
        state = timm.models.load_state_dict(str(path), weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ModelError(f"{path}: cannot read image checkpoint ({type(exc).__name__}: {exc})") from exc
    own = model.state_dict()
    classifiers = model.pretrained_cfg.get("classifier") or ()
    for name in (classifiers,) if isinstance(classifiers, str) else classifiers:
        for key in (f"{name}.weight", f"{name}.bias"):
            if key not in own:
                state.pop(key, None)
    adapt = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if adapt is not None:
        state = adapt(state, model)
    check_state_dict(own, state, f"{path}: does not fit image backbone {type(model).__name__}")
    model.load_state_dict(state, strict=True)


def image_transform(block: dict[str, Any], train: bool = False) -> Callable:
    """PIL RGB image -> float tensor [3, S, S] in [0, 1] (normalised only if the block has mean/std).

    Eval: resize the shorter side to S*256/224, centre crop S. Train (the paper's augmentation):
    resize, RandomResizedCrop S, horizontal and vertical flips, rotation up to 45 degrees. The
    8-bit photo is resized, unless ``resize_float``: then, as upstream CLIBD (``ToTensor()`` first,
    bioscanclip/util/dataset.py:219-221), the float pixels are (antialiased bilinear, no rounding).
    A photo longer than :data:`MAX_ASPECT` times its width is first cut to its centre (see
    :func:`clamp_aspect`).
    """
    from torchvision.transforms import v2

    size = block["image_size"]
    to_float = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    steps: list[Any] = [clamp_aspect, *(to_float if block["resize_float"] else []),
                        v2.Resize(round(size * 256 / 224))]
    if train:
        steps += [v2.RandomResizedCrop(size), v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(),
                  v2.RandomRotation(45)]
    else:
        steps.append(v2.CenterCrop(size))
    steps += [] if block["resize_float"] else to_float
    if block["mean"] is not None:
        steps.append(v2.Normalize(block["mean"], block["std"]))
    return v2.Compose(steps)


def clamp_aspect(image: Any, max_ratio: float = MAX_ASPECT) -> Any:
    """A PIL photo with its longer side cut, centred, to ``max_ratio`` times its shorter side.

    Resizing the shorter side of a 20000x1 strip to 256 pixels would make a 5-gigapixel image
    (16 GB as floats); the centre crop that follows keeps less than the shorter side anyway.
    Photos of usual proportions (and anything that is not a PIL image) come back as they are.
    """
    if not hasattr(image, "crop"):
        return image
    width, height = image.size
    longest = max(1, round(min(width, height) * max_ratio))
    if max(width, height) <= longest:
        return image
    if width > height:
        left = (width - longest) // 2
        return image.crop((left, 0, left + longest, height))
    top = (height - longest) // 2
    return image.crop((0, top, width, top + longest))
