"""What the page accepts as an upload: its size and pixel caps, read from the file's header before
anything is decoded, and each refusal as one line in the page (never the server's temporary path).

    check_upload(path, settings)          # an image over max_upload_mb or max_pixels: refused
    text = read_text_upload(path, name)   # not UTF-8 text: refused
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image, UnidentifiedImageError

from reverie.errors import ReverieError
from reverie.web.jobs import refusal
from reverie.web.limits import DATA_URL_REFUSED, is_data_url
from reverie.web.settings import WebSettings


def check_upload(path: str, settings: WebSettings) -> None:
    """Refuse an upload over the size cap, or over the pixel cap, from its header (nothing decoded).

    A file that is not an image passes here: the API's loader says so in its own words.
    """
    size = os.path.getsize(path)
    if size > settings.max_upload_bytes:
        raise refusal(
            f"the upload is {size / 2**20:.1f} MB, over this page's cap of {settings.max_upload_mb:g} MB; "
            "send a smaller file"
        )
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        raise refusal(pixels_refused(settings)) from None
    except (UnidentifiedImageError, OSError):
        return
    if width * height > settings.max_pixels:
        raise refusal(pixels_refused(settings, width, height))


def pixels_refused(settings: WebSettings, width: int | None = None, height: int | None = None) -> str:
    """The page's refusal of an image over its pixel cap (its size where it is known)."""
    size = f"{width}x{height} = {width * height / 1e6:.3g} megapixels" if width and height else "too large"
    cap = f"{settings.max_pixels / 1e6:.3g} megapixels"
    return f"the image is {size}, over this page's cap of {cap}; shrink it first"


def refuse_non_images(component: gr.Image, settings: WebSettings) -> gr.Image:
    """`component` with an upload that is no image at all, or one over Pillow's decompression-bomb
    limit, refused in one line in the page (gr.Image's own error names the server's temporary
    paths), and an image sent inline as a data: URL refused before Gradio decodes it (the request
    guard refuses those already; this holds wherever the page is served). Wrapped on the instance:
    a gr.Image subclass would make Gradio write a .pyi stub next to this file."""
    preprocess = component.preprocess

    def checked(payload: Any) -> Any:
        if is_data_url(str(getattr(payload, "url", None) or "")):
            raise refusal(DATA_URL_REFUSED)
        try:
            return preprocess(payload)
        except Image.DecompressionBombError:
            raise refusal(pixels_refused(settings)) from None
        except (UnidentifiedImageError, OSError):
            name = getattr(payload, "orig_name", None) or "the upload"
            raise refusal(f"{name} is not an image (PNG, JPEG, WebP, ...)") from None

    component.preprocess = checked  # type: ignore[method-assign]
    return component


def check_size(path: str, cap: int, what: str = "the upload") -> None:
    """Refuse a file over `cap` bytes in one line."""
    size = os.path.getsize(path)
    if size > cap:
        raise refusal(
            f"{what} is {size / 2**20:.2f} MB, over this page's cap of {cap / 2**20:.3g} MB; "
            "send a smaller file"
        )


@contextmanager
def named_as(path: str | Path, shown: str) -> Iterator[None]:
    """A ReverieError that names the server's `path` (an upload's temporary file) names `shown`."""
    try:
        yield
    except ReverieError as exc:
        raise ReverieError(str(exc).replace(str(path), shown)) from None


def read_text_upload(path: str, name: str) -> str:
    """The uploaded text (UTF-8), refused in one line when it is not text."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise refusal(f"{name} is not UTF-8 text; upload a plain text file") from None
    if "\x00" in text or not text.strip():
        raise refusal(f"{name} is not a text file with something in it; upload a plain text file")
    return text
