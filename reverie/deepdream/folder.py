"""DeepDream every image of a folder or glob (e.g. a video's frames) into an output folder, keeping
their names; under torchrun the images are split across the processes; images already in the
output folder are skipped, so an interrupted batch resumes where it stopped.

    reverie dream frames/ --out dreamed/ --model efficientnet_lite0
    reverie dream "frames/*.jpg" --out dreamed/ --octaves 3
    torchrun --standalone --nproc_per_node 4 -m reverie dream frames/ --out dreamed/

    from reverie.deepdream.folder import dream_folder
    dream_folder("frames", "dreamed", model="efficientnet_lite0", iterations=10)
    dream_folder("frames", "dreamed", model=reverie.load_dreamer("googlenet"))   # a dreamer you hold

The model is loaded once for the whole folder (or given as a Dreamer, and not loaded at all).

Rank r of W takes images r, r+W, r+2W, ... of the sorted list (whatever is already done), so the
split needs no communication between the processes, and each image is dreamed with the same seed
whatever the number of processes. Each output is written to a hidden temporary file in the output
folder and renamed when complete: a file present under its final name is a finished image.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from tqdm import tqdm

from reverie import distributed
from reverie.deepdream.backbone import Backbone
from reverie.deepdream.dreamer import Dreamer, plan_for, resolve_for
from reverie.deepdream.images import check_output, load_image, save_image
from reverie.deepdream.octaves import run_octaves
from reverie.distributed import Ranks
from reverie.errors import ReverieError, require

SourceKind = Literal["folder", "file", "pattern", "missing"]


@dataclass
class FolderResult:
    """What this process did: the images it wrote and those it found already done."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def classify(source: str | os.PathLike) -> tuple[SourceKind, Path]:
    """What `source` names (`~` expanded): a folder, a file, a glob pattern (that is not a file), or
    nothing; and its path."""
    text = os.path.expanduser(os.fspath(source))
    path = Path(text)
    if path.is_dir():
        return "folder", path
    if path.is_file():
        return "file", path
    return ("pattern" if glob.has_magic(text) else "missing"), path


def image_inputs(source: str | os.PathLike) -> list[Path]:
    """The images `source` names, sorted: a folder's image files (not its subfolders; hidden
    files skipped), the image files a glob pattern matches, or one image file."""
    kind, path = classify(source)
    if kind == "file":
        return [path]
    if kind == "folder":
        candidates = [entry for entry in path.iterdir() if not entry.name.startswith(".")]
        where = f"folder {path}"
    elif kind == "pattern":
        candidates = [Path(match) for match in glob.glob(str(path))]
        where = f"pattern {os.fspath(source)!r}"
    else:
        raise ReverieError(f"{source} is not an image, a folder or a glob pattern that matches anything")
    known = Image.registered_extensions()
    found = sorted(entry for entry in candidates if entry.is_file() and entry.suffix.lower() in known)
    require(bool(found), f"{where} holds no image files (PNG, JPEG, ...)")
    return found


def output_for(image: Path, out_dir: Path) -> Path:
    """Where the dream of `image` goes: the same file name in `out_dir`."""
    return out_dir / image.name


def dream_folder(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    model: str | Backbone | Dreamer | None = None,
    preset: str | None = None,
    *,
    progress: bool = True,
    on_written: Callable[[Path], None] | None = None,
    where: Ranks | None = None,
    **options: Any,
) -> FolderResult:
    """Dream every image of `source` (a folder, a glob pattern or one image) into `out_dir` under its
    own name, skipping those already there. `model` is a name or a Backbone (loaded once, if there
    is anything to do) or a Dreamer; `options` are DreamOptions fields; `on_written(path)` is called
    after each image is saved. Under torchrun (or with `where`), this process does only its share of
    the images."""
    where = where or distributed.ranks()
    out = Path(out_dir).expanduser()
    images = image_inputs(source)
    require(not out.is_file(), f"--out {out} is a file; give a folder for the dreamed images")
    names: dict[str, Path] = {}
    for image in images:
        other = names.setdefault(image.name, image)
        require(
            other == image,
            f"{other} and {image} have the same name, and outputs keep the names; dream them into "
            "separate --out folders",
        )
    if out.is_dir():
        require(
            not any(image.parent.resolve() == out.resolve() for image in images),
            f"--out {out} holds the input images themselves; choose another folder for the dreams",
        )
    options = {**options, "progress": False}  # one bar for the folder, none per octave
    opts = resolve_for(model, preset, options)
    mine = images[where.rank :: where.world_size]
    result = FolderResult()
    todo = []
    for image in mine:
        (result.skipped if output_for(image, out).exists() else todo).append(image)
    if not todo:
        return result
    out.mkdir(parents=True, exist_ok=True)
    for image in todo:
        check_output(output_for(image, out), image)  # an unwritable format is refused before any dream
    if not isinstance(model, Dreamer):
        distributed.device_for(opts.device, where)  # with CUDA: makes GPU number LOCAL_RANK the current one
    plan = plan_for(model, opts)
    label = f"dreaming (rank {where.rank})" if where.distributed else "dreaming"
    for image in tqdm(todo, desc=label, unit="image", file=sys.stderr, disable=not progress):
        dreamed = run_octaves(plan, load_image(image, opts.max_size))
        final = save_image(dreamed.image, output_for(image, out), image)  # atomically
        result.written.append(final)
        if on_written is not None:
            on_written(final)
    return result


__all__ = ["FolderResult", "classify", "dream_folder", "image_inputs", "output_for"]
