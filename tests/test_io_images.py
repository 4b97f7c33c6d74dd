"""Photo loading: real BIOSCAN JPEGs, odd modes converted correctly, unusable files refused."""

import io
import logging

import numpy as np
import pytest
from PIL import Image

from clibd_cli.io import images
from clibd_cli.io.images import IMAGE_SUFFIXES, ImageError, check_image, find_images, load_image, stored_photo
from fixtures.samples import CROPPED_1M, PHOTOS_5M
from models.errors import ClibdError

REAL = sorted(PHOTOS_5M.glob("*.jpg"))[0]


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def test_real_bioscan_photo_from_path_and_bytes():
    from_path = load_image(REAL)
    from_bytes = load_image(REAL.read_bytes())
    assert from_path.mode == "RGB" and from_path.size == (1024, 768)
    assert np.array_equal(np.asarray(from_path), np.asarray(from_bytes))
    check_image(REAL.read_bytes(), str(REAL))


def test_find_images_recursive_sorted_skips_hidden(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/b/x.JPG", "a/y.png", "z.tiff", "a/.hidden.jpg", "a/._x.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert find_images([tmp_path]) == [tmp_path / "a/b/x.JPG", tmp_path / "a/y.png", tmp_path / "z.tiff"]
    assert find_images([tmp_path / "notes.txt"]) == [tmp_path / "notes.txt"]  # a file given by name is kept
    with pytest.raises(ClibdError, match="no such file or folder"):
        find_images([tmp_path / "nope"])


def test_find_images_follows_linked_folders_once_and_keeps_dangling_links(tmp_path):
    # a linked folder of photos (ln -s /data/plate_0193 photos/) gave no rows, and a link to a photo that is
    # gone vanished from the output instead of being an invalid record
    plate = tmp_path / "elsewhere" / "plate"
    plate.mkdir(parents=True)
    (plate / "p1.jpg").write_bytes(b"")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "plate").symlink_to(plate)
    (photos / "loop").symlink_to(photos)  # a link back up is searched once, not forever
    (photos / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    assert find_images([photos]) == [photos / "gone.jpg", photos / "plate" / "p1.jpg"]
    with pytest.raises(ImageError, match="no such image file"):
        load_image(photos / "gone.jpg")


def test_photos_in_formats_folders_are_not_searched_for_are_named(tmp_path, caplog):
    # a folder's .heic and .jxl photos vanished without a word: a barcode's HEIC photo left it
    # classified as dna, and a folder of them gave "no records to classify"
    (tmp_path / "plate").mkdir()
    for name in ("A1.jpg", "plate/B2.jxl", "C3.HEIC", "notes.txt", ".hidden.heic"):
        (tmp_path / name).write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="clibd"):
        assert find_images([tmp_path]) == [tmp_path / "A1.jpg"]
    assert caplog.messages == [f"2 photos not read: folders are searched for {', '.join(sorted(IMAGE_SUFFIXES))} "
                               f"photos only (convert the others, e.g. to JPEG or PNG): {tmp_path / 'C3.HEIC'}, "
                               f"{tmp_path / 'plate/B2.jxl'}"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="clibd"):
        assert find_images([tmp_path], warn=False) == [tmp_path / "A1.jpg"]
    assert caplog.messages == []
    # and one given by name was "not an image"
    heic = tmp_path / "C3.HEIC"
    heic.write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0")
    with pytest.raises(ImageError, match=r"C3.HEIC: a \.HEIC photo, which clibd cannot decode; convert it to"):
        load_image(heic)


# Suffix and Pillow format of each photo format read where this Pillow decodes it (io.images._LIBRARY_SUFFIXES)
# or always (GIF, BMP)
OTHER_FORMATS = {".webp": "WEBP", ".gif": "GIF", ".bmp": "BMP", ".avif": "AVIF", ".jp2": "JPEG2000"}


def test_every_format_this_pillow_decodes_is_a_photo(tmp_path, caplog):
    """WebP, GIF, BMP (and AVIF, JPEG 2000 where Pillow has their library) photos in a folder were passed
    over with a warning to convert them, though Pillow reads them: they are found, decoded to RGB, and the
    formats it cannot decode here are still named."""
    red = Image.new("RGB", (16, 12), (200, 30, 40))
    readable = [suffix for suffix in OTHER_FORMATS if suffix in IMAGE_SUFFIXES]
    assert {".webp", ".gif", ".bmp"} <= set(readable)  # built in, or in every Pillow wheel
    for suffix in OTHER_FORMATS:
        red.save(tmp_path / f"p{suffix}", format=OTHER_FORMATS[suffix])
    with caplog.at_level(logging.WARNING, logger="clibd"):
        found = find_images([tmp_path])
    assert found == sorted(tmp_path / f"p{suffix}" for suffix in readable)
    assert [suffix for suffix in OTHER_FORMATS if suffix not in readable and suffix in caplog.text] == \
        [suffix for suffix in OTHER_FORMATS if suffix not in readable]
    for path in found:
        pixel = np.asarray(load_image(path), dtype=int)[6, 8]
        assert load_image(path).size == (16, 12) and np.abs(pixel - [200, 30, 40]).max() < 12, path


def test_the_formats_read_are_those_pillow_was_built_to_decode():
    assert images._decodable_suffixes(lambda feature: False) == images._BUILT_IN_SUFFIXES
    assert images._decodable_suffixes(lambda feature: feature == "webp") == images._BUILT_IN_SUFFIXES | {".webp"}
    assert not images._built_with("no such library")
    assert IMAGE_SUFFIXES.isdisjoint(images.UNREAD_SUFFIXES) and ".heic" in images.UNREAD_SUFFIXES


def test_an_animated_gif_is_read_as_its_first_frame_and_stored_as_jpeg():
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(out).n_frames == 2
    assert load_image(out.getvalue()).getpixel((4, 4))[0] > 200
    stored = Image.open(io.BytesIO(stored_photo(out.getvalue(), "anim.gif")))
    assert stored.format == "JPEG" and stored.getpixel((4, 4))[0] > 200


@pytest.mark.parametrize("resize", [None, 256])
def test_prepare_stores_jpeg_png_and_tiff_as_given_and_other_formats_as_jpeg(resize):
    """A WebP or BMP photo stored as given would hold the dataset's readers to a Pillow with its decoder
    (DESIGN.md: ``image`` is JPEG bytes); JPEG, PNG and TIFF are kept as they are, small ones with --resize too."""
    photo = Image.new("RGB", (16, 12), (20, 160, 90))
    for fmt in ("JPEG", "PNG", "TIFF"):
        assert stored_photo(encoded(photo, fmt), f"p.{fmt}", resize) == encoded(photo, fmt)
    for fmt in ("WEBP", "BMP", "GIF"):
        stored = Image.open(io.BytesIO(stored_photo(encoded(photo, fmt), f"p.{fmt}", resize)))
        assert stored.format == "JPEG" and stored.size == (16, 12), fmt
    with pytest.raises(ImageError, match="p.webp: unreadable image"):
        stored_photo(encoded(photo, "WEBP")[:40], "p.webp", resize)


def test_sixteen_bit_grayscale_keeps_its_tones():
    pixels = np.array([[0, 32896, 65535]], dtype=np.uint16)
    for image in (Image.fromarray(pixels), Image.open(io.BytesIO(encoded(Image.fromarray(pixels))))):
        rgb = load_image(encoded(image))
        assert np.asarray(rgb)[0, :, 0].tolist() == [0, 128, 255], image.mode


def test_thirty_two_bit_and_float_grayscale():
    ints = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32), "I")
    assert np.asarray(images._to_rgb(ints))[0, :, 1].tolist() == [0, 100, 255]  # 8-bit range stays as it is
    wide = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.int32), "I")  # 16-bit tones in mode I
    assert np.asarray(images._to_rgb(wide))[0, :, 1].tolist() == [0, 128, 255]
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    assert np.asarray(images._to_rgb(floats))[0, :, 2].tolist() == [0, 128, 255]


def test_a_sixteen_bit_photo_is_converted_in_a_few_bytes_a_pixel():
    # float64 working copies took 30 bytes a pixel: 2.5 GB and 6 s for an 81-megapixel 16-bit scan
    import tracemalloc

    image = Image.fromarray(np.tile(np.arange(0, 65536, 32, dtype=np.uint16), (2000, 1)))  # 2048 x 2000
    tracemalloc.start()
    try:
        rgb = images._to_rgb(image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.asarray(rgb)[0, [0, 1024, 2047], 0].tolist() == [0, 128, 255]
    assert peak < 10 * image.width * image.height, f"{peak / (image.width * image.height):.1f} bytes a pixel"


def test_a_photo_with_corrupt_exif_is_read_without_a_python_warning_on_stderr():
    # PIL's "TiffImagePlugin.py:982: UserWarning: Corrupt EXIF data..." reached the terminal among clibd's
    import warnings

    out = io.BytesIO()
    Image.open(REAL).save(out, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + bytes(20))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_image(out.getvalue()).size == (1024, 768)
    assert not [str(w.message) for w in caught]


def test_alpha_is_composited_on_white_and_cmyk_converted():
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 0))
    assert np.asarray(load_image(encoded(rgba))).tolist() == [[[255, 0, 0], [255, 255, 255]]]
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red in CMYK
    red = np.asarray(load_image(encoded(cmyk, "JPEG")))[0, 0]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    gray = load_image(encoded(Image.new("L", (3, 3), 77)))
    assert gray.mode == "RGB" and gray.getpixel((1, 1)) == (77, 77, 77)


def test_exif_orientation_is_applied():
    wide = Image.new("RGB", (40, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    out = io.BytesIO()
    wide.save(out, format="JPEG", exif=exif)
    assert load_image(out.getvalue()).size == (20, 40)


@pytest.mark.parametrize("data, message", [
    (b"", "empty image file"),
    (b"this is not an image at all", "not an image"),
    (REAL.read_bytes()[:20000], "unreadable image"),
])
def test_unusable_bytes_raise_image_error(data, message):
    with pytest.raises(ImageError, match=message):
        load_image(data, "photo.jpg")
    with pytest.raises(ImageError, match=message):
        check_image(data, "photo.jpg")


def test_unusable_files_name_the_file(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=f"{empty}: empty image file"):
        load_image(empty)
    with pytest.raises(ImageError, match="no such image file"):
        load_image(tmp_path / "missing.jpg")


def test_decompression_bomb_guard(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(REAL)


def test_resize_scales_shorter_side_and_keeps_small_photos():
    small = sorted(CROPPED_1M.glob("*.jpg"))[0].read_bytes()  # 341x256
    assert stored_photo(small, "small.jpg", 256) == small
    resized = Image.open(io.BytesIO(stored_photo(REAL.read_bytes(), "big.jpg", 256)))
    assert resized.format == "JPEG" and resized.size == (341, 256)


def test_a_huge_jpeg_is_decoded_scaled_down_and_a_bioscan_photo_whole():
    """A 4096x3072 JPEG was decoded whole (an 8000x6000 one: 144 MB of pixels) before the model shrank it
    to 183 or 256 pixels: it is decoded at 1/2 (2048x1536, the smallest DCT scale keeping 1024), and what
    the model sees of it stays that of the whole decode; a 1024x768 BIOSCAN photo is decoded whole."""
    from models.image import image_transform

    photo = Image.open(REAL).convert("RGB").resize((4096, 3072), Image.Resampling.BILINEAR)
    data = encoded(photo, "JPEG")
    loaded = load_image(data)
    assert loaded.size == (2048, 1536) and loaded.mode == "RGB"
    whole = Image.open(io.BytesIO(data))
    whole.load()
    transform = image_transform({"image_size": 224, "resize_float": False, "mean": None, "std": None})
    assert float((transform(loaded) - transform(whole.convert("RGB"))).abs().mean()) < 0.01
    assert np.array_equal(np.asarray(load_image(REAL)), np.asarray(Image.open(REAL).convert("RGB")))
    small = stored_photo(data, "big.jpg", 256)  # prepare --resize: from the scaled decode too
    assert min(Image.open(io.BytesIO(small)).size) == 256


def test_a_photo_is_found_by_its_name_or_the_part_before_its_first_dot(tmp_path):
    """``ID.jpg`` and ``ID.1024px.jpg`` both name record ``ID``; the first path of an id is its photo."""
    from pathlib import Path

    from clibd_cli.io.images import PhotoIds, photo_ids

    assert photo_ids(Path("a/BIOUG01.1024px.jpg")) == ("BIOUG01.1024px", "BIOUG01", "BIOUG01.1024px.jpg")
    assert photo_ids(Path("BIOUG02.png")) == ("BIOUG02", "BIOUG02.png")
    first, second = Path("a/BIOUG01.jpg"), Path("b/BIOUG01.1024px.jpg")
    assert PhotoIds([first, second]) == {"BIOUG01": first, "BIOUG01.1024px": second,
                                             "BIOUG01.jpg": first, "BIOUG01.1024px.jpg": second}
    # a file named on macOS (decomposed: e + U+0301) matched no id of a table that writes é, and was
    # left out as "named after no id of the taxonomy table" beside the id it showed
    decomposed = Path("cafe\u0301_1.1024px.jpg")
    assert photo_ids(decomposed)[:2] == ("cafe\u0301_1.1024px", "cafe\u0301_1")
    assert PhotoIds([decomposed])["caf\u00e9_1"] == decomposed


def test_a_second_photo_of_a_record_is_named_in_one_warning(tmp_path, caplog):
    """``ID.jpg`` beside ``ID.png`` or ``ID.1024px.jpg``: the first in path order was the record's and the
    others went unmentioned; one warning names the ids (the first five) and both photos, and counts them.
    Photos of other ids sharing a prefix (``A.1.jpg``, ``A.2.jpg``) are no second photo of ``A.1``."""
    from pathlib import Path

    from clibd_cli.io.images import PhotoIds, warn_photo_pairs

    paths = [Path("a/B1.jpg"), Path("b/B1.1024px.jpg"), Path("b/B1.png"), Path("A.1.jpg"), Path("A.2.jpg")]
    photos = PhotoIds(paths)
    with caplog.at_level(logging.WARNING, logger="clibd"):
        others = warn_photo_pairs(photos, ["B1", "A.1", "absent"], "the others left out")
    assert others == {Path("b/B1.1024px.jpg"), Path("b/B1.png")}
    assert caplog.messages == ["1 record has more than one photo, the first in path order used and the others "
                               f"left out: B1: {Path('a/B1.jpg')} (not {Path('b/B1.1024px.jpg')}, "
                               f"{Path('b/B1.png')})"]
    caplog.clear()
    many = [Path(f"{d}/R{i}.jpg") for i in range(7) for d in ("x", "y")]
    with caplog.at_level(logging.WARNING, logger="clibd"):
        warn_photo_pairs(PhotoIds(many), [f"R{i}" for i in range(7)], "the others left out")
    (message,) = caplog.messages
    assert message.startswith("7 records have more than one photo") and message.count("(not ") == 5
    assert message.endswith(" …")


def _fused_queries(tmp_path, ids: list[str], photos: list[str], caplog) -> list[tuple[str, str | None]]:
    """(id, photo name) of each query ``classify`` makes of barcodes ``ids`` and (empty) ``photos`` in
    ``tmp_path/photos``, its warnings in ``caplog``."""
    from clibd_cli.classification.queries import iter_queries

    fasta = tmp_path / "q.fasta"
    fasta.write_text("".join(f">{key}\n" + "ACGT" * 150 + "\n" for key in ids))
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in photos:
        (folder / name).write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="clibd"):
        return [(q.id, q.image and q.image.name) for q in iter_queries([str(fasta)], [str(folder)])]


def test_classify_fuses_a_records_first_photo_and_names_the_second(tmp_path, caplog):
    """A barcode ``B1`` with photos ``B1.jpg`` and ``B1.png``: the first is fused with it, the second is
    classified on its own, and a warning says so (it said nothing)."""
    folder = tmp_path / "photos"
    assert _fused_queries(tmp_path, ["B1", "B2"], ["B1.jpg", "B1.png", "B2.jpg"], caplog) == \
        [("B1", "B1.jpg"), ("B2", "B2.jpg"), (str(folder / "B1.png"), "B1.png")]
    assert caplog.messages == ["1 record has more than one photo, the first in path order used and the "
                               f"others classified on their own: B1: {folder / 'B1.jpg'} (not {folder / 'B1.png'})"]


def test_a_photo_named_after_a_record_in_another_case_only_is_named_not_paired(tmp_path, caplog):
    """``abc.jpg`` and record ``ABC`` did not pair, with no word (ids are case-sensitive: on Linux
    ``abc.jpg`` and ``ABC.jpg`` may both exist): one warning counts such photos and shows one."""
    from pathlib import Path

    from clibd_cli.io.images import PhotoIds

    paths = [Path(f"p/{name}") for name in ("abc.jpg", "Def.1024px.jpg", "x.jpg", "ghi.jpg", "JKL.jpg")]
    photos = PhotoIds(paths)
    # DEF and def: two records ignoring case; ghi.jpg: ghi is a record too (Ghi not)
    assert [photos.match(key) for key in ("ABC", "def", "DEF", "x", "Ghi", "ghi", "jkl", "other")] == \
        [None, None, None, paths[2], None, paths[3], None, None]
    assert photos.case_slips() == [(paths[0], "ABC"), (paths[4], "jkl")]
    folder = tmp_path / "photos"
    assert _fused_queries(tmp_path, ["ABC", "B2"], ["abc.jpg", "b2.png", "B2.jpg"], caplog) == \
        [("ABC", None), ("B2", "B2.jpg"), (str(folder / "abc.jpg"), "abc.jpg"), (str(folder / "b2.png"), "b2.png")]
    assert caplog.messages == ["2 photos are named after a record id in another case only, and not paired with "
                               f"it, e.g. {folder / 'abc.jpg'} ~ ABC: ids are matched case-sensitively; rename "
                               "the photo"]
