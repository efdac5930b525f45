"""Per-step transforms: jitter undone through autograd, Laplacian normalization, colors kept, the
default list from the options, and a user's own list replacing it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reverie.deepdream.dreamer import dream_octaves
from reverie.deepdream.dreamtypes import StepContext
from reverie.deepdream.octaves import ascend
from reverie.deepdream.options import DreamOptions, transforms_of
from reverie.deepdream.transforms import (
    Clip,
    Jitter,
    KeepColors,
    LapNormalize,
    Transform,
    keep_chroma,
    lap_normalize,
)
from reverie.errors import ReverieError
from reverie.options import resolve

from .conftest import CircularNet, cpu_plan, smooth_image, step_context


def test_jitter_roll_is_undone():
    """On a roll-equivariant net the objective ignores rolls, so jittered steps equal plain ones."""
    net = CircularNet()
    x = torch.randn(1, 3, 20, 24, generator=torch.Generator().manual_seed(2)) * 0.5
    common = {"layers": {"conv2": 1.0}, "border": 0, "reduction": "half_sum", "iterations": 3}
    plain = cpu_plan(net, **common, jitter=0)
    jittered = cpu_plan(net, **common, jitter=7)
    a, _ = ascend(plain, x.clone(), step_context(plain, x))
    b, _ = ascend(jittered, x.clone(), step_context(jittered, x))
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


def test_lap_normalize_is_scale_free_and_keeps_shape():
    g = torch.randn(1, 3, 37, 50, generator=torch.Generator().manual_seed(4))
    out = lap_normalize(g, 4)
    assert out.shape == g.shape and torch.isfinite(out).all()
    assert torch.allclose(lap_normalize(g * 1000, 4), out, atol=1e-4)


def test_the_default_transforms_come_from_the_options():
    assert transforms_of(resolve(DreamOptions)) == [Jitter(32), Clip()]
    assert transforms_of(resolve(DreamOptions, preset="book")) == []
    everything = transforms_of(resolve(DreamOptions, {"jitter": 8, "lap_norm": 3, "keep_colors": True}))
    assert [type(t) for t in everything] == [Jitter, LapNormalize, KeepColors, Clip]
    assert everything[:2] == [Jitter(8), LapNormalize(3)]


def test_a_list_without_jitter_equals_jitter_zero(tiny):
    image = smooth_image(48, 56)
    listed = dream_octaves(image, model=tiny, transforms=[Clip()], octaves=2, iterations=3, progress=False)
    options = dream_octaves(image, model=tiny, jitter=0, octaves=2, iterations=3, progress=False)
    assert np.array_equal(np.asarray(listed.image), np.asarray(options.image))
    jittered = dream_octaves(image, model=tiny, octaves=2, iterations=3, progress=False)
    assert not np.array_equal(np.asarray(jittered.image), np.asarray(options.image))


class Recorder:
    """Records each call of its three transforms; the input one flips the image, the gradient one doubles
    the gradient (which the step's normalization undoes)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, tuple[int, ...]]] = []

    def seen(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:  # a plain function: input
        self.calls.append(("input", context.octave, tuple(x.shape[-2:])))
        assert x.requires_grad
        return x.flip(-1)  # differentiable: the gradient comes back flipped

    def transforms(self) -> list:
        recorder = self

        class Gradient(Transform):
            stage = "gradient"

            def __call__(self, grad: torch.Tensor, context: StepContext) -> torch.Tensor:
                recorder.calls.append(("gradient", context.octave, tuple(grad.shape[-2:])))
                return grad * 2

        class Image(Transform):
            stage = "image"

            def __call__(self, x: torch.Tensor, context: StepContext) -> torch.Tensor:
                recorder.calls.append(("image", context.octave, tuple(x.shape[-2:])))
                assert context.original.shape == x.shape and context.original01.min() >= 0
                return x

        return [Image(), Gradient(), self.seen]  # each stage runs its own, whatever the list's order


def test_a_custom_transform_is_applied_at_each_hook(tiny):
    recorder = Recorder()
    image = smooth_image(40, 56)
    transforms = recorder.transforms()
    result = dream_octaves(image, model=tiny, transforms=transforms, octaves=2, iterations=2, progress=False)
    small, large = (28, 40), (40, 56)
    step = [("input",), ("gradient",), ("image",)]
    expected = []
    for octave, shape in enumerate((small, large)):
        steps = [(kind[0], octave, shape) for kind in step * 2]
        expected += [*steps, ("image", octave, shape)]  # and after the detail is put back
    assert recorder.calls == expected
    # the flipped input: the same as dreaming the mirrored image and mirroring back
    mirrored = dream_octaves(
        image[:, ::-1].copy(), model=tiny, transforms=[], octaves=2, iterations=2, progress=False
    )
    difference = np.abs(np.asarray(result.image)[:, ::-1].astype(int) - np.asarray(mirrored.image))
    assert difference.max() <= 1


def test_transforms_and_their_options_together_are_refused(tiny):
    with pytest.raises(ReverieError, match="transforms= replaces jitter, lap_norm, keep_colors, clip"):
        dream_octaves(smooth_image(32, 32), model=tiny, transforms=[Clip()], jitter=4, progress=False)
    with pytest.raises(ReverieError, match="transforms= takes transforms from reverie.transforms"):
        dream_octaves(smooth_image(32, 32), model=tiny, transforms=[3], progress=False)

    class Sideways(Transform):
        stage = "sideways"

    with pytest.raises(ReverieError, match="transforms= takes transforms from reverie.transforms"):
        dream_octaves(smooth_image(32, 32), model=tiny, transforms=[Sideways()], progress=False)
    with pytest.raises(ReverieError, match="jitter must be zero or a positive integer"):
        Jitter(-1)


def test_one_transform_is_taken_as_a_list_of_one(tiny):
    image = smooth_image(40, 40)
    one = dream_octaves(image, model=tiny, transforms=Jitter(3), octaves=1, iterations=2, progress=False)
    listed = dream_octaves(image, model=tiny, transforms=[Jitter(3)], octaves=1, iterations=2, progress=False)
    assert np.array_equal(np.asarray(one.image), np.asarray(listed.image))
    with pytest.raises(ReverieError, match="--jitter must be zero or a positive integer"):
        Jitter(-1)


def test_one_protocol_for_dreams_and_visualizations(tiny):
    """The same transforms go into a dream and a visualization: a robustness transform dreams, a
    jitter renders; the transforms a visualization cannot use are refused in one line."""
    import reverie
    from reverie.deepdream.transforms import Pad, Shift, robust_transforms

    image = smooth_image(48, 48)
    shifted = dream_octaves(image, model=tiny, transforms=[Pad(4), Shift(4)], octaves=1, iterations=2)
    assert shifted.image.size == (48, 48)
    layer = tiny.layer_table()[0].name
    quick = {"size": 32, "steps": 2, "progress": False}
    jittered = reverie.visualize(tiny, layer, transforms=[Jitter(2), *robust_transforms()], **quick)
    assert jittered.tensor.shape == (1, 3, 32, 32)
    with pytest.raises(ReverieError, match="a visualization takes input transforms"):
        reverie.visualize(tiny, layer, transforms=[Jitter(2), Clip()], **quick)
    with pytest.raises(ReverieError, match="transforms= takes transforms from reverie.transforms"):
        reverie.visualize(tiny, layer, transforms=["roll"], **quick)


def test_the_options_say_one_thing_beside_a_transform_list():
    """With transforms= the options it replaces are off, so a resolved DreamOptions never says
    jitter=32 while the dream does not jitter; transforms_of is where options become transforms."""
    from reverie.deepdream.options import transforms_of

    given = resolve(DreamOptions, {"transforms": [LapNormalize(2)]})
    assert (given.jitter, given.lap_norm, given.keep_colors, given.clip) == (0, 0, False, False)
    assert transforms_of(given) == [LapNormalize(2)]
    assert transforms_of(resolve(DreamOptions, {"jitter": 4})) == [Jitter(4), Clip()]
