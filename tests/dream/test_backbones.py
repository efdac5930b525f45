"""The dream backbones: torchvision keys and shapes, layer tables, weight files, offline errors,
ImageNet check."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DATA, randomize_batch_norms
from matplotlib import cbook
from PIL import Image

import reverie
from reverie.deepdream import efficientnet_lite, googlenet, inception_v3
from reverie.deepdream.backbone import Backbone, build_backbone, fold_batchnorm, load_backbone
from reverie.deepdream.dreamer import load_dreamer
from reverie.errors import ReverieError

MODULES = {"inception_v3": inception_v3, "googlenet": googlenet}
DROPPED = {"inception_v3": ("AuxLogits.", "fc."), "googlenet": ("aux1.", "aux2.", "fc.")}
GRACE_HOPPER_CLASS = 652  # ImageNet "military uniform"


def fixture_state(model_name: str) -> dict[str, torch.Tensor]:
    """Zeros with every key, shape and dtype of torchvision's published weight file."""
    listing = json.loads((DATA / f"torchvision_{model_name}_state_dict.json").read_text())
    assert len(listing["entries"]) == listing["count"]
    return {key: torch.zeros(shape, dtype=getattr(torch, dtype)) for key, shape, dtype in listing["entries"]}


def saved(state: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save(state, path)
    return path


@pytest.mark.parametrize("model_name", ["inception_v3", "googlenet"])
def test_torchvision_file_loads_strict_after_dropping_classifiers(model_name, tmp_path):
    state = fixture_state(model_name)
    model = build_backbone(model_name)
    module_keys = set(model.state_dict())
    # exactly the auxiliary and final classifiers are left out of the backbone
    assert set(state) - module_keys == {key for key in state if key.startswith(DROPPED[model_name])}
    assert module_keys <= set(state)
    MODULES[model_name].load_weights(model, saved(state, tmp_path / "weights.pth"))
    assert all(float(tensor.abs().sum()) == 0 for tensor in model.state_dict().values())


@pytest.mark.parametrize("model_name", ["inception_v3", "googlenet"])
def test_wrong_shape_missing_or_unknown_key_is_refused_in_one_line(model_name, tmp_path):
    state = fixture_state(model_name)
    first_key = next(iter(state))
    cases = {
        "wrong shape": {**state, first_key: torch.zeros(5, 3, 3, 3)},
        "missing": {key: value for key, value in state.items() if key != first_key},
        "unexpected": {**state, "head.weight": torch.zeros(2)},
    }
    for problem, broken in cases.items():
        model = build_backbone(model_name)
        with pytest.raises(ReverieError) as error:
            MODULES[model_name].load_weights(model, saved(broken, tmp_path / "broken.pth"))
        message = str(error.value)
        assert "\n" not in message and problem in message and "--weights" in message
        assert (first_key if problem != "unexpected" else "head.weight") in message


def test_unreadable_weight_file_is_refused_in_one_line(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    for path in (junk, tmp_path / "absent.pth"):
        with pytest.raises(ReverieError) as error:
            inception_v3.load_weights(build_backbone("inception_v3"), path)
        assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_inception_layer_table_without_weights():
    table = {info.name: info for info in reverie.list_layers("inception_v3")}
    assert list(table)[:7] == [
        "Conv2d_1a_3x3",
        "Conv2d_2a_3x3",
        "Conv2d_2b_3x3",
        "maxpool1",
        "Conv2d_3b_1x1",
        "Conv2d_4a_3x3",
        "maxpool2",
    ]
    keras_channels = [256, 288, 288, 768, 768, 768, 768, 768, 1280, 2048, 2048]
    keras_strides = [8, 8, 8, 16, 16, 16, 16, 16, 32, 32, 32]
    mixed = [name for name in table if name.startswith("Mixed_")]
    assert [table[name].aliases for name in mixed] == [(f"mixed{i}",) for i in range(11)]
    assert [table[name].channels for name in mixed] == keras_channels
    assert [table[name].stride for name in mixed] == keras_strides
    assert (table["Conv2d_1a_3x3"].channels, table["Conv2d_1a_3x3"].stride) == (32, 2)
    with torch.device("meta"):  # shapes only: no weights, no arithmetic
        model = build_backbone("inception_v3").eval()
    assert model.resolve_layer("mixed3") == "Mixed_6a"
    with pytest.raises(ReverieError, match="mixed10"):
        model.resolve_layer("mixed11")
    assert model.min_input_size(["mixed10"]) == 75  # Keras's documented minimum for InceptionV3


def test_googlenet_and_efficientnet_layer_tables():
    table = {info.name: (info.channels, info.stride) for info in reverie.list_layers("googlenet")}
    assert list(table) == [
        "conv1",
        "maxpool1",
        "conv2",
        "conv3",
        "maxpool2",
        "inception3a",
        "inception3b",
        "maxpool3",
        "inception4a",
        "inception4b",
        "inception4c",
        "inception4d",
        "inception4e",
        "maxpool4",
        "inception5a",
        "inception5b",
    ]
    assert table["inception3b"] == (480, 8) and table["inception4c"] == (512, 16)
    assert table["inception4e"] == (832, 16) and table["inception5b"] == (1024, 32)
    lite = {info.name: (info.channels, info.stride) for info in reverie.list_layers("efficientnet_lite0")}
    assert list(lite) == ["stem", *[f"block{i}" for i in range(16)], "head"]
    assert lite["stem"] == (32, 2) and lite["block2"] == (24, 4) and lite["block8"] == (112, 16)
    assert lite["block15"] == (320, 32) and lite["head"] == (1280, 32)


def test_keras_pooling_flag_changes_only_border_averages():
    model = build_backbone("inception_v3").eval()
    block = model.Mixed_5b
    x = torch.rand(1, 192, 6, 6)
    with torch.no_grad():
        counted = block.avg_pool(x)
        model.count_include_pad = False
        excluded = block.avg_pool(x)
    assert not model.count_include_pad
    assert torch.allclose(counted[..., 1:-1, 1:-1], excluded[..., 1:-1, 1:-1])
    # a corner averages 4 real pixels: over 9 with the padding counted, over 4 without
    assert torch.allclose(counted[..., 0, 0] * 9 / 4, excluded[..., 0, 0])


def closed_port_url(filename: str) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{filename}"


@pytest.mark.parametrize("model_name", ["inception_v3", "googlenet"])
def test_offline_without_cached_weights_says_what_to_do(model_name, tmp_path, monkeypatch):
    module = MODULES[model_name]
    filename = module.WEIGHTS_URL.rsplit("/", 1)[-1]
    url = closed_port_url(filename)
    monkeypatch.setattr(module, "WEIGHTS_URL", url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(ReverieError) as error:
        load_backbone(model_name)
    message = str(error.value)
    assert "\n" not in message
    assert url in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / filename) in message
    assert "--weights" in message and "--model efficientnet_lite0" in message
    assert not list((tmp_path / "torch" / "hub" / "checkpoints").iterdir())  # no partial file left


def test_inception_default_weights_prefer_cached_torchvision_then_keras(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    keras_file = tmp_path / "keras" / "models" / inception_v3.KERAS_WEIGHTS_FILE
    keras_file.parent.mkdir(parents=True)
    keras_file.touch()
    assert inception_v3.default_weights_path() == keras_file
    torchvision_file = tmp_path / "torch" / "hub" / "checkpoints" / "inception_v3_google-0cc3c7bd.pth"
    saved(fixture_state("inception_v3"), torchvision_file.parent.mkdir(parents=True) or torchvision_file)
    assert inception_v3.default_weights_path() == torchvision_file
    model = load_backbone("inception_v3")  # the cached file, no download
    assert model.count_include_pad and not model.training
    assert not any(parameter.requires_grad for parameter in model.parameters())


def grace_hopper_batch(size: int = 224) -> torch.Tensor:
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    picture = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def test_efficientnet_lite0_packaged_weights_classify_grace_hopper():
    model = load_backbone("efficientnet_lite0")
    with torch.no_grad():
        probabilities = model.classify(grace_hopper_batch()).softmax(-1)[0]
    assert int(probabilities.argmax()) == GRACE_HOPPER_CLASS
    assert abs(float(probabilities[GRACE_HOPPER_CLASS]) - 0.463) < 0.01


def test_efficientnet_preprocess_maps_pixels_and_inverts():
    model = build_backbone("efficientnet_lite0")
    image = torch.tensor([0.0, 127 / 255, 1.0])
    assert torch.allclose(model.preprocess(image), torch.tensor([-127 / 128, 0.0, 1.0]))
    assert torch.allclose(model.deprocess(model.preprocess(image)), image)


def test_tf_same_padding_puts_the_extra_pixel_bottom_right():
    conv = efficientnet_lite.SameConv2d(1, 1, 3, stride=2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # output = the top-left input of each window
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    # input 4, stride 2, kernel 3: 1 pixel of padding in all, on the bottom/right; windows start at 0 and 2
    assert conv(x)[0, 0].tolist() == [[0.0, 2.0], [8.0, 10.0]]
    assert conv(torch.zeros(1, 1, 7, 5)).shape[-2:] == (4, 3)


def calibrated(model_name: str) -> torch.nn.Module:
    """Seeded random weights with batch-norm statistics measured on random images, as trained nets have.

    Default-initialized nets shrink activations layer after layer until bfloat16 rounding is all
    that is left; with measured statistics every layer is normalized and the comparison is meaningful.
    """
    torch.manual_seed(0)
    model = build_backbone(model_name)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # running statistics = plain average over the batches seen
    with torch.no_grad():
        model.train().features(model.preprocess(torch.rand(4, 3, 96, 96)), [model.stage_names()[-1]])
    return model.eval().requires_grad_(False)


@pytest.mark.parametrize(
    "model_name,layer",
    [("inception_v3", "mixed3"), ("googlenet", "inception4c"), ("efficientnet_lite0", "block8")],
)
def test_channels_last_and_bfloat16_autocast_run_forward_and_backward(model_name, layer):
    model = calibrated(model_name)
    image = torch.rand(1, 3, 96, 96)

    def gradient(net, x, bfloat16):
        x = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            net.features(net.preprocess(x), [layer])[layer].float().square().mean().backward()
        return x.grad

    reference = gradient(model, image, False)
    model = model.to(memory_format=torch.channels_last)
    fast = gradient(model, image.contiguous(memory_format=torch.channels_last), False)
    assert torch.allclose(fast, reference, rtol=1e-4, atol=1e-5 * float(reference.abs().max()))
    low = gradient(model, image.contiguous(memory_format=torch.channels_last), True)
    assert torch.isfinite(low).all()
    cosine = torch.nn.functional.cosine_similarity(low.flatten(), reference.flatten(), dim=0)
    assert cosine > 0.8  # bfloat16 keeps 8 bits: measured 0.91-0.93 here, 0.88-0.92 with real weights


@pytest.mark.parametrize("model_name", ["inception_v3", "googlenet", "efficientnet_lite0"])
def test_folding_batch_norm_keeps_every_stage_and_the_input_gradient(model_name):
    torch.manual_seed(0)
    model = build_backbone(model_name)
    randomize_batch_norms(model, shift=0.5)
    model.eval().requires_grad_(False)
    assert model.folds_batchnorm  # so a dreamer folds it
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    # a copy: the original keeps them
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    stages = model.stage_names()

    def run(net):
        image = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(1))
        x = net.preprocess(image).requires_grad_(True)
        features = net.features(x, stages)
        features[stages[len(stages) // 2]].square().mean().backward()  # deeper, random nets' gradients vanish
        return features, x.grad

    expected, expected_grad = run(model)
    got, got_grad = run(folded)
    for stage in stages:
        scale = float(expected[stage].detach().abs().max())
        torch.testing.assert_close(got[stage], expected[stage], rtol=1e-4, atol=1e-5 * scale, msg=stage)
    # as a whole: a deep random net's vanishing gradient (1e-7 here) carries float32 rounding that
    # differs between kernels (inception_v3: 0.43% in L2 on an AVX2 build); a wrong fold moves it by O(1)
    error = float((got_grad - expected_grad).norm() / expected_grad.norm())
    assert error < 1e-2, f"the input gradient moved by {error:.2%} in L2"


def test_a_dreamer_folds_batch_norm_only_where_the_model_says_it_may():
    class Unvouched(Backbone):
        name = "unvouched"

        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.bn = torch.nn.BatchNorm2d(4)

        def named_stages(self):
            return [("out", torch.nn.Sequential(self.conv, self.bn))]

    kept = load_dreamer(Unvouched(), device="cpu").backbone
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in kept.modules())
    folded = load_dreamer(build_backbone("googlenet"), device="cpu").backbone
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
