"""The dream loop on tiny seeded networks: the book's step and octaves against independent
references, tiling, jitter, colors, presets, option checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

import reverie
from reverie.dream.dream import (
    BOOK_LAYERS,
    DreamOptions,
    Engine,
    PixelStep,
    ascend,
    dream,
    dream_octaves,
    keep_chroma,
    lap_normalize,
    objective_for,
    resolve_options,
)
from reverie.dream.images import load_image
from reverie.errors import ReverieError

from .conftest import CircularNet, TinyNet, smooth_image

CPU = torch.device("cpu")
TINY_BOOK_LAYERS = {"b": 0.02, "c": 0.3, "d": 0.2}  # the book's weights / 10: losses below max_loss


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


def engine_and_objective(net, preset=None, **options):
    opts = resolve_options(preset, progress=False, **options)
    engine = Engine(net, CPU, torch.float32)
    return engine, objective_for(engine, opts), opts


def test_one_book_step_equals_an_independent_reference(tiny):
    engine, objective, opts = engine_and_objective(tiny, "book", layers=TINY_BOOK_LAYERS, iterations=1)
    x = torch.from_numpy(smooth_image(48, 40)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    stepped, losses = ascend(engine, objective, x.clone(), opts, opts.step, torch.Generator())
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


@pytest.mark.parametrize("phase", [(0, 0), (8, 24)])
def test_tiled_gradients_equal_untiled(tiny, phase):
    engine, objective, _ = engine_and_objective(tiny, "book", layers=TINY_BOOK_LAYERS)
    x = torch.randn(1, 3, 96, 80, generator=torch.Generator().manual_seed(1))
    loss, grad = engine.loss_and_gradient(objective, x)
    tiled_loss, tiled_grad = engine.tiled_loss_and_gradient(objective, x, tile=32, margin=16, phase=phase)
    assert tiled_loss == pytest.approx(loss, rel=1e-5)
    assert torch.allclose(tiled_grad, grad, atol=1e-5 * grad.abs().max().item())
    _, no_margin = engine.tiled_loss_and_gradient(objective, x, tile=32, margin=0, phase=phase)
    assert not torch.allclose(no_margin, grad, atol=1e-2 * grad.abs().max().item())  # the margin matters


def test_tiled_dream_equals_untiled_dream(tiny):
    image = smooth_image(64, 88)
    plain = dream_octaves(image, model=tiny, jitter=0, octaves=2, iterations=3, progress=False)
    tiled = dream_octaves(
        image, model=tiny, jitter=0, octaves=2, iterations=3, tile=24, tile_margin=16, progress=False
    )
    assert np.abs(np.asarray(plain.image).astype(int) - np.asarray(tiled.image)).max() <= 1


def test_jitter_roll_is_undone():
    """On a roll-equivariant net the objective ignores rolls, so jittered steps equal plain ones."""
    net = CircularNet()
    x = torch.randn(1, 3, 20, 24, generator=torch.Generator().manual_seed(2)) * 0.5
    common = {"layers": {"conv2": 1.0}, "border": 0, "reduction": "half_sum", "iterations": 3}
    engine, objective, plain = engine_and_objective(net, **common, jitter=0)
    jittered = dataclasses.replace(plain, jitter=7)
    a, _ = ascend(engine, objective, x.clone(), plain, plain.step, torch.Generator().manual_seed(0))
    b, _ = ascend(engine, objective, x.clone(), jittered, jittered.step, torch.Generator().manual_seed(0))
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.equal(a, x)


def test_keep_colors_keeps_the_input_chroma(tiny):
    image = smooth_image(56, 72)
    kept = dream_octaves(
        image, model=tiny, keep_colors=True, octaves=2, iterations=6, step=0.05, progress=False
    )
    free = dream_octaves(
        image, model=tiny, keep_colors=False, octaves=2, iterations=6, step=0.05, progress=False
    )

    def chroma(pil):
        return np.asarray(pil.convert("YCbCr"), dtype=np.float64)[..., 1:]

    source = chroma(Image.fromarray(image))
    unclipped = ((np.asarray(kept.image) > 0) & (np.asarray(kept.image) < 255)).all(
        -1
    )  # clipping shifts chroma
    assert unclipped.mean() > 0.5
    assert np.abs(chroma(kept.image) - source)[unclipped].mean() < 0.5
    assert np.abs(chroma(free.image) - source).mean() > 5.0
    luminance = np.asarray(kept.image.convert("L"), dtype=np.float64)
    assert np.abs(luminance - np.asarray(Image.fromarray(image).convert("L"))).mean() > 2.0  # it did dream


def test_keep_chroma_replaces_only_chroma():
    generator = torch.Generator().manual_seed(3)
    a, b = torch.rand(1, 3, 4, 5, generator=generator), torch.rand(1, 3, 4, 5, generator=generator)
    assert torch.allclose(keep_chroma(a, a), a, atol=1e-5)
    mixed = keep_chroma(a, b)
    luma = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
    assert torch.allclose((mixed * luma).sum(1), (a * luma).sum(1), atol=1e-5)


def test_presets_resolve_as_specified_and_explicit_options_win():
    book = resolve_options("book")
    assert (book.model, dict(book.layers), book.reduction, book.border) == (
        "inception_v3",
        BOOK_LAYERS,
        "book",
        2,
    )
    assert (book.octaves, book.octave_scale, book.iterations, book.step, book.max_loss) == (
        3,
        1.4,
        20,
        0.01,
        10.0,
    )
    assert (book.jitter, book.tile, book.lap_norm, book.clip) == (0, None, 0, False)
    # reproductions run in float32 whatever the hardware, unless asked otherwise
    assert {resolve_options(name).dtype for name in ("book", "keras-io", "google")} == {"float32"}
    assert resolve_options("book", dtype="bfloat16").dtype == "bfloat16"
    assert resolve_options().dtype == "auto"
    keras = resolve_options("keras-io")
    assert dict(keras.layers) == {"mixed4": 1.0, "mixed5": 1.5, "mixed6": 2.0, "mixed7": 2.5}
    assert keras.max_loss == 15.0 and keras.step == 0.01 and keras.iterations == 20
    google = resolve_options("google")
    assert (google.model, dict(google.layers), google.reduction, google.border) == (
        "googlenet",
        {"inception4c": 1.0},
        "half_sum",
        0,
    )
    assert (google.jitter, google.step, google.octaves, google.iterations, google.clip) == (
        32,
        PixelStep(1.5),
        4,
        10,
        True,
    )
    mixed = resolve_options("book", iterations=5, layers="mixed4", jitter=None)
    assert (mixed.iterations, dict(mixed.layers), mixed.jitter, mixed.max_loss) == (
        5,
        {"mixed4": 1.0},
        0,
        10.0,
    )
    assert resolve_options() == DreamOptions()
    other_model = resolve_options("book", model="efficientnet_lite0")
    assert other_model.layers is None and other_model.max_loss is None  # that model's own layers
    assert other_model.iterations == 20 and other_model.reduction == "book"
    assert dict(resolve_options("book", model="inception_v3").layers) == BOOK_LAYERS


def test_channels_join_or_replace_the_layers():
    assert dict(resolve_options(channels="b:1,2").layers) == {"b": 1.0}
    both = resolve_options(layers="c:2", channels={"b": [1]})
    assert dict(both.layers) == {"c": 2.0, "b": 1.0} and dict(both.channels) == {"b": [1]}


def test_google_step_is_one_and_a_half_pixel_levels(tiny):
    engine, objective, opts = engine_and_objective(tiny, "google", layers={"c": 1.0}, jitter=0, iterations=1)
    assert engine.input_per_pixel_level == pytest.approx(2 / 255)
    x = torch.from_numpy(smooth_image(40, 40)).permute(2, 0, 1)[None].float() / 255 * 0.5 - 0.25  # mid-range
    stepped, _ = ascend(engine, objective, x.clone(), opts, 1.5 * 2 / 255, torch.Generator())
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


@pytest.mark.parametrize(
    "options, message",
    [
        ({"iterations": -1}, "iterations must be zero or positive"),
        ({"octaves": 0}, "octaves must be positive"),
        ({"step": 0.0}, "step must be positive"),
        ({"tile": 0}, "tile must be positive"),
        ({"octave_scale": 1.0}, "octave scale must be above 1"),
        ({"jitter": -2}, "jitter must be zero or positive"),
        ({"preset": "dreamy"}, "unknown preset 'dreamy'"),
        ({"colour": True}, "unknown dream option 'colour'"),
        ({"reduction": "max"}, "unknown reduction"),
        ({"layers": "c", "channels": "c:99"}, "channel 99 is out of range for layer c"),
        ({"layers": "zz"}, "unknown layer 'zz'"),
    ],
)
def test_bad_options_are_refused(tiny, options, message):
    with pytest.raises(ReverieError, match=message):
        dream(smooth_image(32, 32), model=tiny, progress=False, **options)


def test_api_sources_and_results(tiny, photo):
    result = dream_octaves(str(photo), model=tiny, octaves=2, iterations=4, jitter=0, progress=False)
    assert isinstance(result.image, Image.Image) and result.image.size == (72, 56)
    assert [len(losses) for losses in result.losses] == [4, 4]
    assert result.losses[0][-1] > result.losses[0][0]  # ascent raises the objective
    same = reverie.dream(
        Image.open(photo), model=TinyNet(), octaves=2, iterations=4, jitter=0, progress=False
    )
    assert np.array_equal(np.asarray(same), np.asarray(result.image))  # seeded: reproducible


def test_lap_normalize_is_scale_free_and_keeps_shape():
    g = torch.randn(1, 3, 37, 50, generator=torch.Generator().manual_seed(4))
    out = lap_normalize(g, 4)
    assert out.shape == g.shape and torch.isfinite(out).all()
    assert torch.allclose(lap_normalize(g * 1000, 4), out, atol=1e-4)


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


def test_loaded_image_tensor_and_engine_stay_float32(tiny, photo):
    engine, objective, _ = engine_and_objective(tiny, dtype="bfloat16")
    x = engine.to_input(load_image(photo)[None])
    _, grad = Engine(tiny, CPU, torch.bfloat16).loss_and_gradient(objective, x)
    assert grad.dtype == torch.float32 and grad.shape == x.shape


@pytest.fixture(scope="module")
def lite0():
    from reverie.dream.backbone import load_backbone

    return load_backbone("efficientnet_lite0")  # the real ImageNet weights, installed with reverie


@pytest.fixture(scope="module")
def hopper() -> torch.Tensor:
    import matplotlib.cbook

    return load_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def test_a_short_dream_with_real_weights_raises_the_objective(lite0, hopper):
    engine, objective, _ = engine_and_objective(lite0, layers="block10")
    small = load_image(hopper.permute(1, 2, 0).numpy(), max_size=96)
    before, _ = engine.loss_and_gradient(objective, engine.to_input(small[None]))
    result = dream_octaves(
        small.permute(1, 2, 0).numpy(), model=lite0, layers="block10", octaves=1, iterations=3, progress=False
    )
    after, _ = engine.loss_and_gradient(objective, engine.to_input(load_image(result.image)[None]))
    assert after > 1.1 * before


def test_tiles_follow_the_whole_images_pixel_grid(lite0, hopper):
    """EfficientNet pads like TensorFlow ('same', depending on the input size): windows must sit on
    the whole image's grid (171 px wide is odd at every level) for tiled gradients to match."""
    engine, objective, _ = engine_and_objective(lite0, layers="block5")
    x = engine.to_input(load_image(hopper.permute(1, 2, 0).numpy(), max_size=200)[None])
    loss, grad = engine.loss_and_gradient(objective, x)
    tiled_loss, tiled_grad = engine.tiled_loss_and_gradient(objective, x, tile=64, margin=64, phase=(16, 32))
    assert tiled_loss == pytest.approx(loss, rel=1e-5)
    assert ((tiled_grad - grad).norm() / grad.norm()).item() < 1e-4
