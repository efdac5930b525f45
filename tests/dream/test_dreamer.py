"""The loaded model: weights read once for many dreams (folder and zoom included), a meta twin made
without copying weights, shapes probed once, its model, weights and device its own, presets and
dtype per dream; and a short dream with real weights."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import reverie
from reverie.deepdream import backbone as backbone_module
from reverie.deepdream import octaves
from reverie.deepdream.backbone import Backbone, build_backbone
from reverie.deepdream.dreamer import Dreamer, dream_octaves, load_dreamer
from reverie.deepdream.folder import dream_folder
from reverie.deepdream.images import load_image
from reverie.deepdream.zoom import dream_zoom
from reverie.errors import ReverieError

from .conftest import TinyNet, smooth_image

FAST = {"octaves": 1, "iterations": 1, "progress": False}


def test_weights_are_loaded_once_for_many_dreams(tiny_model, tmp_path, monkeypatch):
    registry_module = sys.modules[TinyNet.__module__]
    loads = []
    monkeypatch.setattr(registry_module, "load_weights", lambda model, path: loads.append(path))
    dreamer = reverie.load_dreamer(tiny_model, device="cpu")
    assert isinstance(dreamer, Dreamer) and loads == [None]
    first = dreamer.dream(smooth_image(40, 40), **FAST)
    second = dreamer.dream(smooth_image(40, 40, seed=1), layers="c", **FAST)
    assert isinstance(first, Image.Image) and first.tobytes() != second.tobytes()
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(3):
        Image.fromarray(smooth_image(24, 32, seed=index)).save(frames / f"f{index}.png")
    assert len(dream_folder(frames, tmp_path / "out", model=dreamer, **FAST).written) == 3
    assert len(dream_zoom(smooth_image(40, 40), 3, model=dreamer, **FAST)) == 3
    assert loads == [None]  # still the one load
    dream_folder(frames, tmp_path / "by-name", model=tiny_model, **FAST)  # a name: loaded once for 3 images
    dream_zoom(smooth_image(40, 40), 2, model=tiny_model, **FAST)
    assert loads == [None, None, None]


def test_a_folder_with_a_dreamer_equals_one_with_the_name(tiny_model, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray(smooth_image(24, 32)).save(frames / "a.png")
    dream_folder(frames, tmp_path / "named", model=tiny_model, **FAST)
    dream_folder(frames, tmp_path / "held", model=load_dreamer(tiny_model, device="cpu"), **FAST)
    assert (tmp_path / "named" / "a.png").read_bytes() == (tmp_path / "held" / "a.png").read_bytes()


def test_the_meta_twin_of_a_model_defined_here_is_built_not_copied(monkeypatch):
    model = build_backbone("googlenet")

    def no_deepcopy(*args, **kwargs):
        raise AssertionError("the meta twin copied the model")

    monkeypatch.setattr(copy, "deepcopy", no_deepcopy)
    twin = model.meta_twin()
    assert type(twin) is type(model) and twin is not model
    assert all(tensor.device.type == "meta" for tensor in [*twin.parameters(), *twin.buffers()])
    assert model.meta_twin().min_input_size(["inception4c"]) == twin.min_input_size(["inception4c"])


def test_the_meta_twin_of_another_backbone_copies_no_real_tensor(tiny, monkeypatch):
    copied = []
    for cls in (torch.Tensor, torch.nn.Parameter):

        def recording(self, memo, original=cls.__deepcopy__):
            copied.append(self.device)
            return original(self, memo)

        monkeypatch.setattr(cls, "__deepcopy__", recording)
    twin = tiny.meta_twin()
    assert copied == [] and twin is not tiny
    pointers = {p.data_ptr() for p in tiny.parameters()}
    assert all(p.device.type == "meta" for p in twin.parameters()) and pointers == {
        p.data_ptr() for p in tiny.parameters()
    }
    assert [info.channels for info in twin.layer_table()] == [info.channels for info in tiny.layer_table()]
    assert twin.min_input_size(["d"]) == 9


def test_shapes_are_probed_once_per_dreamer(tiny, monkeypatch):
    dreamer = load_dreamer(tiny, device="cpu")
    probes = []
    real = type(dreamer.meta).min_input_size

    def probe(self, layers):
        probes.append(layers)
        return real(self, layers)

    monkeypatch.setattr(type(dreamer.meta), "min_input_size", probe)
    for seed in range(3):
        dreamer.dream(smooth_image(40, 40, seed=seed), octaves=2, iterations=1, progress=False)
    assert probes == [["b", "c"]]
    assert dreamer.layer_table() is dreamer.layer_table()


def test_octave_images_become_pil_only_when_read(tiny, monkeypatch):
    converted = []
    real = octaves.to_pil
    monkeypatch.setattr(octaves, "to_pil", lambda levels: converted.append(levels.shape) or real(levels))
    result = dream_octaves(smooth_image(40, 56), model=tiny, octaves=3, iterations=1, progress=False)
    assert converted == []
    assert result.image.size == (56, 40) and len(converted) == 1
    assert [image.size for image in result.octaves][-1] == (56, 40) and len(converted) == 3
    assert result.octaves[-1] is result.image and len(converted) == 3


def test_another_model_weights_or_device_is_refused(tiny, tmp_path):
    dreamer = load_dreamer(tiny, device="cpu")
    image = smooth_image(32, 32)
    cases = [
        ({"model": "googlenet"}, "this dreamer runs tiny; to dream with 'googlenet', load another dreamer"),
        ({"model": TinyNet(seed=1)}, "runs its own tiny; to dream with another tiny model, load another"),
        ({"weights": tmp_path / "other.pth"}, "its default weights; for .*other.pth, load another dreamer"),
        ({"device": torch.device("meta")}, "this dreamer runs on cpu; for meta, load another dreamer"),
    ]
    for options, message in cases:
        with pytest.raises(ReverieError, match=message) as error:
            dreamer.dream(image, **options, **FAST)
        assert "\n" not in str(error.value)
    for same in ({"model": "tiny"}, {"model": tiny}, {"model": dreamer}, {"device": "cpu"}):
        dreamer.dream(image, **same, **FAST)
    with pytest.raises(ReverieError, match="weights= is for a model given by name"):
        load_dreamer(tiny, weights=tmp_path / "w.pth")


def test_presets_and_dtype_per_dream(tiny):
    dreamer = load_dreamer(tiny, device="cpu", dtype="bfloat16")
    assert dreamer.plan().dtype == torch.bfloat16
    assert dreamer.plan(dtype="float32").dtype == torch.float32
    book = dreamer.plan(preset="book")
    assert book.dtype == torch.float32  # a preset runs float32
    assert book.options.model == "tiny" and book.objective.layers == ("b", "c")  # tiny's own layers
    assert book.options.max_loss is None and book.options.iterations == 20
    assert dreamer.plan(preset="book", layers="d").objective.layers == ("d",)


def test_loaded_image_tensor_and_dreamer_stay_float32(tiny, photo):
    dreamer = load_dreamer(tiny, device="cpu", dtype="bfloat16")
    objective = dreamer.plan().objective
    x = dreamer.to_input(load_image(photo)[None])
    _, grad = dreamer.loss_and_gradient(objective, x)
    assert grad.dtype == torch.float32 and grad.shape == x.shape


def test_batch_norm_is_folded_in_the_loaded_copy_only_where_allowed(tiny_model, monkeypatch):
    class Normed(TinyNet):
        folds_batchnorm = True

        def __init__(self) -> None:
            super().__init__()
            self.conv1.insert(1, torch.nn.BatchNorm2d(8).eval())  # conv, batch norm, ReLU

    monkeypatch.setattr(sys.modules[TinyNet.__module__], "build", Normed)
    loaded = load_dreamer(tiny_model, device="cpu").backbone
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.modules())
    mine = Normed()
    held = load_dreamer(mine, device="cpu").backbone
    assert held is not mine and any(isinstance(m, torch.nn.BatchNorm2d) for m in mine.modules())
    assert isinstance(held, Backbone) and not any(isinstance(m, torch.nn.BatchNorm2d) for m in held.modules())
    assert backbone_module.MODEL_MODULES["tiny"] == TinyNet.__module__


def test_a_short_dream_with_real_weights_raises_the_objective(lite0, hopper):
    objective = lite0.plan(layers="block10").objective
    small = load_image(hopper.permute(1, 2, 0).numpy(), max_size=96)
    before, _ = lite0.loss_and_gradient(objective, lite0.to_input(small[None]))
    result = dream_octaves(
        small.permute(1, 2, 0).numpy(), model=lite0, layers="block10", octaves=1, iterations=3, progress=False
    )
    after, _ = lite0.loss_and_gradient(objective, lite0.to_input(load_image(result.image)[None]))
    assert after > 1.1 * before
    again = lite0.dream(
        small.permute(1, 2, 0).numpy(), layers="block10", octaves=1, iterations=3, progress=False
    )
    assert np.array_equal(np.asarray(again), np.asarray(result.image))


def test_auto_measures_a_dream_step_in_each_layout_once_and_uses_the_choice(
    tiny, monkeypatch, tmp_path, capsys
):
    """--dtype auto on a dreamer: reverie.precision times the model's own dream step in float32 and
    bfloat16, each with and without channels-last (a fake timer makes plain float32 the fastest),
    and the network takes the chosen layout; a second dreamer reuses the cached choice."""
    from reverie import precision

    monkeypatch.undo()  # the real choose and cache (conftest fixes auto to float32)
    monkeypatch.setenv("REVERIE_CACHE", str(tmp_path))
    seen: dict[str, tuple[float, torch.Tensor]] = {}
    real_choose = precision.choose

    seconds_per_run = dict(zip(precision.LAYOUTS, (1.0, 2.0, 3.0, 4.0)))  # plain float32 the fastest

    def timed_choose(kind, device, work, ways=precision.DTYPES, **kwargs):
        clock = [0.0]

        def timed(way):
            clock[0] += seconds_per_run[way]
            seen[way] = work(way)
            return seen[way]

        return real_choose(kind, device, timed, ways, timer=lambda: clock[0], **kwargs)

    monkeypatch.setattr(precision, "choose", timed_choose)
    dreamer = load_dreamer(tiny, device="cpu", dtype="auto")
    plan = dreamer.plan(progress=False)
    assert set(seen) == set(precision.LAYOUTS)
    loss32, grad32 = seen["float32"]
    loss_cl, grad_cl = seen["float32 channels-last"]
    assert loss_cl == pytest.approx(loss32, rel=1e-5) and torch.allclose(grad_cl, grad32, atol=1e-6)
    assert seen["bfloat16"][1].dtype == torch.float32  # the gradient comes back in float32 either way
    assert plan.dtype == torch.float32 and dreamer.memory_format == torch.contiguous_format
    assert next(p for p in dreamer.backbone.parameters() if p.dim() == 4).is_contiguous()
    assert "--dtype auto: float32 (" in capsys.readouterr().err

    seen.clear()
    again = load_dreamer(tiny, device="cpu", dtype="auto")
    assert again.plan(progress=False).dtype == torch.float32 and seen == {}  # cached: nothing measured
    assert again.memory_format == torch.contiguous_format
    assert "--dtype auto" not in capsys.readouterr().err


def test_reading_dtype_measures_nothing_and_choose_dtype_does(tiny, monkeypatch):
    """`dreamer.dtype` is a plain read (auto: float32 until measured, the layout untouched); the
    measuring is `choose_dtype()`, which a dream asking for auto calls once, and `dtype_for`."""
    from reverie import precision

    measured: list[str] = []
    bf16 = precision.Choice("bfloat16 channels-last", "a fake measurement", {})

    def choose(kind, device, work, ways=precision.DTYPES, **kwargs):
        measured.append(kind)
        return bf16

    monkeypatch.setattr(precision, "choose", choose)
    dreamer = load_dreamer(tiny, device="cpu", dtype="auto")
    dreamer.set_layout(False)
    assert dreamer.dtype == torch.float32 and measured == []
    assert dreamer.memory_format == torch.contiguous_format  # reading did not move the network
    assert dreamer.dtype_for("float32") == torch.float32 and measured == []
    assert dreamer.choose_dtype() is bf16 and measured == ["dream tiny (picture)"]
    assert dreamer.dtype == torch.bfloat16 and dreamer.memory_format == torch.channels_last
    assert dreamer.plan(progress=False).dtype == torch.bfloat16 and len(measured) == 1  # once
    fresh = load_dreamer(tiny, device="cpu", dtype="auto")
    assert fresh.plan(progress=False).dtype == torch.bfloat16 and len(measured) == 2  # a dream asks
    assert load_dreamer(tiny, device="cpu", dtype="bfloat16").dtype == torch.bfloat16
