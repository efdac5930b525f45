"""The octave loop and the gradient ascent on tiny seeded networks: the book's step and octaves
against independent references, pixel-level steps, small images, max_loss, precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import reverie
from reverie.deepdream.dreamer import dream, dream_octaves
from reverie.deepdream.octaves import DreamStopped, ascend
from reverie.errors import ReverieError

from .conftest import TINY_BOOK_LAYERS, TinyNet, cpu_plan, smooth_image, step_context


def reference_loss(net: TinyNet, x: torch.Tensor, layers: dict[str, float]) -> torch.Tensor:
    """The book's loss written out with plain torch: sum(a[:, :, 2:-2, 2:-2]**2) / a.numel()."""
    activations, h = {}, x
    for alias, stage in zip("abcd", (net.conv1, net.conv2, net.conv3, net.conv4)):
        h = stage(h)
        activations[alias] = h
    return sum(
        w * activations[k][:, :, 2:-2, 2:-2].pow(2).sum() / activations[k].numel() for k, w in layers.items()
    )


def reference_book_step(
    net: TinyNet, x: torch.Tensor, layers: dict[str, float]
) -> tuple[float, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    loss = reference_loss(net, x, layers)
    (g,) = torch.autograd.grad(loss, x)
    g = g / torch.clamp(g.abs().mean(), min=1e-7)
    return loss.item(), (x + 0.01 * g).detach()


def numpy_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear with aligned corners (scipy.ndimage.zoom order=1), written independently in numpy."""
    h0, w0 = image.shape[-2:]
    ys = np.linspace(0, h0 - 1, height)
    xs = np.linspace(0, w0 - 1, width)
    y0 = np.clip(np.floor(ys).astype(int), 0, h0 - 2)
    x0 = np.clip(np.floor(xs).astype(int), 0, w0 - 2)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    top = image[..., y0, :][..., x0] * (1 - fx) + image[..., y0, :][..., x0 + 1] * fx
    bottom = image[..., y0 + 1, :][..., x0] * (1 - fx) + image[..., y0 + 1, :][..., x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def test_one_book_step_equals_an_independent_reference(tiny):
    plan = cpu_plan(tiny, "book", layers=TINY_BOOK_LAYERS, iterations=1)
    x = torch.from_numpy(smooth_image(48, 40)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    stepped, losses = ascend(plan, x.clone(), step_context(plan, x))
    ref_loss, ref_x = reference_book_step(TinyNet(), x, TINY_BOOK_LAYERS)
    assert losses == [pytest.approx(ref_loss, rel=1e-5)]
    assert torch.allclose(stepped, ref_x, atol=1e-6)
    assert not torch.equal(stepped, x)


def test_book_run_equals_the_books_algorithm(tiny):
    """Three octaves x1.4, detail re-injection, max_loss, [-1, 1] space, clip at the end only."""
    image = smooth_image(50, 46)
    result = dream_octaves(
        image, model=tiny, preset="book", layers=TINY_BOOK_LAYERS, iterations=3, max_loss=3.0, progress=False
    )
    assert [len(losses) for losses in result.losses] == [3, 3, 2]  # the last octave passed max_loss

    net = TinyNet()
    original = image.transpose(2, 0, 1)[None].astype(np.float64) / 127.5 - 1.0  # preprocess_input
    shapes = [(int(50 / 1.4**i), int(46 / 1.4**i)) for i in (2, 1, 0)]
    img = original.copy()
    shrunk = numpy_resize(original, *shapes[0])
    for shape in shapes:
        img = numpy_resize(img, *shape)
        for _ in range(3):
            loss, stepped = reference_book_step(net, torch.from_numpy(img).float(), TINY_BOOK_LAYERS)
            if loss > 3.0:
                break
            img = stepped.double().numpy()
        img = img + numpy_resize(original, *shape) - numpy_resize(shrunk, *shape)
        shrunk = numpy_resize(original, *shape)
    expected = np.clip((img[0].transpose(1, 2, 0) / 2 + 0.5) * 255, 0, 255)
    got = np.asarray(result.image).astype(np.float64)
    assert [o.size for o in result.octaves] == [(w, h) for h, w in shapes]
    assert np.abs(got - expected).max() <= 1.0
    assert np.abs(got - image).mean() > 1.0  # the dream did change the picture


def test_zero_iterations_give_back_the_input(tiny):
    image = smooth_image(56, 72)
    result = dream_octaves(image, model=tiny, iterations=0, octaves=4, progress=False)
    assert result.losses == [[], [], [], []]
    assert np.abs(np.asarray(result.image).astype(int) - image).max() <= 1


def test_google_step_is_one_and_a_half_pixel_levels(tiny):
    plan = cpu_plan(tiny, "google", layers={"c": 1.0}, jitter=0, iterations=1)
    assert plan.dreamer.input_per_pixel_level == pytest.approx(2 / 255)
    assert plan.step == pytest.approx(1.5 * 2 / 255)
    x = torch.from_numpy(smooth_image(40, 40)).permute(2, 0, 1)[None].float() / 255 * 0.5 - 0.25  # mid-range
    stepped, _ = ascend(plan, x.clone(), step_context(plan, x))
    assert (stepped - x).abs().mean().item() == pytest.approx(1.5 * 2 / 255, rel=1e-4)


def test_small_images(tiny):
    with pytest.raises(ReverieError, match="needs at least 9 pixels"):
        dream(np.zeros((8, 30, 3), np.uint8), model=tiny, layers="d", progress=False)
    with pytest.warns(UserWarning, match="dropping octave"):
        result = dream_octaves(smooth_image(12, 14), model=tiny, layers="d", octaves=3, progress=False)
    assert len(result.octaves) == 1 and result.image.size == (14, 12)


def test_max_loss_stops_before_stepping(tiny):
    image = smooth_image(40, 40)
    result = dream_octaves(image, model=tiny, max_loss=1e-6, octaves=2, iterations=5, progress=False)
    assert [len(losses) for losses in result.losses] == [1, 1]
    assert np.abs(np.asarray(result.image).astype(int) - image).max() <= 1


def test_stop_is_asked_before_every_step_and_ends_the_dream_between_steps(tiny, tmp_path):
    """`stop=` (a threading.Event's is_set, a deadline, ...) ends a dream between two gradient steps."""
    import threading

    asked = []

    def stop_at_the_seventh() -> bool:
        asked.append(len(asked) + 1)
        return len(asked) == 7

    with pytest.raises(DreamStopped, match="stopped before step 2 of 5 of octave 2") as error:
        dream_octaves(
            smooth_image(40, 40),
            model=tiny,
            octaves=2,
            iterations=5,
            stop=stop_at_the_seventh,
            progress=False,
        )
    assert isinstance(error.value, ReverieError) and asked == [1, 2, 3, 4, 5, 6, 7]  # no step after it
    cancelled = threading.Event()
    dreamer = reverie.load_dreamer(tiny, device="cpu")
    assert dreamer.dream(smooth_image(40, 40), iterations=2, stop=cancelled.is_set, progress=False)
    cancelled.set()
    for run in (
        lambda: dreamer.dream(smooth_image(40, 40), iterations=2, stop=cancelled.is_set, progress=False),
        lambda: reverie.dream_folder(tmp_path, tmp_path / "out", model=dreamer, stop=cancelled.is_set),
    ):
        Image.fromarray(smooth_image(40, 40)).save(tmp_path / "a.png")
        with pytest.raises(DreamStopped, match="before step 1 of"):
            run()
    assert not (tmp_path / "out" / "a.png").exists()


def test_api_sources_and_results(tiny, photo):
    result = dream_octaves(str(photo), model=tiny, octaves=2, iterations=4, jitter=0, progress=False)
    assert isinstance(result.image, Image.Image) and result.image.size == (72, 56)
    assert [len(losses) for losses in result.losses] == [4, 4]
    assert result.losses[0][-1] > result.losses[0][0]  # ascent raises the objective
    same = reverie.dream(
        Image.open(photo), model=TinyNet(), octaves=2, iterations=4, jitter=0, progress=False
    )
    assert np.array_equal(np.asarray(same), np.asarray(result.image))  # seeded: reproducible


def test_lap_norm_and_guide_run(tiny, photo):
    guide = smooth_image(40, 40, seed=7)
    result = dream_octaves(
        photo, model=tiny, guide=guide, lap_norm=3, octaves=2, iterations=4, progress=False
    )
    assert result.losses[-1][-1] > result.losses[-1][0]


def test_bfloat16_stays_close_to_float32(tiny):
    image = smooth_image(48, 48)
    full = dream_octaves(image, model=tiny, octaves=2, iterations=4, progress=False)
    half = dream_octaves(image, model=TinyNet(), octaves=2, iterations=4, dtype="bfloat16", progress=False)
    difference = np.abs(np.asarray(full.image).astype(float) - np.asarray(half.image))
    assert difference.mean() < 2.0
    assert half.losses[0][0] == pytest.approx(full.losses[0][0], rel=0.05)
