"""Tiny seeded backbones and test images for the DeepDream tests (no weights, no network)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from reverie.deepdream.backbone import Backbone
from reverie.deepdream.dreamer import load_dreamer
from reverie.deepdream.dreamtypes import StepContext
from reverie.deepdream.octaves import Plan


class TinyNet(Backbone):
    """Four conv stages (strides 2, 4, 4, 8); the last uses no padding, so inputs under 9 px fail it.

    Its receptive field at `d` is 23 px, so tiled gradients with a 24 px margin are exact.
    """

    name = "tiny"
    aliases: ClassVar[dict[str, str]] = {"a": "conv1", "b": "conv2", "c": "conv3", "d": "conv4"}
    dream_layers: ClassVar[dict[str, float]] = {"b": 1.0, "c": 1.0}

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.conv3 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.conv4 = nn.Sequential(nn.Conv2d(16, 24, 3, stride=2), nn.ReLU())
        _seeded_init(self, seed)

    def named_stages(self) -> list[tuple[str, nn.Module]]:
        return [("conv1", self.conv1), ("conv2", self.conv2), ("conv3", self.conv3), ("conv4", self.conv4)]


class CircularNet(Backbone):
    """Stride-1 convs with circular padding: rolling the input rolls every activation."""

    name = "circular"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, padding_mode="circular"), nn.Tanh())
        self.conv2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular"), nn.Tanh())
        _seeded_init(self, seed)

    def named_stages(self) -> list[tuple[str, nn.Module]]:
        return [("conv1", self.conv1), ("conv2", self.conv2)]


def _seeded_init(model: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            fan_in = parameter[0].numel() if parameter.dim() > 1 else 1
            parameter.copy_(torch.randn(parameter.shape, generator=generator) / fan_in**0.5 + 0.02)
    model.eval().requires_grad_(False)


def cpu_plan(net: Backbone, preset: str | None = None, **options) -> Plan:
    """The plan of a dream with `options` on `net`, on the CPU, without progress bars."""
    return load_dreamer(net, device="cpu").plan(preset, progress=False, **options)


def step_context(plan: Plan, x: torch.Tensor, seed: int = 0) -> StepContext:
    """A context for stepping `x` (input space) directly with `ascend`; `x` is its original."""
    return StepContext(torch.Generator().manual_seed(seed), plan.dreamer, x)


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A seeded uint8 RGB image with smooth color gradients and some texture."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [0.5 + 0.4 * np.sin(xs / (5 + 3 * c) + ys / (7 + 2 * c) + rng.uniform(0, 6)) for c in range(3)]
    array = np.stack(channels, axis=-1) + rng.normal(0, 0.03, (height, width, 3))
    return (np.clip(array, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(autouse=True)
def float32_auto(monkeypatch):
    """Make dtype `auto` mean float32 here, so exact comparisons hold on any machine (nothing is
    measured: reverie.precision's choice is float32)."""
    from reverie.precision import Choice

    choice = Choice("float32 channels-last", "tests", {})
    monkeypatch.setattr("reverie.precision.choose", lambda *args, **kwargs: choice)
    monkeypatch.setattr("reverie.precision.cached", lambda *args, **kwargs: choice)


TINY_BOOK_LAYERS = {"b": 0.02, "c": 0.3, "d": 0.2}  # the book's weights / 10: losses below max_loss


@pytest.fixture(scope="session")
def lite0():
    """efficientnet_lite0 with its real ImageNet weights (installed with reverie), loaded once."""
    return load_dreamer("efficientnet_lite0", device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def hopper() -> torch.Tensor:
    """matplotlib's grace_hopper.jpg as a (3, H, W) tensor in [0, 1]."""
    import matplotlib.cbook

    from reverie.deepdream.images import load_image

    return load_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture
def tiny() -> TinyNet:
    return TinyNet()


@pytest.fixture
def photo(tmp_path) -> Path:  # noqa: F821
    """A 72x56 PNG on disk."""
    path = tmp_path / "photo.png"
    Image.fromarray(smooth_image(56, 72)).save(path)
    return path


def build() -> TinyNet:
    """Registry hook: lets tests register this module as model `tiny` (see `tiny_model`)."""
    return TinyNet()


def load_weights(model: TinyNet, path) -> None:
    """Registry hook: the tiny net has no weight files; its weights are the seeded ones."""


@pytest.fixture
def tiny_model(monkeypatch) -> str:
    """Register the tiny net as model `tiny`, so `--model tiny` goes through the real loading path."""
    from reverie.deepdream import backbone

    monkeypatch.setitem(backbone.MODEL_MODULES, "tiny", TinyNet.__module__)
    return "tiny"
