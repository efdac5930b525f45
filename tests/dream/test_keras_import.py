"""Keras InceptionV3 weights in our torchvision-named InceptionV3: activations equal Keras's to 1e-4.

The fixture is made by Keras itself (a dev dependency): InceptionV3(weights=None) with seeded
random kernels and non-trivial batch-norm statistics, saved in the three layouts a user may hold:
Keras 3's legacy HDF5 writer (the published file's layout), the same renamed the way Keras 2
named the published file (`conv2d_1/kernel:0`, byte-string attributes), and Keras 3's
`.weights.h5`. Keras runs on its numpy backend (built on jax.lax, like the JAX backend; checked
equal to it to 1e-5) because building InceptionV3 on the JAX backend takes ~30 s of compiling.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from reverie.deepdream.backbone import build_backbone, load_backbone
from reverie.deepdream.keras_import import keras_layer_order, open_keras_layers
from reverie.errors import ReverieError

SIZE = 139  # small, and still 15x15 at mixed2: the border of every average pool matters
LAYERS = ["mixed2", "mixed3", "mixed4", "mixed5"]
TOLERANCE = 1e-4
# Keras's numpy backend calls np.array(x, copy=False) on its own variables; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def randomize(model, rng: np.random.Generator) -> None:
    """He-scaled kernels and batch-norm statistics that keep activations near unit scale."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            shape = tuple(layer.kernel.shape)
            layer.kernel.assign(rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:3])), shape).astype("float32"))
        elif isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            layer.beta.assign(rng.normal(0.0, 0.2, channels).astype("float32"))
            layer.moving_mean.assign(rng.normal(0.0, 0.2, channels).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, channels).astype("float32"))


def keras2_renamed_copy(source: Path, dest: Path) -> None:
    """The legacy file as Keras 2 named the published one: numbered from 1, `:0` suffixes, bytes
    attributes."""

    def keras2(name: str) -> str:
        if not name.startswith(("conv2d", "batch_normalization")):
            return name
        base, _, number = name.rpartition("_")
        return f"{base}_{int(number) + 1}" if number.isdigit() else f"{name}_1"

    with h5py.File(source, "r") as src, h5py.File(dest, "w") as out:
        names = [str(name) for name in src.attrs["layer_names"]]
        out.attrs["layer_names"] = np.array([keras2(name).encode() for name in names], dtype="S")
        for name in names:
            group = out.create_group(keras2(name))
            weight_names = []
            for weight_name in src[name].attrs["weight_names"]:
                role = str(weight_name).rsplit("/", 1)[-1]
                new_name = f"{keras2(name)}/{role}:0"
                group.create_dataset(new_name, data=src[name][str(weight_name)][()])
                weight_names.append(new_name.encode())
            group.attrs["weight_names"] = np.array(weight_names, dtype="S")


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory) -> dict:
    """Weight files in three layouts and Keras's own activations at LAYERS for one seeded input."""
    folder = tmp_path_factory.mktemp("keras")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_BACKEND", "numpy")
        patch.setenv("KERAS_HOME", str(folder / "home"))  # Keras writes its config there, not in ~
        import keras
        from keras.src.legacy.saving import legacy_h5_format

        assert keras.backend.backend() == "numpy"
        rng = np.random.default_rng(0)
        model = keras.applications.InceptionV3(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
        randomize(model, rng)
        files = {
            "legacy": folder / "inception_v3_notop.h5",
            "keras3": folder / "inception_v3.weights.h5",
            "keras2_names": folder / "inception_v3_keras2_names.h5",
        }
        with h5py.File(files["legacy"], "w") as handle:
            legacy_h5_format.save_weights_to_hdf5_group(handle, model)
        model.save_weights(files["keras3"])
        keras2_renamed_copy(files["legacy"], files["keras2_names"])
        image = rng.uniform(-1.0, 1.0, (1, SIZE, SIZE, 3)).astype("float32")
        probe = keras.Model(model.input, [model.get_layer(name).output for name in LAYERS])
        activations = dict(zip(LAYERS, (np.asarray(a) for a in probe(image))))
    return {"files": files, "image": image, "activations": activations}


def our_activations(model, image: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        features = model.features(torch.from_numpy(image).permute(0, 3, 1, 2), LAYERS)
    return {name: value.permute(0, 2, 3, 1).numpy() for name, value in features.items()}


@pytest.mark.parametrize("layout", ["legacy", "keras2_names", "keras3"])
def test_keras_weights_reproduce_keras_activations(keras_files, layout):
    model = load_backbone("inception_v3", weights=keras_files["files"][layout])
    assert not model.count_include_pad  # Keras's 'same' pooling ignores the padding
    ours = our_activations(model, keras_files["image"])
    for name in LAYERS:
        expected = keras_files["activations"][name]
        assert ours[name].shape == expected.shape
        assert expected.std() > 0.1  # activations of unit scale: the tolerance means something
        assert np.abs(ours[name] - expected).max() < TOLERANCE, name


def test_keras_weights_with_torchvision_pooling_would_not_match(keras_files):
    model = load_backbone("inception_v3", weights=keras_files["files"]["legacy"])
    model.count_include_pad = True
    ours = our_activations(model, keras_files["image"])
    assert np.abs(ours["mixed2"] - keras_files["activations"]["mixed2"]).max() > 100 * TOLERANCE


def test_file_order_is_not_definition_order(keras_files):
    # the Keras file lists the 4th conv of mixed0 before its 1st: mapping by definition order would fail
    model = build_backbone("inception_v3")
    conv_order = [name for name in keras_layer_order(model) if name.endswith(".conv")]
    definition_order = [name for name, _ in model.named_modules() if name.endswith(".conv")]
    assert sorted(conv_order) == sorted(definition_order) and conv_order != definition_order
    assert conv_order[5] == "Mixed_5b.branch3x3dbl_1.conv"
    with open_keras_layers(keras_files["files"]["legacy"]) as layers:
        kernels = [layer for layer in layers if layer.kind == "conv"]
    assert len(kernels) == len(conv_order) == 94


def write_legacy_file(path: Path, layers: list[tuple[str, dict[str, tuple[int, ...]]]]) -> Path:
    """A legacy-layout Keras file of zeros (never written, so it takes no space) with the given layers."""
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = np.array([name.encode() for name, _ in layers], dtype="S")
        for name, weights in layers:
            group = handle.create_group(name)
            for role, shape in weights.items():
                group.create_dataset(f"{name}/{role}:0", shape=shape, dtype="float32", fillvalue=0.0)
            names = [f"{name}/{role}:0".encode() for role in weights]
            group.attrs["weight_names"] = np.array(names, dtype="S")
    return path


def zero_layers() -> list[tuple[str, dict[str, tuple[int, ...]]]]:
    """Every conv and batch norm of our InceptionV3 as Keras would list them, with Keras's shapes."""
    model = build_backbone("inception_v3")
    modules = dict(model.named_modules())
    layers = []
    for index, name in enumerate(keras_layer_order(model)):
        module = modules[name]
        if isinstance(module, torch.nn.Conv2d):
            out_channels, in_channels, height, width = module.weight.shape
            layers.append((f"conv2d_{index}", {"kernel": (height, width, in_channels, out_channels)}))
        elif isinstance(module, torch.nn.BatchNorm2d):
            roles = ("beta", "moving_mean", "moving_variance")
            layers.append((f"batch_normalization_{index}", {role: (module.num_features,) for role in roles}))
    return layers


def test_with_top_file_loads_with_its_classifier_dropped(tmp_path):
    layers = zero_layers() + [("predictions", {"kernel": (2048, 1000), "bias": (1000,)})]
    model = load_backbone("inception_v3", weights=write_legacy_file(tmp_path / "top.h5", layers))
    assert float(model.Mixed_7c.branch_pool.bn.weight.min()) == 1.0  # gamma = 1: Keras has no BN scale
    assert float(model.Mixed_7c.branch_pool.conv.weight.abs().max()) == 0.0


def test_bad_keras_files_are_refused_in_one_line(tmp_path):
    layers = zero_layers()
    first_conv = layers[0][0]
    cases = {
        "missing layer": (write_legacy_file(tmp_path / "short.h5", layers[1:]), "conv layers"),
        "wrong shape": (
            write_legacy_file(tmp_path / "shape.h5", [(first_conv, {"kernel": (3, 3, 32, 3)})] + layers[1:]),
            "(3, 3, 32, 3)",
        ),
        "not hdf5": (tmp_path / "text.h5", "Keras HDF5"),
        "absent": (tmp_path / "absent.h5", "does not exist"),
    }
    cases["not hdf5"][0].write_text("hello")
    for case, (path, expected) in cases.items():
        with pytest.raises(ReverieError) as error:
            load_backbone("inception_v3", weights=path)
        message = str(error.value)
        assert "\n" not in message and str(path) in message and expected in message, case


def tampered_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Small Keras files whose first kernel is something a weight file must not be, and what the
    refusal says about each."""
    layers = zero_layers()
    first = layers[0][0]
    shape = layers[0][1]["kernel"]
    key = f"{first}/{first}/kernel:0"
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle.create_dataset("kernel", shape=shape, dtype="float32", fillvalue=0.0)
    raw = tmp_path / "kernel.raw"
    raw.write_bytes(b"\0" * 4 * int(np.prod(shape)))

    def virtual(handle):
        layout = h5py.VirtualLayout(shape=shape, dtype="float32")
        layout[...] = h5py.VirtualSource(str(other), "kernel", shape=shape)
        handle.create_virtual_dataset(key, layout, fillvalue=0.0)

    def external_storage(handle):
        handle.create_dataset(key, shape=shape, dtype="float32", external=[(str(raw), 0, raw.stat().st_size)])

    huge = (60000, 60000, 1, 1)  # 14 GB of float32: a fill value declared in a few bytes
    changes = {
        "huge": (lambda h: h.create_dataset(key, shape=huge, dtype="float32"), "(60000, 60000, 1, 1)"),
        "external link": (lambda h: h.__setitem__(key, h5py.ExternalLink(str(other), "kernel")), "to file"),
        "soft link": (lambda h: h.__setitem__(key, h5py.SoftLink("/elsewhere")), "a link to /elsewhere"),
        "virtual": (virtual, "is a virtual dataset"),
        "external storage": (external_storage, "is stored in external files"),
        "integers": (lambda h: h.create_dataset(key, shape=shape, dtype="int32"), "holds int32 values"),
    }
    files = {}
    for case, (change, message) in changes.items():
        path = write_legacy_file(tmp_path / f"{case.replace(' ', '_')}.h5", layers)
        with h5py.File(path, "r+") as handle:
            del handle[key]
            change(handle)
        files[case] = (path, message)
    return files


def test_every_dataset_is_checked_before_any_is_read(tmp_path, monkeypatch):
    """A tiny file declaring a 60000 x 60000 kernel (14 GB), links to other files, virtual datasets,
    external raw storage, integers: each refused in one line, and no weight read before that."""
    files = tampered_files(tmp_path)

    def no_read(*args, **kwargs):
        raise AssertionError("a dataset was read before every dataset was checked")

    for method in ("__getitem__", "__array__", "read_direct"):
        monkeypatch.setattr(h5py.Dataset, method, no_read)
    for case, (path, message) in files.items():
        with pytest.raises(ReverieError) as error:
            load_backbone("inception_v3", weights=path)
        text = str(error.value)
        assert "\n" not in text and str(path) in text and message in text, (case, text)
