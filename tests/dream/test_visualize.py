"""Feature visualization (reverie.deepdream.visualize) and any nn.Module as a backbone
(reverie.deepdream.hooked): real efficientnet_lite0 channels, Fourier against pixel, a user's
tiny convnet through forward hooks, the CLI, and bad inputs refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import run_cli
from PIL import Image
from torch import nn

import reverie
from reverie.deepdream import objectives as obj
from reverie.deepdream.dreamer import load_dreamer
from reverie.deepdream.dreamtypes import StepContext
from reverie.deepdream.octaves import DreamStopped
from reverie.deepdream.visualize import (
    FourierImage,
    Pad,
    RandomRotate,
    RandomScale,
    Shift,
    parse_indices,
    visualize,
    visualize_channels,
)
from reverie.errors import ReverieError

from .conftest import smooth_image


class UserNet(nn.Module):
    """A user's own small convnet: not a reverie Backbone, with a classifier after the convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(8, 12, 3, stride=2, padding=1),
            nn.Tanh(),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 5))
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_user_net() -> UserNet:
    """What `--module dream.test_visualize:build_user_net` builds."""
    return UserNet()


QUICK = {"size": 32, "steps": 12, "progress": False}


@pytest.fixture
def user() -> reverie.Dreamer:
    return load_dreamer(UserNet(), device="cpu", dtype="float32", preprocess="[0,1]")


def activations(dreamer, images: torch.Tensor, layer: str) -> torch.Tensor:
    """(images, channels) mean activation of `layer` for a batch in [0, 1]."""
    with torch.no_grad():
        return dreamer.features(dreamer.to_input(images), [layer])[layer].float().mean(dim=(2, 3))


def test_a_channels_image_excites_it_more_than_20_other_channels_images_do(lite0):
    generator = torch.Generator().manual_seed(0)
    channels = torch.randperm(80, generator=generator)[:24].tolist()  # 4 checked, each against 20 others
    sheet = visualize_channels(lite0, "block7", channels, size=48, steps=24, batch=24, progress=False)
    images = torch.cat([result.tensor for result in sheet.results])
    table = activations(lite0, images, "block7")  # row: image, column: channel
    for row, channel in enumerate(channels[:4]):
        others = torch.cat([table[:row, channel], table[row + 1 :, channel]])[:20]
        assert len(others) == 20
        assert table[row, channel] > others.max(), (channel, table[row, channel], others.max())


def test_fourier_reaches_a_higher_activation_than_pixels_in_the_same_steps(lite0):
    reached = {}
    for param in ("fourier", "pixel"):
        result = visualize(lite0, "block8:3", size=64, steps=32, param=param, progress=False)
        reached[param] = float(activations(lite0, result.tensor, "block8")[0, 3])
        assert result.values[-1] > result.values[0]
    assert reached["fourier"] > reached["pixel"], reached


def test_seeded_reproducible_and_objectives_compose(user):
    first = visualize(user, "features.2:1", seed=3, **QUICK)
    again = visualize(user, "features.2:1", seed=3, **QUICK)
    other = visualize(user, "features.2:1", seed=4, **QUICK)
    assert torch.equal(first.tensor, again.tensor)
    assert not torch.equal(first.tensor, other.tensor)
    composed = obj.activation("features.2", 1) - 0.5 * obj.activation("features.2", 2)
    result = visualize(user, composed, **QUICK)
    table = activations(user, result.tensor, "features.2")
    start = activations(user, torch.full((1, 3, 32, 32), 0.5), "features.2")
    assert table[0, 1] - 0.5 * table[0, 2] > start[0, 1] - 0.5 * start[0, 2]
    assert first.tensor.shape == (1, 3, 32, 32) and 0 <= first.tensor.min() and first.tensor.max() <= 1


def test_neuron_and_whole_layer_objectives(user):
    features = {"features.2": torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)}
    assert float(obj.neuron("features.2", 1)(features)) == float(features["features.2"][:, 1, 2, 2].mean())
    assert float(obj.activation("features.2")(features)) == float(features["features.2"].mean())
    result = visualize(user, "features.2:0", neuron=True, **QUICK)
    assert result.values[-1] > result.values[0]


def test_diversity_draws_different_images(user):
    apart = visualize(user, "features.2:1", diversity=2, diversity_weight=10.0, **QUICK)
    alike = visualize(user, "features.2:1", diversity=2, diversity_weight=0.0, **QUICK)
    assert apart.tensor.shape[0] == 2 and len(apart.images) == 2
    term = obj.diversity("features.2")

    def spread(result) -> float:
        with torch.no_grad():
            return float(term(user.features(user.to_input(result.tensor), ["features.2"])))

    assert spread(apart) > spread(alike)  # less similar Gram matrices with the diversity term


def test_robustness_transforms_shapes_and_gradient(user):
    context = StepContext(torch.Generator().manual_seed(0), user)
    x = torch.rand(2, 3, 40, 40, requires_grad=True)
    assert Pad(4)(x, context).shape[-2:] == (48, 48)
    assert Shift(8)(x, context).shape[-2:] == (32, 32)
    assert RandomScale((0.5,))(x, context).shape[-2:] == (20, 20)
    assert torch.allclose(RandomRotate((0.0,))(x, context), x, atol=1e-5)
    rotated = RandomRotate((10.0,))(x, context)
    rotated.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    image = FourierImage(1, 32, torch.Generator().manual_seed(0))()
    assert image.shape == (1, 3, 32, 32) and (image - 0.5).abs().max() < 0.05  # starts near grey


def test_a_user_module_dreams_and_lists_its_layers_by_module_path(user):
    table = {info.name: (info.channels, info.stride) for info in user.layer_table()}
    assert table["features.0"] == (8, 1) and table["features.2"] == (12, 2)
    assert "head.2" not in table  # the classifier's output is not a 4-D activation
    photo = smooth_image(40, 40)
    dreamed = user.dream(photo, layers={"features.2": 1.0}, octaves=1, iterations=3, progress=False)
    assert dreamed.size == (40, 40)
    assert np.abs(np.asarray(dreamed, dtype=int) - photo).mean() > 0.5


def test_a_user_module_with_a_preprocess_function_maps_back_to_pixels():
    dreamer = load_dreamer(UserNet(), device="cpu", dtype="float32", preprocess=lambda x: (x - 0.5) / 0.25)
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(dreamer.to_image(dreamer.to_input(x)), x, atol=1e-6)
    with pytest.raises(ReverieError, match="affinely"):
        load_dreamer(UserNet(), device="cpu", preprocess=lambda x: x.square())
    with pytest.raises(ReverieError, match="unknown preprocess"):
        load_dreamer(UserNet(), device="cpu", preprocess="imagenett")
    with pytest.raises(ReverieError, match="preprocess= is for a torch.nn.Module"):
        load_dreamer("efficientnet_lite0", device="cpu", preprocess="[0,1]")


def test_a_missing_module_path_names_the_nearest(user):
    with pytest.raises(ReverieError, match=r"unknown layer 'features\.4'.*no such module path.*features\.2"):
        visualize(user, "features.4:0", **QUICK)
    with pytest.raises(ReverieError, match="not a 4-D activation"):
        visualize(user, "head.2:0", **QUICK)


def test_cli_sheet_files_and_layers_of_a_module(tmp_path, capsys):
    module = "dream.test_visualize:build_user_net"
    code, out, err = run_cli(["layers", "--module", module], capsys)
    assert code == 0, err
    assert "features.2" in out and "head.2" not in out
    sheet = tmp_path / "sheet.png"
    args = ["visualize", module, "features.2", "--channels", "0-3", "--grid", "--size", "32", "--steps", "3"]
    code, out, err = run_cli(
        [*args, "--preprocess", "[0,1]", "--dtype", "float32", "--out", str(sheet)], capsys
    )
    assert code == 0, err
    assert out.strip() == str(sheet)
    assert Image.open(sheet).size == (2 + 2 * 34, 2 + 2 * (32 + 14 + 2))  # 2x2 tiles with label strips
    assert "features.2:3" in err  # a progress bar per image, labelled
    single = tmp_path / "one.png"
    code, out, err = run_cli(
        [
            "visualize",
            module,
            "features.2:1,2",
            "--size",
            "32",
            "--steps",
            "2",
            "--quiet",
            "--out",
            str(single),
        ],
        capsys,
    )
    assert code == 0, err
    assert out.split() == [str(tmp_path / "one-c1.png"), str(tmp_path / "one-c2.png")]
    assert err == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["features.2:99"], "channel 99 is out of range for layer features.2"),
        (["features.2:0", "--param", "wavelet"], "invalid choice"),
        (["features.2:0", "--size", "8"], "--size must be"),
        (["features.2:0", "--steps", "0"], "--steps must be"),
        (["features.2:1", "--channels", "0-3"], "not both"),
        (["features.2", "--channels", "5-2"], "runs backwards"),
        (["features.2", "--channels", "a"], "whole numbers"),
        (["nowhere.2:0"], "nearest: "),
        (["features.2:0", "--out", "/no/such/folder/x.png"], "folder"),
    ],
)
def test_cli_bad_inputs_are_one_line(args, message, capsys):
    base = ["visualize", "dream.test_visualize:build_user_net", *args, "--dtype", "float32"]
    code, _, err = run_cli(base if "--steps" in args else [*base, "--steps", "1"], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such_pkg_xyz:build", "a:0"], "cannot import"),
        (["dream.test_visualize:nothing", "a:0"], "has no 'nothing'"),
        (["dream.test_visualize:QUICK", "a:0"], "not a torch.nn.Module"),
        (["efficientnet_lite0", "block5:0", "--preprocess", "[0,1]"], "--preprocess is for"),
    ],
)
def test_cli_bad_models_are_one_line(args, message, capsys):
    code, _, err = run_cli(["visualize", *args, "--steps", "1"], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_api_bad_inputs(user):
    with pytest.raises(ReverieError, match="unknown visualize option"):
        visualize(user, "features.2:0", sizes=3)
    with pytest.raises(ReverieError, match="unknown --dtype 'float16'"):
        visualize(user, "features.2:0", dtype="float16", **QUICK)
    with pytest.raises(ReverieError, match="objective must be"):
        visualize(user, 3)
    with pytest.raises(ReverieError, match="write the target"):
        visualize(user, ":3", **QUICK)


def test_stop_ends_a_rendering_between_steps(user):
    """stop= is asked before every step (the page's cancel and time limit); never True, it changes nothing."""
    asked: list[int] = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(DreamStopped, match="features.2:1 was stopped before step 4 of 12"):
        visualize(user, "features.2:1", stop=stop, **QUICK)
    with pytest.raises(ReverieError, match="stop= takes a function"):
        visualize(user, "features.2:1", stop=3, **QUICK)
    free = visualize_channels(user, "features.2", [0, 1], **QUICK)
    asked_too = visualize_channels(user, "features.2", [0, 1], stop=lambda: False, **QUICK)
    assert all(torch.equal(a.tensor, b.tensor) for a, b in zip(free.results, asked_too.results))


def test_parse_indices_with_a_cap_refuses_before_spelling_ranges_out():
    assert parse_indices("0-3, 7", most=5) == [0, 1, 2, 3, 7]
    with pytest.raises(ReverieError, match="'0-999999999' names 1,000,000,000 channels; at most 5 per sheet"):
        parse_indices("0-999999999", most=5)
    assert len(parse_indices("0-1999")) == 2000  # no cap by default (a target's channels, LAYER:0-1999)
