"""Specimen photos: finding them in folders and decoding them safely to RGB.

``load_image`` is what every command uses to turn a file or stored bytes into an RGB image:
it refuses decompression bombs, truncated, empty and non-image files with an
:class:`ImageError`, and converts grayscale, palette, alpha, CMYK and 16/32-bit images to
8-bit RGB with their tones preserved (PIL's own ``convert("RGB")`` clips 16-bit values). An
animated GIF, WebP or AVIF is read as its first frame.
"""

from __future__ import annotations

import io
import logging
import os
import unicodedata
import warnings
from collections.abc import Callable, Container, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from clibd_cli.io.outputs import UsageError
from clibd_cli.io.streams import open_binary, reading
from models.errors import ClibdError, counted

log = logging.getLogger("clibd")
# Photo formats every Pillow decodes, and those it decodes where it was built with their library
# (PIL.features; wheels carry all three, AVIF from Pillow 11.2 on, a distribution's Pillow may not).
_BUILT_IN_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".gif", ".bmp"})
_LIBRARY_SUFFIXES = {".webp": "webp", ".avif": "avif", ".jp2": "jpg_2000"}


def _built_with(feature: str) -> bool:
    """Whether this Pillow has ``feature``'s decoder (``PIL.features``; False for one it does not know)."""
    if feature in features.modules:
        return bool(features.check_module(feature))
    return feature in features.codecs and features.check_codec(feature)


def _decodable_suffixes(built_with: Callable[[str], bool] = _built_with) -> frozenset[str]:
    """The photo suffixes this Pillow decodes: the built-in formats' and ``_LIBRARY_SUFFIXES`` whose
    library it was ``built_with``."""
    return _BUILT_IN_SUFFIXES | {suffix for suffix, feature in _LIBRARY_SUFFIXES.items() if built_with(feature)}


IMAGE_SUFFIXES = _decodable_suffixes()
# Photo formats a folder is not searched for: find_images names the files it passes over, which
# would otherwise be missing from the output without a word (a phone's HEIC, a camera's raw files).
UNREAD_SUFFIXES = frozenset({".heic", ".heif", ".jxl", ".dng", ".cr2", ".nef", ".arw", *_LIBRARY_SUFFIXES}) - \
    IMAGE_SUFFIXES
# Formats prepare stores as given (stored_photo); others are re-encoded as JPEG.
KEPT_FORMATS = frozenset({"JPEG", "MPO", "PNG", "TIFF"})
MAX_PIXELS = 89_478_485  # PIL's default limit; larger images are refused before decoding
# Pixels a large JPEG keeps on its shorter side when decoded scaled down (load_image): 4 times the
# side the largest preset resizes photos to (256, clibd-paper's), and more than a BIOSCAN photo
# has (768 of 1024x768), which is decoded whole.
DECODE_FLOOR = 1024


class ImageError(ClibdError):
    """An image that cannot be used: missing, empty, truncated, not an image, or too large."""


def find_images(paths: Iterable[str | Path], warn: bool = True) -> list[Path]:
    """Image files under ``paths`` (files as given, folders searched recursively), sorted.

    Hidden files (``.name``, e.g. macOS ``._IMG.jpg``) are skipped. Linked folders are searched
    (each real folder once); a link to a photo that is gone is kept, to be reported unreadable.
    Photos in a format of ``UNREAD_SUFFIXES`` are passed over, named in one warning if ``warn``.
    ClibdError if a path does not exist.
    """
    found: list[Path] = []
    unread: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(_photos_under(path, unread))
        elif path.is_file():
            found.append(path)
        else:
            raise ClibdError(f"{path}: no such file or folder")
    if unread and warn:
        shown = ", ".join(map(str, sorted(unread)[:5]))
        log.warning("%s not read: folders are searched for %s photos only (convert the others, e.g. to "
                    "JPEG or PNG): %s%s", counted(len(unread), "photo"),
                    ", ".join(sorted(IMAGE_SUFFIXES)), shown, " …" if len(unread) > 5 else "")
    return found


def holds_photos(folder: str | Path) -> bool:
    """Whether :func:`find_images` finds a photo in ``folder`` (the walk stops at the first)."""
    return next(_photos_under(Path(folder)), None) is not None


def check_photo_inputs(sources: Iterable[str | Path], takes: str, barcodes: str) -> None:
    """UsageError, before any work, for a file among photo ``sources`` that no photo suffix names:
    ``FILE: {takes} (folders, or .jpeg … files), and this is none`` (or ``a FASTA/FASTQ file``: a FASTA
    given as photos was one unreadable photo, or none at all), then ``barcodes``: where barcodes go."""
    for source in map(Path, sources):
        if source.is_file() and source.suffix.lower() not in IMAGE_SUFFIXES | UNREAD_SUFFIXES:
            what = "a FASTA/FASTQ file" if _reads_as_sequences(source) else "none"
            raise UsageError(f"{source}: {takes} (folders, or {', '.join(sorted(IMAGE_SUFFIXES))} files), and "
                             f"this is {what}; {barcodes}")


def _reads_as_sequences(path: Path) -> bool:
    """Whether ``path`` (decompressed) begins as FASTA (``>``) or FASTQ (``@``) text does."""
    try:
        with reading(path), open_binary(path) as stream:
            head = stream.read(64)
    except (ClibdError, OSError):
        return False
    return head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] in (b">", b"@")


def _photos_under(folder: Path, unread: list[Path] | None = None) -> Iterator[Path]:
    """Photo files under ``folder``, its linked folders followed (each real folder once); those of
    ``UNREAD_SUFFIXES`` are added to ``unread`` instead."""
    seen: set[str] = set()
    for root, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up, or a second link to one folder
            folders.clear()
            continue
        seen.add(real)
        folders.sort(key=lambda name: (os.path.islink(os.path.join(root, name)), name))  # real ones first
        for name in files:
            path = Path(root, name)
            if name.startswith(".") or not (path.is_file() or path.is_symlink()):
                continue
            if path.suffix.lower() in IMAGE_SUFFIXES:
                yield path
            elif unread is not None and path.suffix.lower() in UNREAD_SUFFIXES:
                unread.append(path)


class PhotoIds(dict[str, Path]):
    """Record id -> photo, the first in path order of each id (:func:`photo_ids`); :meth:`match` pairs
    a record with its photo and notes the ids that name a photo in another case only (record ``ABC``,
    ``abc.jpg``), for :func:`warn_photo_pairs`. Only ids matching a photo's ignoring case are kept."""

    def __init__(self, paths: Iterable[Path]):
        super().__init__()
        self.paths = list(dict.fromkeys(paths))
        self._folded: set[str] = set()  # photos' ids in lower case (str.casefold)
        self._asked: set[str] = set()  # record ids matched that are in _folded ignoring case
        for path in self.paths:
            for key in photo_ids(path):
                self.setdefault(key, path)
                self._folded.add(key.casefold())

    def match(self, record_id: str) -> Path | None:
        """The photo of ``record_id``, named after it exactly (ids are case-sensitive), or None."""
        if record_id.casefold() in self._folded:
            self._asked.add(record_id)
        return self.get(record_id)

    def case_slips(self) -> list[tuple[Path, str]]:
        """(photo, record id) of each photo named after no record :meth:`match` was asked for but after
        exactly one ignoring case (``abc.jpg``, ``ABC``), in path order."""
        folded: dict[str, set[str]] = {}
        for record_id in self._asked:
            folded.setdefault(record_id.casefold(), set()).add(record_id)
        slips = []
        for path in self.paths:
            keys = photo_ids(path)
            records = set().union(*(folded.get(key.casefold(), set()) for key in keys))
            if len(records) == 1 and not records & set(keys):
                slips.append((path, records.pop()))
        return slips


def warn_photo_pairs(photos: PhotoIds, ids: Iterable[str], fate: str) -> set[Path]:
    """Warn once about the records of ``ids`` more than one of ``photos.paths`` is named after (``ID.jpg``
    beside ``ID.png`` or ``ID.1024px.jpg``), whose photo is ``photos[id]`` (:class:`PhotoIds`: the
    first in path order): the first few ids with their photos and a count; ``fate`` says what becomes
    of the others. Returns those other photos. Warn once, too, about the photos named after a record
    in another case only (:meth:`PhotoIds.case_slips`): how many, and one."""
    named: dict[str, list[Path]] = {key: [] for key in ids if key in photos}
    for path in photos.paths:
        for key in photo_ids(path):
            if key in named and path != photos[key]:
                named[key].append(path)
    seconds = {key: others for key, others in named.items() if others}
    if seconds:
        shown = [f"{key}: {photos[key]} (not {', '.join(map(str, others))})"
                 for key, others in list(seconds.items())[:5]]
        log.warning("%s more than one photo, the first in path order used and %s: %s%s",
                    counted(len(seconds), "record has", "records have"), fate, "; ".join(shown),
                    " …" if len(seconds) > 5 else "")
    if slips := photos.case_slips():
        log.warning("%s named after a record id in another case only, and not paired with it, e.g. %s ~ %s: "
                    "ids are matched case-sensitively; rename the photo", counted(len(slips), "photo is", "photos are"),
                    *slips[0])
    return {path for others in seconds.values() for path in others}


def warn_unnamed_photos(paths: Iterable[Path], ids: Container[str], fate: str) -> None:
    """Warn once about the photos of ``paths`` named after no id of ``ids`` (:func:`photo_ids`): the
    first five and a count; ``fate`` says what became of them."""
    stray = [str(path) for path in paths if not any(key in ids for key in photo_ids(path))]
    if stray:
        log.warning("%s %s: %s%s", counted(len(stray), "photo"), fate, ", ".join(stray[:5]),
                    " …" if len(stray) > 5 else "")


def photo_ids(path: Path) -> tuple[str, ...]:
    """The record ids a photo may be named after: its file name without extension, and before its
    first dot (``ID.jpg``, ``ID.1024px.jpg``), and whole (a taxonomy table's id column that lists the
    files); each also composed (Unicode NFC), as tables and FASTA headers write ``é``, where macOS
    names files decomposed (``e`` and a combining accent)."""
    name = path.name.rsplit(".", 1)[0]
    names = (name, name.split(".", 1)[0], path.name)
    return tuple(dict.fromkeys([*names, *(unicodedata.normalize("NFC", key) for key in names)]))


def load_image(source: str | Path | bytes, name: str | None = None, at_least: int = DECODE_FLOOR) -> Image.Image:
    """Decode a photo (path or bytes) to an upright 8-bit RGB image; ImageError if unusable.

    A JPEG whose shorter side is at least twice ``at_least`` pixels is decoded at 1/2, 1/4 or 1/8
    of its size (libjpeg's DCT scaling), the smallest scale that keeps ``at_least`` (an 8000x6000
    photo as 2000x1500: 9 MB of pixels, not 144 MB); smaller photos are decoded whole, as before.
    """
    name = name or (str(source) if not isinstance(source, bytes) else "image")
    image = _open(source, name)
    try:
        with _pil_quiet():
            _draft(image, at_least)
            image.load()
            image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except Exception as exc:  # noqa: BLE001 - PIL's decoders report corrupt data with many types
        image.close()
        raise ImageError(f"{name}: unreadable image ({exc})") from None


def _draft(image: Image.Image, at_least: int) -> None:
    """Have a large JPEG decoded at the smallest of 1/8, 1/4 and 1/2 of its size whose shorter side
    keeps ``at_least`` pixels (``Image.draft``); other images are left as they are."""
    shorter = min(image.size)
    scale = next((s for s in (8, 4, 2) if shorter // s >= at_least), 1)
    if image.format == "JPEG" and scale > 1:
        image.draft(image.mode, (image.width // scale, image.height // scale))


def load_photos(loaders: Iterable[tuple[object, Callable[[], Image.Image]]],
                convert: Callable[[Image.Image], object] = lambda image: image,
                skipped: str = "photo skipped") -> tuple[list, list]:
    """Decode photos, each ``(key, load)``, and ``convert`` each as soon as it is decoded (to the
    model's input: far smaller than a full-size photo); an unreadable one is logged as
    ``<skipped>: <reason>`` and left out. Returns the keys kept and their converted photos."""
    keys, photos = [], []
    for key, load in loaders:
        try:
            photos.append(convert(load()))
        except ImageError as exc:
            log.warning("%s: %s", skipped, exc)
            continue
        keys.append(key)
    return keys, photos


def check_image(data: bytes, name: str) -> None:
    """Cheap integrity check of encoded image bytes; ImageError if unusable.

    JPEGs are decoded at 1/8 scale (every byte of the compressed stream is read, so
    truncation and corruption are caught, at about a millisecond per 1024-px photo);
    other formats are decoded fully.
    """
    image = _open(data, name)
    try:
        if image.format == "JPEG":
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
        image.load()
    except Exception as exc:  # noqa: BLE001 - as in load_image
        raise ImageError(f"{name}: unreadable image ({exc})") from None


def _open(source: str | Path | bytes, name: str) -> Image.Image:
    """Read the header only; ImageError for missing, empty, non-image or oversized files."""
    if isinstance(source, bytes) and not source:
        raise ImageError(f"{name}: empty image file")
    try:
        with _pil_quiet():
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such image file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a folder, not an image") from None
    except UnidentifiedImageError:
        path = None if isinstance(source, bytes) else Path(source)
        if path is not None and path.stat().st_size == 0:
            raise ImageError(f"{name}: empty image file") from None
        if path is not None and path.suffix.lower() in UNREAD_SUFFIXES:  # a photo all the same
            raise ImageError(f"{name}: a {path.suffix} photo, which clibd cannot decode; convert it to JPEG "
                             "or PNG") from None
        raise ImageError(f"{name}: not an image") from None
    except Exception as exc:  # noqa: BLE001 - as in load_image
        raise ImageError(f"{name}: unreadable image ({exc})") from None
    if image.width * image.height > MAX_PIXELS:
        image.close()
        raise ImageError(f"{name}: {image.width}x{image.height} pixels is more than the "
                         f"{MAX_PIXELS:,}-pixel limit (decompression bomb guard)")
    return image


@contextmanager
def _pil_quiet() -> Iterator[None]:
    """PIL's warnings off: our own guard reports oversized images, and corrupt EXIF (which PIL warns
    about on the terminal, outside clibd's messages) leaves the photo readable all the same."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(image), mode), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _to_uint8(pixels: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16-bit, 32-bit integer or float grayscale to 0-255, in one float32 working copy
    (4 bytes a pixel: a large 16-bit scan is converted in place, not in float64 copies)."""
    scaled = pixels.astype(np.float32)
    if mode == "F":
        scaled = np.nan_to_num(scaled, copy=False)
        scale = 255.0 if np.max(scaled, initial=0) <= 1.0 else 1.0
    elif mode.startswith("I;16") or np.max(pixels, initial=0) > 255:
        scale = 255.0 / 65535.0
    else:
        scale = 1.0
    scaled *= scale
    np.clip(scaled, 0, 255, out=scaled)
    return np.rint(scaled, out=scaled).astype(np.uint8)


def stored_photo(data: bytes, name: str, shorter_side: int | None = None, quality: int = 95) -> bytes:
    """The bytes ``prepare`` stores of a photo; ImageError if unusable.

    A JPEG, PNG or TIFF (``KEPT_FORMATS``) is kept as given, checked (:func:`check_image`); another
    format (WebP, GIF, BMP, AVIF, JPEG 2000: a reader's Pillow may lack its decoder) is re-encoded as
    JPEG, an animated one's first frame. With ``shorter_side``, a photo larger than that on its shorter
    side is scaled down to it and re-encoded as JPEG.
    """
    with _open(data, name) as header:
        kept = header.format in KEPT_FORMATS
    if kept and shorter_side is None:
        check_image(data, name)
        return data
    image = load_image(data, name, at_least=max(DECODE_FLOOR, shorter_side or 0))
    scale = (shorter_side or min(image.size)) / min(image.size)
    if scale >= 1 and kept:
        return data
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()
