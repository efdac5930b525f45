"""Images in and out of DeepDream: load, resize, save, with every bad file refused in one line.

`load_image` turns a path, a PIL image or a numpy array into a float RGB tensor (3, H, W) in
[0, 1]; 16-bit, 32-bit and float images are scaled from their real range (`to_eight_bit`), not
clipped. `save_image` writes a PIL image, the format taken from the file extension, atomically (a
kill never leaves half a file under the final name). Both refuse bad input with a ReverieError: a
missing or unreadable file, something that is not an image, a truncated file, an image over the
pixel cap (a decompression-bomb guard), an output folder that does not exist, an output path that
is the input itself, or a write that fails.

    python -m reverie.deepdream.images photo.jpg      # print the size the loader sees
"""

from __future__ import annotations

import os
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from reverie.checkpoint import atomic_path
from reverie.errors import ReverieError, first_line, require

ImageSource = str | os.PathLike | Image.Image | np.ndarray

# Largest image decoded at full size: 50 megapixels (e.g. 8660 x 5773), about 600 MB as float RGB.
MAX_PIXELS = 50_000_000
# With --max-size the image is shrunk while decoding, so larger files are allowed, up to Pillow's
# own decompression-bomb limit (about 179 megapixels).
HARD_MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else 2 * 89_478_485
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def load_image(source: ImageSource, max_size: int | None = None) -> torch.Tensor:
    """An RGB float tensor (3, H, W) in [0, 1] from a path, a PIL image or a numpy array.

    EXIF rotation is applied, alpha dropped, grayscale expanded, 16-bit and float images scaled to
    8 bits (`to_eight_bit`). `max_size` shrinks the image (high-quality Lanczos) so that its longest
    side is at most that many pixels.
    """
    if isinstance(source, np.ndarray):
        pil = _array_to_pil(source)
    elif isinstance(source, Image.Image):
        pil = source
    elif isinstance(source, (str, os.PathLike)):
        pil = _open_file(Path(source), max_size)
    else:
        raise ReverieError(
            f"cannot read an image from a {type(source).__name__}; give a path, a PIL image or an array"
        )
    name = str(source) if isinstance(source, (str, os.PathLike)) else "the image"
    pil = to_eight_bit(pil, name).convert("RGB")
    if max_size is not None and max(pil.size) > max_size:
        scale = max_size / max(pil.size)
        size = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
        pil = pil.resize(size, Image.Resampling.LANCZOS)
    array = np.array(
        pil, dtype=np.float32
    )  # a fresh writable copy, scaled in place: one float image in memory
    array /= 255.0
    return torch.from_numpy(array).permute(2, 0, 1)


def _open_file(path: Path, max_size: int | None) -> Image.Image:
    require(path.exists(), f"image file {path} does not exist")
    require(path.is_file(), f"image {path} is not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            pil = Image.open(path)
            pixels = pil.width * pil.height
            cap = MAX_PIXELS if max_size is None else HARD_MAX_PIXELS
            if pixels > cap:
                hint = (
                    "use --max-size PIXELS to shrink it while loading"
                    if max_size is None
                    else "shrink it first"
                )
                raise ReverieError(
                    f"{path} is {pil.width}x{pil.height} = {pixels / 1e6:.0f} megapixels, over the cap of "
                    f"{cap / 1e6:.0f}; {hint}"
                )
            if max_size is not None:
                pil.draft("RGB", (max_size, max_size))  # JPEG: decode at a reduced scale directly
            pil.load()
            return ImageOps.exif_transpose(pil)
    except ReverieError:
        raise
    except UnidentifiedImageError:
        raise ReverieError(f"{path} is not an image Pillow can read (PNG, JPEG, ...)") from None
    except Image.DecompressionBombError:
        raise ReverieError(f"{path} exceeds Pillow's decompression-bomb limit; shrink it first") from None
    except (OSError, ValueError, SyntaxError, IndexError, EOFError, struct.error) as exc:
        # truncated or corrupt data: Pillow's plugins say so in all these ways
        raise ReverieError(
            f"{path} is truncated or corrupt ({first_line(exc)}); re-export or re-download it"
        ) from None


def to_eight_bit(pil: Image.Image, name: str = "the image") -> Image.Image:
    """A 16-bit, 32-bit integer or float image as 8-bit gray, its range scaled to 0..255 (Pillow's
    convert("RGB") clips them instead: nearly white). Other images are returned as they are.

    - 16-bit (modes I;16*): 0..65535 is 0..255 (divided by 257), as image viewers show them.
    - 32-bit integers (mode I): the same when the values fit 0..65535 (how 16-bit files often
      open), else the image's own min..max.
    - float (mode F): 0..1 is 0..255 when every value lies there, else the image's own min..max;
      NaN or infinite values are refused.
    """
    if pil.mode not in (*SIXTEEN_BIT_MODES, "I", "F"):
        return pil
    values = np.array(pil, dtype=np.float32)  # a writable copy, scaled in place
    if pil.mode == "F":
        require(bool(np.isfinite(values).all()), f"{name} holds NaN or infinite values; re-export it")
    low, high = float(values.min()), float(values.max())
    if pil.mode in SIXTEEN_BIT_MODES or (pil.mode == "I" and low >= 0 and high <= 65535):
        low, high = 0.0, 65535.0
    elif pil.mode == "F" and low >= 0 and high <= 1:
        low, high = 0.0, 1.0
    values -= low
    values *= 255.0 / (high - low) if high > low else 0.0
    return Image.fromarray((values + 0.5).astype(np.uint8), mode="L")


def _array_to_pil(array: np.ndarray) -> Image.Image:
    """uint8 (0..255) or float (0..1) arrays shaped (H, W), (H, W, 3) or (H, W, 4)."""
    require(
        array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4)),
        f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got shape {tuple(array.shape)}",
    )
    require(array.size > 0, "the image array is empty")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8:
        require(
            np.issubdtype(array.dtype, np.floating),
            f"an image array must be uint8 or float, got {array.dtype}",
        )
        require(bool(np.isfinite(array).all()), "the image array holds NaN or infinite values")
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[array.ndim if array.ndim == 2 else array.shape[2]]
    return Image.fromarray(np.ascontiguousarray(array), mode=mode)


def quantize(image: torch.Tensor) -> torch.Tensor:
    """A (3, H, W) tensor in [0, 1] (clipped) as 8-bit levels, on its own device."""
    return image.detach().float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)


def to_pil(image: torch.Tensor) -> Image.Image:
    """A (3, H, W) tensor in [0, 1] (clipped), or its `quantize`d levels, as an 8-bit RGB PIL image."""
    levels = image if image.dtype == torch.uint8 else quantize(image)
    return Image.fromarray(levels.permute(1, 2, 0).cpu().numpy(), mode="RGB")


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a (N, C, H, W) batch to (height, width).

    Corners are aligned, as scipy.ndimage.zoom(order=1) does in the book, so a resize is linear
    and resizing to the same size returns the input unchanged.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def default_output(input_path: str | os.PathLike, suffix: str = "dream") -> Path:
    """INPUT-dream.png next to the input (photo.jpg -> photo-dream.png)."""
    path = Path(input_path)
    return path.with_name(f"{path.stem}-{suffix}.png")


def check_output(output: str | os.PathLike, input_path: str | os.PathLike | None = None) -> Path:
    """Refuse an output whose folder is missing, whose format is unknown, or that is the input file."""
    path = Path(output)
    require(
        path.parent.is_dir(), f"output folder {path.parent} does not exist; create it or choose another path"
    )
    require(not path.is_dir(), f"output {path} is a folder; give a file name such as {path / 'dream.png'}")
    extension = path.suffix.lower()
    formats = Image.registered_extensions()
    require(
        extension in formats, f"unknown image format {extension or '(none)'!r} for {path}; use .png or .jpg"
    )
    if input_path is not None and path.exists():
        require(
            not path.samefile(input_path), f"output {path} is the input image; choose another output path"
        )
    return path


def save_image(
    image: Image.Image,
    output: str | os.PathLike,
    input_path: str | os.PathLike | None = None,
    **save_options: object,
) -> Path:
    """Write `image` to `output` (format from the extension; `save_options` go to Pillow, e.g. an
    animated GIF's frames), never over `input_path`. The file is written beside `output` and renamed
    when complete, so `output` is either the old file or the whole new one; a failed write (a full
    disk) is a ReverieError."""
    path = check_output(output, input_path)
    image_format = Image.registered_extensions()[path.suffix.lower()]
    if image_format == "JPEG":
        save_options = {"quality": 95, **save_options}
    try:
        with atomic_path(path, suffix=path.suffix) as partial:
            image.save(partial, format=image_format, **save_options)
    except OSError as exc:
        raise ReverieError(
            f"cannot write {path} ({first_line(exc)}); check the free space and permissions there"
        ) from None
    return path


if __name__ == "__main__":
    tensor = load_image(sys.argv[1])
    print(f"{sys.argv[1]}: {tensor.shape[2]}x{tensor.shape[1]} RGB")
