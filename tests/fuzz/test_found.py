"""What the fuzzing found, each as the smallest file that showed it: every one now ends in a one-line
ReverieError (or a result), no longer in a traceback. docs/benchmarks.md ("Faults") lists them."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from .harness import Worker, write_case
from .media import _pixels, _png_with
from .strategies import dumps


def _run_with(tiny_run: Path, case_dir: Path, change) -> Path:
    config = json.loads((tiny_run / "config.json").read_text())
    change(config)
    for entry in tiny_run.glob("*.safetensors"):
        shutil.copyfile(entry, case_dir / entry.name)
    return write_case(case_dir / "config.json", dumps(config))


def _refused(worker: Worker, reader: str, path: Path, words: str) -> None:
    reply = worker.check(reader, path)
    assert reply["status"] == "error" and words in reply["message"], reply


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda config: config["model"].update(dropout=10**400), "--dropout must be in [0, 1)"),
        (lambda config: config["files"]["model"].update(path="x\x00y"), "no file system holds"),
        (lambda config: config["files"]["model"].update(path="a" * 300), "no file system holds"),
        # a model of 900 million parameters that the weights file does not fit: refused before any is made
        (lambda config: config["model"].update(hidden=15_000), "do not fit the model"),
    ],
    ids=["a number no float holds", "a NUL in a file name", "a file name too long", "a shape that lies"],
)
def test_a_config_json_that_lies(worker: Worker, tiny_run: Path, case_dir: Path, change, words: str) -> None:
    _refused(worker, "load_run", _run_with(tiny_run, case_dir, change), words)


def test_a_number_of_5000_digits_in_config_json(worker: Worker, case_dir: Path) -> None:
    text = b'{"format": "reverie", "format_version": ' + b"7" * 5000 + b"}"
    _refused(worker, "run_config", write_case(case_dir / "config.json", text), "is corrupted")


def test_a_config_json_that_lies_is_one_line_and_exit_code_2_on_the_command_line(
    tiny_run: Path, case_dir: Path
) -> None:
    run = _run_with(tiny_run, case_dir, lambda config: config["files"]["model"].update(path="x\x00y")).parent
    done = subprocess.run(
        [sys.executable, "-m", "reverie", "generate", str(run), "--length", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "no file system holds" in done.stderr


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    return buffer.getvalue()


def _sgi_of_mode(zsize: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, format="SGI")
    data = bytearray(buffer.getvalue())
    data[10:12] = zsize.to_bytes(2, "big")  # channels: 1 L, 3 RGB, 4 RGBA, others none Pillow knows
    return bytes(data)


@pytest.mark.parametrize(
    "image",
    [
        _sgi_of_mode(2),  # ValueError: Unsupported SGI image mode
        _png_with(_png(), b"iCCP", b"profile\x00\x21", before_data=False),  # SyntaxError while loading
    ],
    ids=["an SGI image of no mode", "a PNG chunk after the pixels that Pillow refuses"],
)
def test_an_image_pillow_refuses_in_another_way_than_oserror(
    worker: Worker, case_dir: Path, image: bytes
) -> None:
    worker.check("image", write_case(case_dir / "image", image))


def test_a_gif_cut_in_its_second_frame(worker: Worker, case_dir: Path) -> None:
    frames = [_pixels("RGB", (8, 8), seed).convert("P") for seed in range(2)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=[0, 0], loop=0)
    data = buffer.getvalue()
    for cut in range(len(data) // 2, len(data), 3):  # IndexError or struct.error while counting frames
        worker.check("video", write_case(case_dir / "clip.gif", data[:cut]))


def test_a_gif_of_a_huge_declared_size(worker: Worker, case_dir: Path) -> None:
    buffer = io.BytesIO()
    Image.new("P", (8, 8)).save(
        buffer, format="GIF", save_all=True, append_images=[Image.new("P", (8, 8), 1)]
    )
    data = bytearray(buffer.getvalue())
    data[6:10] = (65_535).to_bytes(2, "little") * 2  # DecompressionBombError while telling it is a video
    _refused(worker, "video", write_case(case_dir / "clip.gif", bytes(data)), "decompression-bomb")


def test_a_video_of_a_frame_rate_below_1_in_100000_s() -> None:
    from reverie.deepdream.videoio import _frame_rate

    rate = Fraction(1, 16_384_000)  # limit_denominator(100_000) makes it 0: a ZeroDivisionError later
    assert _frame_rate(SimpleNamespace(average_rate=rate, guessed_rate=rate, base_rate=rate)) > 0


@pytest.mark.parametrize(
    "pth",
    [
        b"\x80\x02(.",  # a pickle that ends inside a mark: IndexError in the weights-only unpickler
        None,  # a state dict whose keys are not strings: AttributeError in drop_keys
    ],
    ids=["a pickle stream that lies", "keys that are not names"],
)
def test_a_pth_that_lies(worker: Worker, case_dir: Path, pth: bytes | None) -> None:
    if pth is None:
        buffer = io.BytesIO()
        torch.save({1: torch.zeros(1)}, buffer)
        pth = buffer.getvalue()
    _refused(worker, "pth", write_case(case_dir / "weights.pth", pth), "")


def test_an_h5_whose_heap_is_broken(worker: Worker, case_dir: Path) -> None:
    path = case_dir / "weights.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = np.array([b"conv2d_1"])
        handle.create_group("conv2d_1").attrs["weight_names"] = np.array([b"conv2d_1/kernel:0"])
    data = path.read_bytes()
    assert b"HEAP" in data
    # RuntimeError from h5py: "Unable to synchronously check link existence (bad local heap signature)"
    _refused(worker, "keras_h5", write_case(path, data.replace(b"HEAP", b"XEAP")), "Keras HDF5")


@pytest.mark.parametrize(
    ("sidecar", "ids"),
    [
        (b"[" * 100_000 + b"]" * 100_000, b"\x00" * 16),  # RecursionError
        (  # ids of no token: an IndexError where a run trains on them
            json.dumps(
                {"tokenizer": {"level": "char", "vocab": ["a", "b"]}, "n_tokens": 2, "dtype": "uint8"}
            ),
            b"\x01\xc8",
        ),
        (  # OverflowError
            '{"tokenizer": {"level": "char", "vocab": ["a"]}, "n_tokens": Infinity, "dtype": "uint8"}',
            b"\x00",
        ),
    ],
    ids=["nested without end", "ids past the vocabulary", "a count of Infinity"],
)
def test_a_cached_token_file_that_lies_is_encoded_again(
    worker: Worker, case_dir: Path, sidecar: bytes | str, ids: bytes
) -> None:
    write_case(case_dir / "tokens.bin", ids)
    sidecar = sidecar.encode() if isinstance(sidecar, str) else sidecar
    assert worker.check("token_cache", write_case(case_dir / "tokens.json", sidecar)) == {"status": "ok"}


def test_a_number_posted_that_no_float_holds() -> None:
    from reverie.errors import ReverieError
    from reverie.text.sampling import SamplingOptions
    from reverie.web.inputs import Bound

    with pytest.raises(ReverieError, match="temperature"):  # was an OverflowError
        Bound.of(SamplingOptions, "temperature", "temperature").check(10**400)
