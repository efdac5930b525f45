"""Zoom animations: dream, zoom into the center, dream again on that frame, and so on.

Each frame is the dream of the previous frame with its center enlarged by `zoom` (0.05 crops 5%
and rescales to full size), as google/deepdream's endless-zoom video. The model is loaded once for
all the frames (or given as a Dreamer). The frames are returned as PIL images; `save_zoom` writes
them as numbered PNGs and one looping animated GIF (`reverie dream IN OUT --zoom-frames N`), each
written atomically.

    from reverie.deepdream.zoom import dream_zoom, save_zoom
    frames = dream_zoom("photo.jpg", frames=20, model="efficientnet_lite0")
    save_zoom(frames, "photo-zoom.png")    # photo-zoom-0001.png ... and photo-zoom.gif
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from reverie.deepdream.backbone import Backbone
from reverie.deepdream.dreamer import Dreamer, plan_for, resolve_for
from reverie.deepdream.images import ImageSource, check_output, load_image, resize, save_image
from reverie.deepdream.octaves import run_octaves
from reverie.options import check_value

FRAME_MILLISECONDS = 100


def zoom_center(image01: torch.Tensor, zoom: float) -> torch.Tensor:
    """Crop the central (1 - zoom) of a (3, H, W) image and scale it back to (H, W)."""
    height, width = image01.shape[-2:]
    crop_h, crop_w = max(1, round(height * (1 - zoom))), max(1, round(width * (1 - zoom)))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    crop = image01[None, :, top : top + crop_h, left : left + crop_w]
    return resize(crop, (height, width))[0].clamp(0.0, 1.0)


def dream_zoom(
    image: ImageSource,
    frames: int,
    zoom: float = 0.05,
    model: str | Backbone | Dreamer | None = None,
    preset: str | None = None,
    **options: Any,
) -> list[Image.Image]:
    """`frames` dreamed frames, each seeded by the zoomed previous one (the first dreams `image`).

    `model` is a name or a Backbone (loaded once) or a Dreamer; `options` are DreamOptions fields."""
    check_value("--zoom-frames", frames, kind=int, low=1)
    check_value("--zoom", zoom, kind=float, low=0, high=1, low_open=True, high_open=True)
    opts = resolve_for(model, preset, options)
    current = load_image(image, opts.max_size)
    plan = plan_for(model, opts)
    results: list[Image.Image] = []
    for _ in tqdm(range(frames), desc="zoom frames", file=sys.stderr, disable=not opts.progress):
        frame = run_octaves(plan, current).image
        results.append(frame)
        current = zoom_center(load_image(frame), zoom)
    return results


def frame_paths(output: str | Path, count: int) -> tuple[Path, list[Path]]:
    """Where `save_zoom` writes: OUTPUT's name with .gif, and OUTPUT-0001.png ... beside it."""
    output = Path(output)
    return output.with_suffix(".gif"), [
        output.with_name(f"{output.stem}-{i:04d}.png") for i in range(1, count + 1)
    ]


def save_zoom(
    frames: list[Image.Image], output: str | Path, input_path: str | Path | None = None
) -> list[Path]:
    """Write the numbered PNG frames and the animated GIF, each atomically; return their paths (GIF
    first)."""
    gif, pngs = frame_paths(output, len(frames))
    for path in [gif, *pngs]:
        check_output(path, input_path)
    for frame, path in zip(frames, pngs):
        save_image(frame, path, input_path)
    options = {"save_all": True, "append_images": frames[1:], "duration": FRAME_MILLISECONDS, "loop": 0}
    save_image(frames[0], gif, input_path, **options)
    return [gif, *pngs]
