"""Hostile images, GIFs and videos: small real files made with Pillow and PyAV, then cut, flipped, given
sizes, frame counts and frame rates that lie, odd modes and chunks."""

from __future__ import annotations

import io
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from .strategies import mutated_bytes, png_chunk

# the modes each format writes (Pillow converts nothing on save)
FORMATS = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16", "I;16B"],
    "JPEG": ["L", "RGB", "CMYK", "YCbCr"],
    "GIF": ["L", "P", "1"],
    "BMP": ["1", "L", "P", "RGB", "RGBA"],
    "TIFF": ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F", "I;16", "I;16B", "LAB"],
    "WEBP": ["RGB", "RGBA"],
    "PPM": ["1", "L", "RGB", "I", "F"],
    "TGA": ["L", "LA", "P", "RGB", "RGBA"],
    "ICO": ["RGBA", "RGB"],
    "PCX": ["1", "L", "P", "RGB"],
    "SGI": ["L", "RGB", "RGBA"],
    "IM": ["1", "L", "P", "RGB", "RGBA", "I", "F", "LA", "CMYK", "YCbCr"],
}
SIZES = st.tuples(st.integers(1, 24), st.integers(1, 24))
HUGE_SIDES = st.sampled_from([0, 1, 2, 7_071, 65_535, 2**24, 2**31 - 1, 2**32 - 1])
ORIENTATIONS = st.one_of(st.integers(0, 9), st.sampled_from([255, 65_535]))  # a SHORT in the file


def _pixels(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "F":
        values = rng.choice([0.0, 0.5, 1.0, -3.0, 1e30, float("nan"), float("inf")], size=size[::-1])
        return Image.fromarray(values.astype(np.float32), mode="F")
    if mode in ("I", "I;16", "I;16B"):
        top = 2**31 - 1 if mode == "I" else 65_535
        image = Image.fromarray(
            rng.integers(-5 if mode == "I" else 0, top, size=size[::-1]).astype(np.int32), "I"
        )
        return image if mode == "I" else image.convert(mode) if mode == "I;16" else _i16b(image)
    noise = Image.frombytes(
        "RGB", size, rng.integers(0, 256, size=size[0] * size[1] * 3, dtype=np.uint8).tobytes()
    )
    return noise.convert(mode)


def _i16b(image: Image.Image) -> Image.Image:
    values = np.clip(np.asarray(image), 0, 65_535).astype(">u2")
    return Image.frombuffer("I;16B", image.size, values.tobytes(), "raw", "I;16B", 0, 1)


@st.composite
def saved_images(draw: st.DrawFn) -> tuple[bytes, str]:
    """(the bytes, the format) of a small image of a mode its format writes, maybe with EXIF rotation."""
    image_format = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[image_format]))
    image = _pixels(mode, draw(SIZES), draw(st.integers(0, 2**16)))
    options: dict[str, object] = {}
    if image_format in ("PNG", "JPEG", "WEBP", "TIFF") and draw(st.booleans()):
        exif = Image.Exif()
        exif[0x0112] = draw(ORIENTATIONS)  # Orientation: 1-8 are real, the rest lie
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=image_format, **options)
    except (OSError, ValueError, KeyError, struct.error):  # this Pillow does not write that mode there
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        image_format = "PNG"
    return buffer.getvalue(), image_format


def _png_with(data: bytes, kind: bytes, body: bytes, before_data: bool) -> bytes:
    """`data` (a PNG) with one more chunk, before the first IDAT or before IEND."""
    at = data.find(b"IDAT" if before_data else b"IEND") - 4
    return data[:at] + png_chunk(kind, body) + data[at:]


def _declared_size(data: bytes, image_format: str, width: int, height: int) -> bytes:
    """`data` claiming another width and height in its header (the pixel data stays as it was)."""
    out = bytearray(data)
    if image_format == "PNG":
        body = bytearray(out[16:29])
        body[0:8] = struct.pack(">II", width % 2**32, height % 2**32)
        out[8:33] = png_chunk(b"IHDR", bytes(body))
    elif image_format == "BMP" and len(out) >= 26:
        out[18:26] = struct.pack("<ii", width % 2**31, height % 2**31)
    elif image_format == "GIF" and len(out) >= 10:
        out[6:10] = struct.pack("<HH", width % 2**16, height % 2**16)
    elif image_format == "JPEG":
        at = out.find(b"\xff\xc0")
        if at >= 0:
            out[at + 5 : at + 9] = struct.pack(">HH", height % 2**16, width % 2**16)
    elif image_format == "PPM":
        return data.replace(data.split(b"\n")[1], f"{width} {height}".encode(), 1)
    return bytes(out)


@st.composite
def hostile_images(draw: st.DrawFn) -> bytes:
    data, image_format = draw(saved_images())
    how = draw(st.sampled_from(["bytes", "size", "chunk", "as is"]))
    if how == "bytes":
        return draw(mutated_bytes(data))
    if how == "size":
        return _declared_size(data, image_format, draw(HUGE_SIDES), draw(HUGE_SIDES))
    if how == "chunk" and image_format == "PNG":
        kind = draw(
            st.sampled_from([b"zTXt", b"iTXt", b"tEXt", b"iCCP", b"eXIf", b"PLTE", b"tRNS", b"acTL", b"fcTL"])
        )
        body = draw(
            st.one_of(st.binary(max_size=64), st.just(b"k\x00\x00" + _bomb()), st.just(b"\xff" * 70_000))
        )
        return _png_with(data, kind, body, draw(st.booleans()))
    return data


def _bomb() -> bytes:
    import zlib

    return zlib.compress(b"\x00" * (8 << 20), 9)  # 8 MB of zeros in about 8 KB


# ---- GIF ----


def _gif_without_frames(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", width % 2**16, height % 2**16, 0, 0, 0) + b";"


@st.composite
def hostile_gifs(draw: st.DrawFn) -> bytes:
    """An animated GIF (one to five frames, delays from 0 to 655 s), with no frames, or cut and flipped."""
    count = draw(st.integers(0, 5))
    size = draw(SIZES)
    if count == 0:
        return _gif_without_frames(*size)
    frames = [_pixels("RGB", size, seed).convert("P") for seed in range(count)]
    durations = draw(st.lists(st.sampled_from([0, 10, 20, 100, 655_350]), min_size=count, max_size=count))
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
    data = buffer.getvalue()
    how = draw(st.sampled_from(["bytes", "size", "as is"]))
    if how == "bytes":
        return draw(mutated_bytes(data))
    if how == "size":
        return _declared_size(data, "GIF", draw(HUGE_SIDES), draw(HUGE_SIDES))
    return data


# ---- mp4 and other containers ----

CONTAINERS = ("mp4", "mkv", "mov")
RATES = (Fraction(1, 1000), Fraction(1), Fraction(30000, 1001), Fraction(240))


def write_clips(folder: Path) -> dict[str, bytes]:
    """Small real clips (4 frames of 16x16 noise), one per container and frame rate: their bytes."""
    import av

    clips = {}
    for container_name in CONTAINERS:
        for index, rate in enumerate(RATES):
            path = folder / f"clip{index}.{container_name}"
            with av.open(str(path), "w") as container:
                stream = container.add_stream("mpeg4", rate=rate)
                stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
                for i in range(4):
                    array = np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8)
                    frame = av.VideoFrame.from_ndarray(array, format="rgb24")
                    frame.pts = i
                    container.mux(stream.encode(frame))
                container.mux(stream.encode())
            clips[f"{index}.{container_name}"] = path.read_bytes()
    return clips


def atoms(
    data: bytes, start: int = 0, end: int | None = None, depth: int = 0
) -> list[tuple[bytes, int, int]]:
    """The boxes of an ISO media file (mp4, mov): (type, offset of the body, end), containers walked."""
    end = len(data) if end is None else end
    found = []
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        if size < 8 or start + size > end:
            break
        found.append((kind, start + 8, start + size))
        if kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf") and depth < 8:
            found += atoms(data, start + 8, start + size, depth + 1)
        start += size
    return found


LIES = st.one_of(
    st.sampled_from([0, 1, 2, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000, 100_000]), st.integers(0, 2**32 - 1)
)


@st.composite
def hostile_videos(draw: st.DrawFn, clips: dict[str, bytes]) -> tuple[bytes, str]:
    """(bytes, suffix): a clip cut or flipped, or an mp4/mov box (sizes, time scales, frame counts and
    durations, sample tables) holding a number that lies."""
    name = draw(st.sampled_from(sorted(clips)))
    data = clips[name]
    suffix = "." + name.split(".")[1]
    boxes = atoms(data) if suffix in (".mp4", ".mov") else []
    if boxes and draw(st.booleans()):
        _, body, box_end = draw(st.sampled_from(boxes))
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(body, max(body, box_end - 4)))
            out[at : at + 4] = struct.pack(">I", draw(LIES))
        return bytes(out[: len(data)]), suffix
    return draw(mutated_bytes(data)), suffix
