"""A synthetic tri-modal dataset: real BOLD barcodes paired with generated specimen images.

There are no photos for the BOLD barcodes, so ``clibd prepare --format synthetic`` draws one
for every record. The drawing follows the record's real taxonomy, rank by rank:

* order   -> body plan (fly, moth, beetle, wasp; other orders get one chosen by name),
* family  -> body colour,
* genus   -> pattern on the abdomen or wings (bands, spots, a stripe, chevrons),
* species -> a small detail (a coloured mark, antenna length, wing tint),

plus per-specimen pose, scale, position, background, lighting and sensor noise. Species of
one genus therefore look alike, so a model that aligns images with barcodes can place an
unseen species near its genus. Everything is decided by ``seed`` and the taxonomy names, so
a (species, specimen) pair always gives the same image. The images are *synthetic*: they show
that the image path learns and let throughput be measured, not how real photos behave.
"""

from __future__ import annotations

import colorsys
import functools
import csv
import hashlib
import io
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from clibd_cli.io.streams import open_text, reading
from models.config import RANKS
from models.errors import ClibdError

BOLD_CSV = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "bold-coi" / "metadata.csv.gz"
SEEN_SPLITS = ("train", "val", "test")
UNSEEN_SPLITS = ("key_unseen", "val_unseen", "test_unseen")
BODY_PLANS = ("fly", "moth", "beetle", "wasp")
ORDER_PLANS = {"Diptera": "fly", "Lepidoptera": "moth", "Coleoptera": "beetle", "Hymenoptera": "wasp"}
PATTERNS = ("bands", "spots", "stripe", "chevrons")


def _rng(seed: int, *names: str) -> random.Random:
    """A generator fixed by the seed and the names (stable across Python runs, unlike hash())."""
    digest = hashlib.sha256("\x1f".join([str(seed), *names]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def _hsv(h: float, s: float, v: float, alpha: int = 255) -> tuple[int, int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255), alpha


@dataclass(frozen=True)
class Appearance:
    """What a specimen looks like before pose and noise: one field per taxonomic rank."""

    plan: str
    body: tuple[int, int, int, int]
    pattern: str
    pattern_colour: tuple[int, int, int, int]
    pattern_count: int
    pattern_size: float
    mark_colour: tuple[int, int, int, int]
    mark_at: tuple[float, float]
    antenna: float
    wing_tint: tuple[int, int, int, int]


def appearance(seed: int, order: str, family: str, genus: str, species: str) -> Appearance:
    """The taxon-level traits of a specimen (no per-specimen randomness)."""
    plan = ORDER_PLANS.get(order) or _rng(seed, "order", order).choice(BODY_PLANS)
    fam = _rng(seed, "family", family)
    hue = fam.random()
    body = _hsv(hue, fam.uniform(0.45, 0.95), fam.uniform(0.35, 0.85))
    gen = _rng(seed, "genus", genus)
    pattern = gen.choice(PATTERNS)
    pattern_colour = _hsv(hue + gen.uniform(0.25, 0.75), gen.uniform(0.3, 1.0), gen.choice((0.1, 0.95)))
    count, size = gen.randint(2, 5), gen.uniform(0.5, 1.0)
    sp = _rng(seed, "species", genus, species)
    return Appearance(
        plan, body, pattern, pattern_colour, count, size,
        mark_colour=_hsv(sp.random(), 0.9, sp.uniform(0.6, 1.0)),
        mark_at=(sp.uniform(-0.5, 0.5), sp.uniform(-0.6, 0.2)),
        antenna=sp.uniform(0.3, 1.0),
        wing_tint=_hsv(sp.random(), sp.uniform(0.0, 0.5), 0.95, 110),
    )


def _ellipse(draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, fill) -> None:
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)


def _pattern(look: Appearance, size: int, box: tuple[float, float, float, float]) -> Image.Image:
    """The genus pattern drawn over ``box`` on a transparent layer."""
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    x0, y0, x1, y1 = box
    w, h, n, c = x1 - x0, y1 - y0, look.pattern_count, look.pattern_colour
    if look.pattern == "bands":
        for i in range(n):
            y = y0 + (i + 0.5) * h / n
            half = 0.3 * h / n * look.pattern_size
            draw.rectangle((x0, y - half, x1, y + half), fill=c)
    elif look.pattern == "spots":
        for i in range(n):
            y = y0 + (i + 0.5) * h / n
            r = 0.12 * w * look.pattern_size
            _ellipse(draw, x0 + 0.3 * w, y, r, r, c)
            _ellipse(draw, x0 + 0.7 * w, y, r, r, c)
    elif look.pattern == "stripe":
        half = 0.08 * w * (1 + look.pattern_size)
        draw.rectangle((x0 + w / 2 - half, y0, x0 + w / 2 + half, y1), fill=c)
    else:  # chevrons
        for i in range(n):
            y = y0 + (i + 0.3) * h / n
            draw.line([(x0, y), (x0 + w / 2, y + 0.4 * h / n), (x1, y)], fill=c,
                      width=max(1, int(0.05 * w * (1 + look.pattern_size))))
    return layer


# Body plans in a 100 x 100 frame, head up: (kind, points or (cx, cy, rx, ry), paint), drawn in
# order. Paint: "body" (family colour), "dark" (shaded body colour), "wing" (species wing tint).
# The region marked "pattern" carries the genus pattern and the species mark.
PLANS: dict[str, list[tuple[str, tuple, str]]] = {
    "moth": [("polygon", ((50, 34), (8, 22), (14, 52)), "body"), ("polygon", ((50, 34), (92, 22), (86, 52)), "body"),
             ("polygon", ((50, 50), (20, 56), (32, 74)), "body"), ("polygon", ((50, 50), (80, 56), (68, 74)), "body"),
             ("ellipse", (50, 50, 5, 24), "dark"),
             ("pattern", ((50, 34), (8, 22), (14, 52), (50, 34), (92, 22), (86, 52)), "")],
    "beetle": [("ellipse", (50, 32, 10, 8), "dark"), ("ellipse", (50, 58, 20, 26), "body"),
               ("pattern", (50, 58, 20, 26), "")],
    "wasp": [("polygon", ((50, 36), (16, 44), (42, 48)), "wing"), ("polygon", ((50, 36), (84, 44), (58, 48)), "wing"),
             ("ellipse", (50, 38, 9, 9), "body"), ("ellipse", (50, 50, 2, 4), "dark"),
             ("ellipse", (50, 70, 12, 18), "body"), ("pattern", (50, 70, 12, 18), "")],
    "fly": [("polygon", ((50, 40), (20, 62), (38, 72)), "wing"), ("polygon", ((50, 40), (80, 62), (62, 72)), "wing"),
            ("ellipse", (50, 42, 12, 11), "body"), ("ellipse", (50, 64, 10, 15), "body"),
            ("pattern", (50, 64, 10, 15), "")],
}


@functools.lru_cache(maxsize=64)
def _draw_specimen(look: Appearance, size: int) -> Image.Image:
    """The specimen in canonical pose (head up, centred) on a transparent square canvas."""
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    s = size / 100.0
    dark = tuple(int(v * 0.45) for v in look.body[:3]) + (255,)
    paint = {"body": look.body, "dark": dark, "wing": look.wing_tint}
    # Legs and antennae first, so the body covers their roots.
    for side in (-1, 1):
        for k, y in enumerate((40, 50, 60)):
            draw.line([(50 * s, y * s), ((50 + side * 22) * s, (y - 6 + 8 * k) * s)], fill=dark,
                      width=max(1, int(1.2 * s)))
        draw.line([(50 * s, 26 * s), ((50 + side * 14) * s, (22 - 16 * look.antenna) * s)], fill=dark,
                  width=max(1, int(s)))
    mask = Image.new("L", (size, size), 0)
    for kind, geometry, colour in PLANS[look.plan]:
        if kind == "pattern":
            _region(ImageDraw.Draw(mask), geometry, s, 255)
            region = geometry
        else:
            _region(draw, geometry, s, paint[colour])
    _ellipse(draw, 50 * s, 27 * s, 7 * s, 6 * s, dark)  # head and eyes
    for side in (-1, 1):
        _ellipse(draw, (50 + side * 5) * s, 25 * s, 2.5 * s, 2.5 * s, (20, 20, 20, 255))
    x0, y0, x1, y1 = _box(region, s)
    layer = _pattern(look, size, (x0, y0, x1, y1))
    layer.putalpha(ImageChops.multiply(layer.getchannel("A"), mask))  # clip to the region
    canvas.alpha_composite(layer)
    mx = (x0 + x1) / 2 + look.mark_at[0] * (x1 - x0) * 0.6  # the species mark
    my = (y0 + y1) / 2 + look.mark_at[1] * (y1 - y0) * 0.6
    _ellipse(draw, mx, my, 3.5 * s, 3.5 * s, look.mark_colour)
    return canvas


def _region(draw: ImageDraw.ImageDraw, geometry: tuple, s: float, fill) -> None:
    """An ellipse ``(cx, cy, rx, ry)`` or polygons (points, 3 per triangle) in the 100-unit frame."""
    if isinstance(geometry[0], tuple):
        for i in range(0, len(geometry), 3):
            draw.polygon([(x * s, y * s) for x, y in geometry[i:i + 3]], fill=fill)
    else:
        _ellipse(draw, *(v * s for v in geometry), fill)


def _box(geometry: tuple, s: float) -> tuple[float, float, float, float]:
    """Bounding box of a region, in pixels."""
    if isinstance(geometry[0], tuple):
        xs, ys = zip(*geometry)
        return min(xs) * s, min(ys) * s, max(xs) * s, max(ys) * s
    cx, cy, rx, ry = geometry
    return (cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s


def specimen_image(look: Appearance, specimen_rng: random.Random, size: int = 96, quality: int = 90) -> bytes:
    """JPEG bytes of one specimen: the taxon's look plus this specimen's pose, light and noise."""
    rng, big = specimen_rng, 2 * size
    tone = _hsv(rng.uniform(0.05, 0.15), rng.uniform(0.0, 0.2), rng.uniform(0.75, 0.95))[:3]
    background = Image.new("RGB", (big, big), tone)
    side = max(8, int(big * rng.uniform(0.7, 1.05)))
    bug = _draw_specimen(look, big).rotate(rng.uniform(0, 360), resample=Image.BICUBIC)
    bug = bug.resize((side, side), Image.BILINEAR)
    shift = [int(big * rng.uniform(-0.08, 0.08)) + (big - side) // 2 for _ in range(2)]
    background.paste(bug, tuple(shift), bug)
    pixels = np.asarray(background.resize((size, size), Image.BILINEAR), dtype=np.float32)
    pixels = pixels * rng.uniform(0.85, 1.15) + np.random.default_rng(rng.getrandbits(32)).normal(0, 6, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def read_bold(path: str | Path) -> list[dict[str, str]]:
    """The rows of a BIOSCAN-5M-layout metadata CSV (compressed or not: ``io/streams.open_text``)."""
    path = Path(path)
    if not path.is_file():
        raise ClibdError(f"{path}: BOLD metadata CSV not found (expected ../shared/data/bold-coi/metadata.csv.gz)")
    with reading(path), open_text(path) as handle:
        rows = list(csv.DictReader(handle))
    needed = {"processid", "sampleid", "order", "family", "genus", "species", "dna_barcode", "split"}
    if rows and not needed <= rows[0].keys():
        raise ClibdError(f"{path}:1: missing columns {', '.join(sorted(needed - rows[0].keys()))}")
    return rows


def select_records(rows: list[dict[str, str]], n_species: int, per_species: int, seed: int) -> list[dict[str, str]]:
    """Up to ``per_species`` records of ``n_species`` species, about a third of them unseen.

    Unseen species are taken from genera that also have seen species, and each of those
    genera gets at least one seen species, so genus traits can carry over. Species-less
    ``pretrain`` records of the chosen genera are added as well (about a fifth as many).
    """
    rng = random.Random(seed)
    records: dict[str, list[dict[str, str]]] = defaultdict(list)
    seen_by_genus: dict[str, set[str]] = defaultdict(set)
    unseen = set()
    for row in rows:
        if row["species"] and row["split"] in SEEN_SPLITS + UNSEEN_SPLITS:
            records[row["species"]].append(row)
            if row["split"] in SEEN_SPLITS:
                seen_by_genus[row["genus"]].add(row["species"])
            else:
                unseen.add(row["species"])
    genus = {sp: recs[0]["genus"] for sp, recs in records.items()}
    shared = sorted(sp for sp in unseen if seen_by_genus.get(genus[sp]))
    rng.shuffle(shared)
    chosen = shared[: min(len(shared), n_species // 3)]
    for g in sorted({genus[sp] for sp in chosen}):
        if len(chosen) < n_species:
            chosen.append(rng.choice(sorted(seen_by_genus[g])))
    rest = sorted({sp for sps in seen_by_genus.values() for sp in sps} - set(chosen))
    rng.shuffle(rest)
    chosen += rest[: max(0, n_species - len(chosen))]
    picked = []
    for sp in sorted(chosen):
        picked += rng.sample(records[sp], min(per_species, len(records[sp])))
    genera = {genus[sp] for sp in chosen}
    pretrain = [row for row in rows if row["split"] == "pretrain" and row["genus"] in genera]
    picked += rng.sample(pretrain, min(len(pretrain), len(picked) // 5))
    return picked


def synthetic_records(rows: Iterable[dict[str, str]], seed: int, image_size: int) -> Iterable[dict]:
    """Dataset records with a generated image; about half the pretrain records get none."""
    for row in rows:
        identity = row["species"] or row.get("dna_bin") or row["processid"]
        look = appearance(seed, row["order"], row["family"], row["genus"], identity)
        specimen = _rng(seed, "specimen", row["processid"])
        no_image = row["split"] == "pretrain" and specimen.random() < 0.5
        yield {
            "split": row["split"],
            "processid": row["processid"],
            "sampleid": row["sampleid"],
            "barcode": row["dna_barcode"],
            **{rank: row[rank] or None for rank in RANKS},
            "dna_bin": row.get("dna_bin", ""),
            "image": None if no_image else specimen_image(look, specimen, image_size),
        }


def write_synthetic_dataset(out_path: str | Path, n_species: int = 150, images_per_species: int = 20,
                            image_size: int = 96, seed: int = 0, bold_csv: str | Path = BOLD_CSV,
                            command: str | None = None) -> dict:
    """Write the synthetic tri-modal dataset HDF5 (``command``: the command line, recorded in its
    attributes); returns the writer's per-split summary."""
    from clibd_cli.data.store_writer import DatasetWriter

    if n_species < 2 or images_per_species < 1 or not 16 <= image_size <= 512:
        raise ClibdError("synthetic: need n_species >= 2, images_per_species >= 1, 16 <= image_size <= 512")
    rows = select_records(read_bold(bold_csv), n_species, images_per_species, seed)
    attrs = {"source": f"synthetic images + BOLD barcodes ({Path(bold_csv).name})", "split_protocol": "bioscan-5m",
             "seed": seed, "synthetic": {"n_species": n_species, "images_per_species": images_per_species,
                                         "image_size": image_size},
             **({"command": command} if command else {})}
    with DatasetWriter(out_path, attrs, images=True) as writer:
        for record in synthetic_records(rows, seed, image_size):
            writer.add(record.pop("split"), record)
    return writer.summary()
