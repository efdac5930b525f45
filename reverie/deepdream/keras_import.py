"""Read Keras HDF5 weight files into this project's torchvision-named models (InceptionV3).

Two layouts are read with h5py:
- the legacy HDF5 layout of the published `inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5`
  (root attribute `layer_names`, one group per layer, datasets named like `conv2d_1/kernel:0`;
  also inside `model_weights/` of a whole-model `.h5`);
- Keras 3's `.weights.h5` (`layers/conv2d_7/vars/0`, numbered per layer class).

Keras's layer names differ between versions, so nothing is matched by name: weights are mapped
by the order of layers. Keras lists a functional model's layers by depth (the longest path to the
output, deepest first), ties broken by the order a depth-first walk from the output reaches them;
`keras_layer_order` applies the same rule to the traced torch graph, so the n-th convolution (and
n-th batch norm) of the file lands in the torch module Keras would have put it in. Every weight
is mapped and checked: the layer counts and every shape must agree, else one-line ReverieError.

Nothing is read before everything is checked: a tiny HDF5 file may declare a 60000 x 60000 dataset
(14 GB of fill value), so every dataset's shape must be the one its torch module needs, its dtype
floating point, its data inside the file (no external or soft links, no external raw storage, no
virtual dataset reading other files); only then are the weights read, each at its expected size.

Conversions: conv kernels HWIO -> OIHW; Keras's conv2d_bn has no BatchNorm scale, so gamma = 1;
a with-top file's final `Dense` classifier is dropped, as torchvision's `fc` is.

    python -m reverie.deepdream.keras_import FILE.h5          # which torch module each Keras layer feeds
    python -m reverie.deepdream.keras_import FILE.h5 MODEL    # the same for another model than inception_v3
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from reverie.errors import ReverieError, first_line

# weight roles of the Keras 3 `.weights.h5` layout, by layer class and number of variables
KERAS3_ROLES = {
    ("conv2d", 1): ("kernel",),
    ("conv2d", 2): ("kernel", "bias"),
    ("batch_normalization", 3): ("beta", "moving_mean", "moving_variance"),
    ("batch_normalization", 4): ("gamma", "beta", "moving_mean", "moving_variance"),
    ("dense", 1): ("kernel",),
    ("dense", 2): ("kernel", "bias"),
}
KIND_OF_CLASS = {"conv2d": "conv", "batch_normalization": "bn", "dense": "dense"}


@dataclass
class KerasLayer:
    """One Keras layer with weights: its name in the file and its datasets by role ("kernel", "beta",
    ...), not yet read (h5py datasets: their shape and dtype are known, their data is read on demand)."""

    name: str
    weights: dict[str, Any]

    @property
    def kind(self) -> str:
        """One of conv, bn, dense or unknown, told from the weights themselves."""
        if "moving_mean" in self.weights:
            return "bn"
        kernel = self.weights.get("kernel")
        if kernel is not None and kernel.ndim == 4:
            return "conv"
        if kernel is not None and kernel.ndim == 2:
            return "dense"
        return "unknown"


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _role(weight_name: str) -> str:
    """`conv2d_1/kernel:0` -> `kernel`."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _member(group, name: str, path: Path):
    """`group[name]` (`name` may be a/b/c) through hard links only: an external link reads another
    file, a soft link may lead to one; Keras writes neither."""
    import h5py

    node = group
    for part in name.strip("/").split("/"):
        link = node.get(part, getlink=True)
        if link is None:
            raise ReverieError(f"{path}: {name} is listed but missing; give the Keras weight file unchanged")
        if not isinstance(link, h5py.HardLink):
            target = f"file {link.filename}" if isinstance(link, h5py.ExternalLink) else link.path
            raise ReverieError(
                f"{path}: {name} is a link to {target}, not data in the file; give a self-contained "
                "Keras weight file"
            )
        node = node[part]
    return node


def _dataset(group, name: str, path: Path):
    """The dataset `group[name]`, unread, refused unless it holds floating-point data stored in this
    file (not virtual, not in external raw files)."""
    import h5py

    dataset = _member(group, name, path)
    if not isinstance(dataset, h5py.Dataset):
        problem = "is not a dataset"
    elif dataset.is_virtual:
        problem = "is a virtual dataset (its data lives in other files)"
    elif dataset.external:
        problem = "is stored in external files"
    elif dataset.dtype.kind != "f":
        problem = f"holds {dataset.dtype} values, not floating-point weights"
    else:
        return dataset
    raise ReverieError(f"{path}: {name} {problem}; give Keras's InceptionV3 weight file")


def _legacy_layers(root, path: Path) -> list[KerasLayer]:
    """Layers with weights, in the file's layer order (legacy HDF5: the `layer_names` attribute)."""
    layers = []
    for layer_name in map(_text, root.attrs["layer_names"]):
        group = _member(root, layer_name, path)
        weight_names = [_text(name) for name in group.attrs.get("weight_names", [])]
        if weight_names:
            datasets = {_role(name): _dataset(group, name, path) for name in weight_names}
            layers.append(KerasLayer(layer_name, datasets))
    return layers


def _class_and_number(group_name: str) -> tuple[str, int]:
    """`conv2d_7` -> ("conv2d", 7), `conv2d` -> ("conv2d", 0): Keras 3 numbers layers per class in
    model order."""
    match = re.fullmatch(r"(.*?)(?:_(\d+))?", group_name)
    return match.group(1), int(match.group(2) or 0)


def _keras3_layers(layers_group, path: Path) -> list[KerasLayer]:
    """Layers with weights from a `.weights.h5`, in model order within each layer class."""
    layers = []
    for group_name in sorted(layers_group, key=_class_and_number):
        group = _member(layers_group, group_name, path)
        if "vars" not in group:
            continue
        variables = _member(group, "vars", path)
        if len(variables) == 0:
            continue
        layer_class, _ = _class_and_number(group_name)
        roles = KERAS3_ROLES.get((layer_class, len(variables)))
        if roles is None:
            raise ReverieError(
                f"{path}: layer {group_name} ({len(variables)} weights) is not part of an InceptionV3; "
                "give Keras's InceptionV3 weight file"
            )
        datasets = {role: _dataset(variables, str(i), path) for i, role in enumerate(roles)}
        layers.append(KerasLayer(group_name, datasets))
    return layers


@contextmanager
def open_keras_layers(path: Path) -> Iterator[list[KerasLayer]]:
    """Every Keras layer with weights in `path` (legacy `.h5` or Keras 3 `.weights.h5`), in layer
    order, its datasets checked but unread; the file stays open for the block."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ReverieError(f"weight file {path} does not exist; check the path given to --weights")
    try:
        with h5py.File(path, "r") as handle:
            root = _member(handle, "model_weights", path) if "model_weights" in handle else handle
            if "layer_names" in root.attrs:
                yield _legacy_layers(root, path)
                return
            if "layers" in root:
                yield _keras3_layers(_member(root, "layers", path), path)
                return
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:  # RuntimeError: a broken file
        raise ReverieError(
            f"cannot read {path} as a Keras HDF5 weight file ({first_line(exc)}); check --weights"
        ) from None
    raise ReverieError(f"{path} has no Keras layer weights (no layer_names, no layers/); check --weights")


def keras_layer_order(model: nn.Module) -> list[str]:
    """Names of `model`'s leaf modules in the order Keras lists the layers of the same graph.

    The graph is traced with torch.fx (input placeholder to output); one Keras layer per leaf
    module or function call, as in Keras's conv2d_bn (Conv2D, BatchNormalization, Activation).
    """
    graph = fx.Tracer().trace(model)
    (result,) = next(node for node in graph.nodes if node.op == "output").all_input_nodes
    reached: dict[fx.Node, int] = {}

    def walk(node: fx.Node) -> None:
        if node in reached:
            return
        reached[node] = len(reached)
        for parent in node.all_input_nodes:
            walk(parent)

    walk(result)
    depth = {result: 0}
    for node in reversed(graph.nodes):  # graph.nodes is topologically sorted
        if node not in depth:
            continue
        for parent in node.all_input_nodes:
            depth[parent] = max(depth.get(parent, 0), depth[node] + 1)
    ordered = sorted(reached, key=lambda node: (-depth[node], reached[node]))
    return [node.target for node in ordered if node.op == "call_module"]


def _ordered_modules(
    model: nn.Module, order: list[str], kind: type[nn.Module]
) -> list[tuple[str, nn.Module]]:
    modules = dict(model.named_modules())
    return [(name, modules[name]) for name in order if isinstance(modules[name], kind)]


Read = Callable[[], torch.Tensor]  # a weight checked and ready to be read


def _checked(dataset, shape: tuple[int, ...], what: str, path: Path, order: tuple[int, ...] = ()) -> Read:
    """`dataset` (unread) refused unless its shape is `shape`; what reads it (axes in `order`) later."""
    if tuple(dataset.shape) != tuple(shape):
        raise ReverieError(
            f"{path}: {what} has shape {tuple(dataset.shape)}, the model needs {tuple(shape)}; "
            "give Keras's InceptionV3 weight file (inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5)"
        )

    def read() -> torch.Tensor:
        array = np.asarray(dataset[()], dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(array.transpose(order) if order else array))

    return read


def _conv_weights(layer: KerasLayer, name: str, conv: nn.Conv2d, path: Path) -> dict[str, Read]:
    if ("bias" in layer.weights) != (conv.bias is not None):
        raise ReverieError(
            f"{path}: Keras layer {layer.name} and {name} disagree on having a bias; check --weights"
        )
    out_channels, in_channels, height, width = conv.weight.shape
    hwio = (height, width, in_channels, out_channels)
    kernel = _checked(layer.weights["kernel"], hwio, f"{layer.name} kernel", path, order=(3, 2, 0, 1))
    state = {f"{name}.weight": kernel}  # HWIO -> OIHW
    if conv.bias is not None:
        state[f"{name}.bias"] = _checked(layer.weights["bias"], (out_channels,), f"{layer.name} bias", path)
    return state


def _bn_weights(layer: KerasLayer, name: str, bn: nn.BatchNorm2d, path: Path) -> dict[str, Read]:
    shape = (bn.num_features,)
    # conv2d_bn's batch norms have scale=False: gamma 1
    defaults = {"gamma": lambda: torch.ones(shape), "beta": lambda: torch.zeros(shape)}
    state: dict[str, Read] = {}
    for role, key in (
        ("gamma", "weight"),
        ("beta", "bias"),
        ("moving_mean", "running_mean"),
        ("moving_variance", "running_var"),
    ):
        if role in layer.weights:
            state[f"{name}.{key}"] = _checked(layer.weights[role], shape, f"{layer.name} {role}", path)
        elif role in defaults:
            state[f"{name}.{key}"] = defaults[role]
        else:
            raise ReverieError(f"{path}: batch norm layer {layer.name} has no {role}; check --weights")
    state[f"{name}.num_batches_tracked"] = lambda: torch.tensor(0, dtype=torch.long)
    return state


MAPPERS: dict[str, tuple[type[nn.Module], Callable]] = {
    "conv": (nn.Conv2d, _conv_weights),
    "bn": (nn.BatchNorm2d, _bn_weights),
}


def keras_state_dict(model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """A state dict for `model` holding every weight of the Keras file `path`, mapped by layer order;
    every dataset is checked before any is read."""
    path = Path(path)
    with open_keras_layers(path) as layers:
        unknown = [layer.name for layer in layers if layer.kind == "unknown"]
        if unknown:
            raise ReverieError(
                f"{path}: cannot tell what Keras layer {unknown[0]} is; give Keras's InceptionV3 weights"
            )
        classifiers = [layer for layer in layers if layer.kind == "dense"]
        if len(classifiers) > 1:
            raise ReverieError(
                f"{path} has {len(classifiers)} dense layers, InceptionV3 has one classifier at most"
            )
        # the one dense layer of a with-top file is the classifier: dropped (never read), the model has none
        order = keras_layer_order(model)
        pending: dict[str, Read] = {}
        for kind, (module_type, mapper) in MAPPERS.items():
            keras_layers = [layer for layer in layers if layer.kind == kind]
            modules = _ordered_modules(model, order, module_type)
            if len(keras_layers) != len(modules):
                raise ReverieError(
                    f"{path} has {len(keras_layers)} {kind} layers with weights, the model has "
                    f"{len(modules)}; give Keras's InceptionV3 weight file "
                    "(inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5)"
                )
            for layer, (name, module) in zip(keras_layers, modules):
                pending.update(mapper(layer, name, module, path))
        return {key: read() for key, read in pending.items()}  # everything checked: now read


def load_keras_weights(model: nn.Module, path: Path) -> None:
    """Load a Keras InceptionV3 weight file into `model` (strict: every weight and every key)."""
    from reverie.deepdream.weights import load_strict

    load_strict(model, keras_state_dict(model, path), path, getattr(model, "name", type(model).__name__))


if __name__ == "__main__":
    from reverie.deepdream.backbone import build_backbone

    net = build_backbone(sys.argv[2] if len(sys.argv) > 2 else "inception_v3")
    net_order = keras_layer_order(net)
    with open_keras_layers(Path(sys.argv[1])) as file_layers:
        for kind, (module_type, _) in MAPPERS.items():
            modules_in_order = _ordered_modules(net, net_order, module_type)
            pairs = zip([layer for layer in file_layers if layer.kind == kind], modules_in_order)
            for keras_layer, (module_name, _) in pairs:
                print(f"{keras_layer.name:28} -> {module_name}")
