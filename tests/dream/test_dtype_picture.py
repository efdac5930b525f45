"""`--dtype auto` for dreams judges a way by its picture (reverie.precision.picture_judge): a few
steps of a small seeded dream in the candidate way must stay as close to float32's as float32's with
another jitter seed is, in mean absolute difference and SSIM. Fake clocks decide which way is the
fastest; the pictures are real dreams of a tiny network or fake pictures with known differences."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reverie import precision
from reverie.deepdream.dreamer import Dreamer, load_dreamer
from tests.dream.conftest import smooth_image

C1 = (0.01 * 255) ** 2
CPU = torch.device("cpu")


@pytest.fixture
def real_precision(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """The real precision.choose and cache (conftest fixes auto to float32), the cache in tmp_path."""
    monkeypatch.undo()
    monkeypatch.setenv("REVERIE_CACHE", str(tmp_path))
    return tmp_path


def test_precision_ssim_of_identical_pictures_is_one():
    picture = smooth_image(40, 30, seed=3)
    assert precision.ssim(picture, picture) == pytest.approx(1.0, abs=1e-12)
    assert precision.picture_difference(picture, picture) == (0.0, pytest.approx(1.0, abs=1e-12))


def test_precision_ssim_of_two_flat_pictures_is_their_luminance_term():
    """Flat pictures have no variance, so SSIM is (2 mx my + C1) / (mx^2 + my^2 + C1), by hand."""
    dark, light = np.full((20, 24, 3), 100, np.uint8), np.full((20, 24, 3), 110, np.uint8)
    expected = (2 * 100 * 110 + C1) / (100**2 + 110**2 + C1)  # 0.99548...
    assert precision.ssim(dark, light) == pytest.approx(expected, rel=1e-12)
    assert precision.picture_difference(dark, light) == (10.0, pytest.approx(expected, rel=1e-12))
    black, white = np.zeros((5, 7), np.uint8), np.full((5, 7), 255, np.uint8)  # narrower than the window
    assert precision.ssim(black, white) == pytest.approx(C1 / (255**2 + C1), rel=1e-12)


def test_precision_ssim_is_symmetric_and_falls_as_the_pictures_part():
    rng = np.random.default_rng(0)
    picture = smooth_image(48, 48, seed=1).astype(np.float64)
    near = np.clip(picture + rng.normal(0, 5, picture.shape), 0, 255)
    far = np.clip(picture + rng.normal(0, 40, picture.shape), 0, 255)
    assert precision.ssim(picture, near) == pytest.approx(precision.ssim(near, picture), rel=1e-12)
    assert 1 > precision.ssim(picture, near) > precision.ssim(picture, far) > 0
    assert precision.ssim(picture, 255 - picture) < 0  # the structure inverted
    with pytest.raises(ValueError, match="different shapes"):
        precision.ssim(picture, picture[1:])


class FakeDreams:
    """Pictures with known differences: seed B moves float32's by `spread` levels of noise, and each
    way adds its own `error` levels; a clock that advances by each way's cost."""

    def __init__(self, cost: dict[str, float], error: dict[str, float], spread: float = 8.0) -> None:
        self.cost, self.error, self.spread, self.now, self.dreamed = cost, error, spread, 0.0, []
        self.base = smooth_image(64, 64, seed=0).astype(np.float64)

    def timer(self) -> float:
        return self.now

    def work(self, way: str) -> tuple[float, torch.Tensor]:
        self.now += self.cost[way]
        return 1.0, torch.ones(10)  # the gradients all agree: only the pictures can tell the ways apart

    def dream(self, way: str, seed: int) -> np.ndarray:
        self.dreamed.append((way, seed))
        rng = np.random.default_rng(1000 * seed + len(way))
        picture = self.base + (self.spread * rng.standard_normal(self.base.shape) if seed == 2 else 0)
        picture = picture + self.error.get(way, 0.0) * np.random.default_rng(7).standard_normal(picture.shape)
        return np.clip(picture, 0, 255).round().astype(np.uint8)


def test_precision_picture_judge_refuses_a_way_beyond_the_seed_spread_and_takes_one_within_it(real_precision):
    costs = dict(zip(precision.LAYOUTS, (4.0, 3.0, 2.0, 1.0)))  # bfloat16 channels-last the fastest
    fake = FakeDreams(costs, {"bfloat16 channels-last": 30.0, "bfloat16": 2.0})
    judge = precision.picture_judge(fake.dream)
    choice = precision.choose(
        "net", CPU, fake.work, precision.LAYOUTS, judge=judge, timer=fake.timer, say=print
    )
    assert choice.way == "bfloat16" and choice.dtype == torch.bfloat16 and not choice.channels_last
    assert "bfloat16 runs at 2.00x float32's speed and agrees with float32 (its dream" in choice.reason
    assert "(bfloat16 channels-last is faster but disagrees: its dream" in choice.reason
    # float32's two seeds once each, then the faster ways, fastest first, until one agrees
    assert fake.dreamed == [("float32", 1), ("float32", 2), ("bfloat16 channels-last", 1), ("bfloat16", 1)]


def test_precision_picture_judge_with_a_still_dream_falls_back_to_the_gradient(real_precision):
    """Weights whose gradient vanishes do not move the picture: two seeds' dreams are equal, and the
    gradient rule decides (here all gradients agree)."""
    fake = FakeDreams({"float32": 2.0, "bfloat16": 1.0}, {"bfloat16": 30.0}, spread=0.0)
    judge = precision.picture_judge(fake.dream)
    choice = precision.choose("still", CPU, fake.work, judge=judge, timer=fake.timer, say=print)
    assert choice.way == "bfloat16" and "judged by the gradient" in choice.reason


def timed_choose(monkeypatch: pytest.MonkeyPatch, seconds_per_run: dict[str, float]) -> list[str]:
    """Make precision.choose run with a clock that advances by each way's cost (the real work and
    judge); returns the ways run, in order."""
    real_choose, ran = precision.choose, []

    def choose(kind, device, work, ways=precision.DTYPES, **kwargs):
        clock = [0.0]

        def timed(way):
            clock[0] += seconds_per_run[way]
            ran.append(way)
            return work(way)

        return real_choose(kind, device, timed, ways, timer=lambda: clock[0], **kwargs)

    monkeypatch.setattr(precision, "choose", choose)
    return ran


def test_auto_dtype_refuses_a_faster_way_whose_dream_is_corrupted_and_takes_a_real_one(
    tiny, monkeypatch, real_precision
):
    """A real tiny dreamer: the bfloat16 ways are the fastest but their pictures come back corrupted
    (a fake), so auto takes float32 channels-last, whose real dream is within the real seed spread."""
    timed_choose(monkeypatch, dict(zip(precision.LAYOUTS, (4.0, 3.0, 2.0, 1.0))))
    pictures: dict[tuple[str, int], np.ndarray] = {}
    real_dream = Dreamer._judge_dream

    def corrupting_dream(self, way, seed):
        picture = real_dream(self, way, seed)
        pictures[way, seed] = picture
        return 255 - picture if way.startswith("bfloat16") else picture

    monkeypatch.setattr(Dreamer, "_judge_dream", corrupting_dream)
    dreamer = load_dreamer(tiny, device="cpu", dtype="auto")
    choice = dreamer.choose_dtype()
    assert choice.way == "float32 channels-last" and dreamer.memory_format == torch.channels_last
    assert "(bfloat16 channels-last is faster but disagrees: its dream" in choice.reason
    assert list(pictures) == [("float32", 1), ("float32", 2), ("bfloat16 channels-last", 1), ("bfloat16", 1),
                              ("float32 channels-last", 1)]  # fmt: skip
    spread, spread_ssim = precision.picture_difference(pictures["float32", 1], pictures["float32", 2])
    same, same_ssim = precision.picture_difference(
        pictures["float32 channels-last", 1], pictures["float32", 1]
    )
    assert spread > precision.MIN_SPREAD and same <= spread and same_ssim >= spread_ssim  # a real verdict
    assert pictures["float32", 1].shape == (160, 160, 3)
    assert np.abs(pictures["float32", 1].astype(int) - pictures["float32", 2]).max() > 0


def test_auto_dtype_does_not_reuse_a_verdict_of_the_gradient_rule(tiny, monkeypatch, real_precision):
    """Verdicts cached under the old kind ("dream tiny", judged by the gradient) are not reused:
    dreams are cached as "dream tiny (picture)"."""
    old = {"way": "bfloat16 channels-last", "reason": "gradient rule", "seconds": {}}
    cache = real_precision / precision.CACHE_FILE
    cache.write_text(json.dumps({precision.machine_key(CPU): {"dream tiny": old}}))
    ran = timed_choose(monkeypatch, dict(zip(precision.LAYOUTS, (1.0, 2.0, 3.0, 4.0))))  # float32 the fastest
    dreamed: list[str] = []
    real_dream = Dreamer._judge_dream
    monkeypatch.setattr(
        Dreamer, "_judge_dream", lambda self, way, seed: dreamed.append(way) or real_dream(self, way, seed)
    )
    choice = load_dreamer(tiny, device="cpu", dtype="auto").choose_dtype()
    assert choice.way == "float32" and ran and dreamed == []  # measured; nothing faster to judge
    cached = json.loads(cache.read_text())[precision.machine_key(CPU)]
    assert cached["dream tiny"] == old and cached["dream tiny (picture)"]["way"] == "float32"
