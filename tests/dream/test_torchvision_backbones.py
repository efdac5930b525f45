"""VGG16, VGG19 and ResNet50: torchvision's weight files load unchanged with strict keys (checked
against key lists of the published layouts in tests/data), their layer tables, and batch-norm folding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import DATA, randomize_batch_norms, run_cli

from reverie.deepdream import resnet, vgg
from reverie.deepdream.backbone import available_models, build_backbone, fold_batchnorm, meta_backbone
from reverie.errors import ReverieError

MODULES = {"vgg16": vgg, "vgg19": vgg, "resnet50": resnet}
DROPPED = {"vgg16": "classifier.", "vgg19": "classifier.", "resnet50": "fc."}


def published(model_name: str, path: Path) -> Path:
    """A weight file with every key, shape and dtype of torchvision's published one (each tensor a
    broadcast zero, so the file stays small), written to `path`."""
    listing = json.loads((DATA / f"torchvision_{model_name}_state_dict.json").read_text())
    assert len(listing["entries"]) == listing["count"]
    state = {
        key: torch.zeros((), dtype=getattr(torch, dtype)).expand(shape)
        for key, shape, dtype in listing["entries"]
    }
    torch.save(state, path)
    return path


@pytest.mark.parametrize("model_name", ["vgg16", "vgg19", "resnet50"])
def test_published_file_loads_strict_after_dropping_the_classifier(model_name, tmp_path):
    assert model_name in available_models()
    path = published(model_name, tmp_path / "weights.pth")
    keys = set(torch.load(path, weights_only=True))
    model = build_backbone(model_name)
    assert keys - set(model.state_dict()) == {key for key in keys if key.startswith(DROPPED[model_name])}
    assert set(model.state_dict()) <= keys
    MODULES[model_name].load_weights(model, path)
    assert all(float(tensor.abs().sum()) == 0 for tensor in model.state_dict().values())
    # the random-weight model's layer table is the meta architecture's
    assert model.layer_table() == meta_backbone(model_name).layer_table()


@pytest.mark.parametrize("model_name", ["vgg16", "resnet50"])
def test_a_missing_or_misshapen_key_is_refused_in_one_line(model_name, tmp_path):
    path = published(model_name, tmp_path / "weights.pth")
    state = torch.load(path, weights_only=True)
    first = next(iter(state))
    for problem, broken in {
        "missing": {k: v for k, v in state.items() if k != first},
        "wrong shape": {**state, first: torch.zeros(2, 3, 3, 3)},
    }.items():
        torch.save(broken, tmp_path / "broken.pth")
        with pytest.raises(ReverieError) as error:
            MODULES[model_name].load_weights(build_backbone(model_name), tmp_path / "broken.pth")
        assert problem in str(error.value) and first in str(error.value) and "\n" not in str(error.value)


def test_a_file_without_batch_norm_counters_loads_and_gets_zero_counters(tmp_path):
    state = torch.load(published("resnet50", tmp_path / "weights.pth"), weights_only=True)
    old = {key: value for key, value in state.items() if not key.endswith(".num_batches_tracked")}
    assert len(old) == len(state) - 53  # 53 batch norms in ResNet50
    torch.save(old, tmp_path / "old.pth")
    model = build_backbone("resnet50")
    resnet.load_weights(model, tmp_path / "old.pth")
    counters = [value for key, value in model.state_dict().items() if key.endswith(".num_batches_tracked")]
    assert counters and all(int(value) == 0 for value in counters)


def test_layer_tables_keras_and_torchvision_names(capsys):
    table = {info.name: info for info in meta_backbone("vgg16").layer_table()}
    assert len(table) == 18 and table["block5_conv3"].channels == 512 and table["block5_conv3"].stride == 16
    assert table["block1_pool"].aliases == ("features.4",) and table["block5_pool"].stride == 32
    assert meta_backbone("vgg16").resolve_layer("features.29") == "block5_conv3"
    assert len(meta_backbone("vgg19").layer_table()) == 21
    rows = {info.name: info for info in meta_backbone("resnet50").layer_table()}
    assert len(rows) == 2 + 16 and rows["layer4.2"].channels == 2048 and rows["layer4.2"].stride == 32
    assert rows["layer3.5"].aliases == ("conv4_block6_out",) and rows["conv1"].stride == 2
    code, out, err = run_cli(["layers", "resnet50"], capsys)
    assert code == 0, err
    assert "conv5_block3_out" in out and "layer1.0" in out


def test_resnet50_folds_its_batch_norms_exactly():
    torch.manual_seed(0)
    model = build_backbone("resnet50")
    randomize_batch_norms(model, shift=0.2)
    model.eval().requires_grad_(False)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(1, 3, 64, 64)
    layers = ["conv1", "layer2.0", "layer4.2"]
    ours, theirs = folded.features(x, layers), model.features(x, layers)
    for layer in layers:
        scale = theirs[layer].abs().max()
        assert (ours[layer] - theirs[layer]).abs().max() <= 1e-4 * scale, layer
