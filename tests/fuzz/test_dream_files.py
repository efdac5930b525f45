"""Fuzzing the files `reverie dream` reads: images (cut, sizes that lie, odd modes and chunks, EXIF
rotations that are no rotation), GIFs and videos (cut, no frames, absurd frame rates and sizes), and
weight files: a torchvision `.pth` (read with torch.load(weights_only=True)) and a Keras `.h5`.

    REVERIE_FUZZ_EXAMPLES=2000 python -m pytest -q tests/fuzz/test_dream_files.py
"""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from .harness import FUZZ, Worker, write_case
from .media import hostile_gifs, hostile_images, hostile_videos, write_clips
from .strategies import mutated_bytes


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return write_clips(tmp_path_factory.mktemp("clips"))


@FUZZ
@given(image=hostile_images())
def test_an_image(worker: Worker, case_dir: Path, image: bytes) -> None:
    worker.check("image", write_case(case_dir / "image", image))


@FUZZ
@given(gif=hostile_gifs())
def test_a_gif(worker: Worker, case_dir: Path, gif: bytes) -> None:
    worker.check("video", write_case(case_dir / "clip.gif", gif))


@FUZZ
@given(data=st.data())
def test_a_video(worker: Worker, case_dir: Path, clips: dict[str, bytes], data: st.DataObject) -> None:
    video, suffix = data.draw(hostile_videos(clips), label="video")
    worker.check("video", write_case(case_dir / f"clip{suffix}", video))


# ---- .pth ----

STATE_KEYS = ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "3.weight"]
odd_tensors = st.one_of(
    st.builds(torch.zeros, st.lists(st.integers(0, 5), max_size=4).map(tuple)),
    st.sampled_from(
        [
            torch.zeros(4, 3, 3, 3),
            torch.ones(4),
            torch.zeros(4, dtype=torch.int64),
            torch.zeros((), dtype=torch.bool),
        ]
    ),
    st.sampled_from([torch.zeros(4, dtype=torch.complex64), torch.zeros(4, dtype=torch.float16)]),
)
values = st.one_of(
    odd_tensors, st.none(), st.integers(), st.text(max_size=4), st.lists(odd_tensors, max_size=2)
)
keys = st.one_of(
    st.sampled_from(STATE_KEYS + ["fc.weight", "1.num_batches_tracked"]), st.integers(), st.text(max_size=6)
)


def _saved(obj: object, legacy: bool) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


@st.composite
def hostile_state_dicts(draw: st.DrawFn) -> bytes:
    """A state dict with keys and values of every kind (or not a dict at all), saved in the zip or the
    legacy format, maybe cut or flipped."""
    from .worker import _small_backbone

    state = {key: value.clone() for key, value in _small_backbone().state_dict().items()}
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()) and state:
            del state[draw(st.sampled_from(list(state)))]
        state[draw(keys)] = draw(values)
    obj = draw(
        st.one_of(st.just(state), st.just(state), st.builds(list, st.just(state)), odd_tensors, values)
    )
    data = _saved(obj, legacy=draw(st.booleans()))
    return draw(mutated_bytes(data)) if draw(st.booleans()) else data


@FUZZ
@given(pth=hostile_state_dicts())
def test_a_torchvision_pth(worker: Worker, case_dir: Path, pth: bytes) -> None:
    worker.check("pth", write_case(case_dir / "weights.pth", pth))


# ---- Keras .h5 ----

names = st.sampled_from(
    ["conv2d_1", "conv2d", "batch_normalization", "dense_2", "", "/", "a/b", "..", "x" * 300]
)
h5_dtypes = st.sampled_from(["<f4", "<f8", "<f2", "<i4", "|S3", "|b1", "<c8"])
h5_shapes = st.one_of(
    st.lists(st.integers(0, 4), max_size=4).map(tuple),
    st.sampled_from([(3, 3, 3, 32), (32,), (60_000, 60_000), (2**31, 2**31), (1, 1, 2048, 2048)]),
)
ROLES = ["kernel:0", "bias:0", "gamma:0", "beta:0", "moving_mean:0", "moving_variance:0", "odd:0"]


def _dataset(group: h5py.Group, name: str, shape: tuple[int, ...], dtype: str, how: str) -> None:
    if how == "soft":
        group[name] = h5py.SoftLink("/elsewhere")
    elif how == "external":
        group[name] = h5py.ExternalLink("other.h5", "/data")
    elif how == "group":
        group.create_group(name)
    elif np.prod(shape, dtype=np.float64) > 4096:  # declared, never written: only its fill value
        group.create_dataset(name, shape=shape, dtype=dtype, chunks=tuple(1 for _ in shape) or None)
    else:
        group.create_dataset(name, data=np.zeros(shape, dtype=dtype))


@st.composite
def hostile_h5(draw: st.DrawFn, folder: Path) -> bytes:
    """A Keras weight file of the legacy layout (root or model_weights/ `layer_names`, `weight_names`) or
    Keras 3's (`layers/NAME/vars/N`), with names, links, shapes and dtypes that lie; or its bytes cut."""
    path = folder / "built.h5"
    ways = st.sampled_from(["data", "data", "data", "soft", "external", "group"])
    with h5py.File(path, "w") as handle:
        layout = draw(st.sampled_from(["legacy", "whole model", "keras 3", "neither"]))
        root = handle.create_group("model_weights") if layout == "whole model" else handle
        if layout in ("legacy", "whole model"):
            layer_names = draw(st.lists(names, max_size=4, unique=True))
            listed = draw(st.one_of(st.just(layer_names), st.just(layer_names + ["missing"]), st.just(7)))
            root.attrs["layer_names"] = np.array(listed, dtype="S") if isinstance(listed, list) else listed
            for name in layer_names:
                if name.strip("/") in ("", "..") or "/" in name.strip("/") or len(name) > 255:
                    continue
                group = root.require_group(name)
                roles = draw(st.lists(st.sampled_from(ROLES), max_size=4, unique=True))
                group.attrs["weight_names"] = np.array([f"{name}/{role}" for role in roles], dtype="S")
                for role in roles:
                    _dataset(group, f"{name}/{role}", draw(h5_shapes), draw(h5_dtypes), draw(ways))
        elif layout == "keras 3":
            layers = root.create_group("layers")
            for name in draw(st.lists(names, max_size=4, unique=True)):
                if name.strip("/") in ("", "..") or "/" in name.strip("/") or len(name) > 255:
                    continue
                variables = layers.create_group(name).create_group("vars")
                for index in range(draw(st.integers(0, 5))):
                    _dataset(variables, str(index), draw(h5_shapes), draw(h5_dtypes), draw(ways))
    data = path.read_bytes()
    return draw(mutated_bytes(data)) if draw(st.integers(0, 3)) == 0 else data


@FUZZ
@given(data=st.data())
def test_a_keras_h5(worker: Worker, case_dir: Path, data: st.DataObject) -> None:
    h5 = data.draw(hostile_h5(case_dir), label="h5")
    worker.check("keras_h5", write_case(case_dir / "weights.h5", h5))
