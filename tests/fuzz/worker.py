"""The process that runs the fuzz cases (started by tests/fuzz/harness.py, one per test session): it reads
one case a line on stdin (`{"reader": NAME, "path": FILE}`), hands the file to the reader of that name
(the entry point a user hits) and answers one line of JSON on the real stdout:

    {"status": "ok"}                                 a result
    {"status": "error", "message": ONE LINE}         reverie's ReverieError (exit code 2 on the command line)
    {"status": "bug", "message": TRACEBACK}          anything else: an exception reverie let through

The cases run here, not in pytest's process, so that a reader that crashes the interpreter (a segfault in
a decoder), hangs (the harness kills this process after its time bound) or allocates without bound (the
address space is capped: a MemoryError, or an allocation that fails, is a bug) fails only its case.

    python tests/fuzz/worker.py        # then type {"reader": "image", "path": "photo.jpg"}
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from reverie.errors import ReverieError  # light: reverie's modules are imported on first use

MEMORY_HEADROOM = 3 << 30  # bytes a case may allocate above what the imports hold
_CACHE: dict[str, object] = {}


def _run_config(path: Path) -> None:
    """A run's config.json: what `reverie generate RUN` and `--resume` read first."""
    from reverie.text.rundir import RunConfig

    RunConfig.load(path.parent, training=False)
    RunConfig.load(path.parent, training=True)


def _load_run(path: Path) -> None:
    """A whole run (config.json and the weights it names): reverie.load, then a few tokens."""
    import reverie

    model = reverie.load(path.parent, device="cpu")
    model.generate("", length=3, seed=0)


def _safetensors(path: Path) -> None:
    from reverie.checkpoint import load_tensors

    load_tensors(path)


def _inception() -> object:
    if "inception" not in _CACHE:
        import torch

        from reverie.deepdream.inception_v3 import build

        with torch.device("meta"):  # the shapes and the graph are all the importer looks at before reading
            _CACHE["inception"] = build()
    return _CACHE["inception"]


def _keras_h5(path: Path) -> None:
    """A Keras .h5 given with `--model inception_v3 --weights FILE.h5`."""
    from reverie.deepdream.keras_import import keras_state_dict

    keras_state_dict(_inception(), path)


def _small_backbone() -> object:
    if "backbone" not in _CACHE:
        from torch import nn

        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
        net.name = "tiny"
        _CACHE["backbone"] = net
    return _CACHE["backbone"]


def _pth(path: Path) -> None:
    """A torchvision .pth given with `--weights FILE`: read, the classifier dropped, loaded strictly."""
    from reverie.deepdream.weights import load_torchvision

    load_torchvision(_small_backbone(), path, "https://example.invalid/tiny-0000.pth", ("fc.",))


def _image(path: Path) -> None:
    """An image given to `reverie dream` (at full size, and shrunk while decoding with --max-size)."""
    from reverie.deepdream.images import load_image

    load_image(path)
    load_image(path, max_size=64)


def _video(path: Path) -> None:
    """A GIF or a video given to `reverie dream`: told apart as the command does, then every frame read."""
    from reverie.deepdream.images import load_image
    from reverie.deepdream.videoio import frame_size, is_video_path, probe, read_frames

    if not is_video_path(path):
        load_image(path, max_size=64)
        return
    info = probe(path)
    str(info)
    for _ in read_frames(info, frame_size(info, 64, even=path.suffix != ".gif")):
        pass
    probe(path, start=0.05, duration=0.1)


def _corpus(path: Path) -> None:
    """A text file given to `reverie train`, at each level (UTF-8 strict, then replace)."""
    from reverie.text.corpus import load_corpus

    for level in ("char", "word", "byte", "bpe"):
        load_corpus([str(path)], level=level)
    load_corpus([str(path)], level="char", errors="replace")


def _token_cache(path: Path) -> None:
    """The sidecar of a cached token file (`<cache>/tokens/KEY.json`), which a later run trusts or redoes."""
    from reverie.text.corpus import _open_cached_ids

    found = _open_cached_ids(path.with_suffix(".bin"), path)
    if found is not None:  # ids a run trains on: each one a token of the tokenizer
        tokenizer, ids = found
        tokenizer.decode(ids.tolist())


def _crash(path: Path) -> None:
    """Not a reader: what a segfault in a decoder looks like (the harness's own test)."""
    import ctypes

    ctypes.string_at(0)


def _hang(path: Path) -> None:
    """Not a reader: what a decoder that never returns looks like."""
    import time

    time.sleep(3600)


def _hog(path: Path) -> None:
    """Not a reader: what an allocation without bound looks like (past the address-space cap)."""
    bytearray(MEMORY_HEADROOM + (1 << 30))


READERS: dict[str, Callable[[Path], None]] = {
    "crash": _crash,
    "hang": _hang,
    "hog": _hog,
    "run_config": _run_config,
    "load_run": _load_run,
    "safetensors": _safetensors,
    "keras_h5": _keras_h5,
    "pth": _pth,
    "image": _image,
    "video": _video,
    "corpus": _corpus,
    "token_cache": _token_cache,
}


def answer(reader: str, path: Path) -> dict[str, str]:
    try:
        READERS[reader](path)
    except ReverieError as exc:
        return {"status": "error", "message": str(exc), "exit_code": str(exc.exit_code)}
    except BaseException:  # noqa: BLE001 - anything else is what the fuzzing looks for
        return {"status": "bug", "message": traceback.format_exc()}
    return {"status": "ok"}


def _cap_memory() -> None:
    with open("/proc/self/status") as handle:
        size = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmSize:"))
    limit = size + MEMORY_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def main() -> None:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever a reader prints goes to stderr, not into the answers
    if not os.environ.get("REVERIE_FUZZ_BARE"):  # bare: the harness's own test, no reader imported
        _import_readers()
    _cap_memory()
    replies.write(json.dumps({"status": "ready"}) + "\n")
    for line in sys.stdin:
        case = json.loads(line)
        replies.write(json.dumps(answer(case["reader"], Path(case["path"]))) + "\n")


def _import_readers() -> None:
    import h5py  # noqa: F401 - every reader's libraries, imported before the memory cap

    with contextlib.suppress(ImportError):  # the video extra: without it the reader says so in one line
        import av  # noqa: F401
        import cv2  # noqa: F401
    import torch

    import reverie.deepdream.images
    import reverie.deepdream.keras_import
    import reverie.deepdream.videoio
    import reverie.text.corpus
    import reverie.text.generator  # noqa: F401

    torch.set_num_threads(1)
    _inception()


if __name__ == "__main__":
    main()
