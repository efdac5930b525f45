"""Image loading and saving: sources, guards against bad files, output rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reverie.deepdream import images
from reverie.deepdream.images import check_output, default_output, load_image, resize, save_image, to_pil
from reverie.errors import ReverieError

from .conftest import smooth_image


def test_load_from_path_pil_and_array_agree(photo):
    array = np.asarray(Image.open(photo))
    from_path = load_image(photo)
    assert from_path.shape == (3, 56, 72) and from_path.dtype == torch.float32
    assert torch.equal(from_path, load_image(Image.open(photo)))
    assert torch.equal(from_path, load_image(array))
    assert torch.allclose(from_path, load_image(array.astype(np.float32) / 255.0), atol=1e-6)
    assert 0.0 <= from_path.min() and from_path.max() <= 1.0


def test_grayscale_and_alpha_become_rgb():
    gray = load_image(np.full((5, 4), 128, dtype=np.uint8))
    assert gray.shape == (3, 5, 4) and torch.allclose(gray, torch.full_like(gray, 128 / 255))
    rgba = load_image(np.zeros((5, 4, 4), dtype=np.uint8))
    assert rgba.shape == (3, 5, 4)
    with pytest.raises(ReverieError, match="must be"):
        load_image(np.zeros((2, 3, 5, 4)))
    with pytest.raises(ReverieError, match="NaN"):
        load_image(np.full((4, 4, 3), np.nan))


def test_max_size_shrinks_the_longest_side(photo):
    assert load_image(photo, max_size=36).shape == (3, 28, 36)
    assert load_image(photo, max_size=500).shape == (3, 56, 72)  # never enlarged


def test_to_pil_round_trips(photo):
    tensor = load_image(photo)
    assert np.array_equal(np.asarray(to_pil(tensor)), np.asarray(Image.open(photo)))
    assert np.asarray(to_pil(tensor * 3 - 1)).max() == 255  # clipped, not wrapped


def test_resize_is_linear_and_identity_at_same_size():
    x = torch.randn(1, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    assert resize(x, (9, 11)) is x
    y = resize(x, (13, 7))
    assert torch.allclose(resize(2 * x + 1, (13, 7)), 2 * y + 1, atol=1e-5)
    assert torch.allclose(y[..., 0, 0], x[..., 0, 0]) and torch.allclose(
        y[..., -1, -1], x[..., -1, -1]
    )  # corners kept


def test_missing_not_an_image_and_truncated_are_refused(tmp_path, photo):
    with pytest.raises(ReverieError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ReverieError, match="not a file"):
        load_image(tmp_path)
    text = tmp_path / "notes.png"
    text.write_text("hello, not pixels")
    with pytest.raises(ReverieError, match="not an image"):
        load_image(text)
    jpeg = tmp_path / "cut.jpg"
    Image.fromarray(smooth_image(64, 64)).save(jpeg, quality=90)
    data = jpeg.read_bytes()
    jpeg.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReverieError, match="truncated or corrupt"):
        load_image(jpeg)


def test_pixel_cap_says_max_size(photo, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    with pytest.raises(ReverieError, match="over the cap.*--max-size"):
        load_image(photo)
    assert load_image(photo, max_size=30).shape == (3, 23, 30)  # shrinking while loading is allowed


def test_output_rules(tmp_path, photo):
    assert default_output(photo) == photo.with_name("photo-dream.png")
    with pytest.raises(ReverieError, match="folder .* does not exist"):
        check_output(tmp_path / "missing" / "out.png")
    with pytest.raises(ReverieError, match="is the input image"):
        check_output(photo, photo)
    with pytest.raises(ReverieError, match="unknown image format"):
        check_output(tmp_path / "out.xyz")
    with pytest.raises(ReverieError, match="is a folder"):
        check_output(tmp_path)
    before = photo.read_bytes()
    with pytest.raises(ReverieError):
        save_image(Image.new("RGB", (4, 4)), photo, photo)
    assert photo.read_bytes() == before


def test_format_follows_the_extension(tmp_path):
    image = Image.fromarray(smooth_image(16, 16))
    save_image(image, tmp_path / "a.jpg")
    save_image(image, tmp_path / "a.png")
    assert Image.open(tmp_path / "a.jpg").format == "JPEG"
    assert Image.open(tmp_path / "a.png").format == "PNG"


def test_sixteen_bit_and_float_images_keep_their_brightness(tmp_path):
    """16-bit, 32-bit integer and float files are scaled from their own range, not clipped to white."""
    ramp = np.linspace(0.0, 1.0, 48 * 40, dtype=np.float32).reshape(40, 48)  # dark to light
    files = {
        "16-bit.png": Image.fromarray((ramp * 65535).round().astype(np.uint16)),  # opens as I;16
        "16-bit.tif": Image.fromarray((ramp * 65535).round().astype(np.uint16)),
        "32-bit.tif": Image.fromarray((ramp * 65535).round().astype(np.int32)),  # mode I, 16-bit values
        "float.tif": Image.fromarray(ramp),  # mode F in [0, 1]
        "float-range.tif": Image.fromarray(ramp * 4000 - 1000),  # mode F, its own range
    }
    for name, image in files.items():
        image.save(tmp_path / name)
        loaded = load_image(tmp_path / name)
        assert loaded.shape == (3, 40, 48), name
        assert torch.allclose(loaded[0], torch.from_numpy(ramp), atol=1 / 255), name  # the ramp, 8-bit
        assert torch.equal(loaded[0], loaded[2]), name  # gray
    dim = np.full((8, 8), 1000, dtype=np.uint16)  # a dark 16-bit image stays dark
    Image.fromarray(dim).save(tmp_path / "dim.png")
    assert load_image(tmp_path / "dim.png").max() == pytest.approx(round(1000 / 257) / 255)
    nan = np.zeros((8, 8), dtype=np.float32)
    nan[2, 3] = np.nan
    Image.fromarray(nan).save(tmp_path / "nan.tif")
    with pytest.raises(ReverieError, match=r"nan.tif holds NaN or infinite values") as error:
        load_image(tmp_path / "nan.tif")
    assert "\n" not in str(error.value)


def test_decompression_bombs_are_refused_in_one_line(photo, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses over twice this: 2000 pixels
    with pytest.raises(ReverieError, match="decompression-bomb limit; shrink it first") as error:
        load_image(photo)
    assert "\n" not in str(error.value)


def test_a_failed_write_keeps_the_old_file_and_says_so_in_one_line(tmp_path, monkeypatch):
    output = tmp_path / "dream.png"
    Image.new("RGB", (4, 4), (10, 20, 30)).save(output)
    before = output.read_bytes()

    def full_disk(image, path, *args, **kwargs):
        Path(path).write_bytes(b"\x89PNG half an image")  # a write that stops half way
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(
        ReverieError, match=r"no space left in .*: writing dream.png stopped after 18 bytes"
    ) as e:
        save_image(Image.new("RGB", (4, 4)), output)
    assert "\n" not in str(e.value)
    assert output.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dream.png"]  # no partial file left either
