"""Any torch.nn.Module as a dream backbone: layers named by module path, read by forward hooks.

    import reverie
    dreamer = reverie.load_dreamer(my_net, preprocess="imagenet")   # a torchvision-style network
    dreamer.dream("photo.jpg", layers={"layer3.1.conv2": 1})
    reverie.visualize(dreamer, "layer3.1.conv2:7").images[0].save("filter7.png")

A `HookedModule` runs the user's whole forward and keeps the outputs of the named submodules
(`dict(net.named_modules())` paths) through forward hooks; once the deepest wanted layer has run,
the forward is cut short. Its layers are the submodules whose output is a 4-D tensor, in the order
they run (found once on a shape-only meta copy). `preprocess` maps RGB in [0, 1] to the network's
input: "imagenet" (torchvision's mean/std), "[-1,1]", "[0,1]", or a per-channel affine callable.

    reverie layers --module my_pkg.nets:build    # the layer table of what build() returns
    python -m reverie.deepdream.hooked my_pkg.nets:build
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from reverie.deepdream.backbone import PROBE_SIZE, PROBE_STEP, Backbone, LayerInfo
from reverie.errors import ReverieError, require

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESS = ("imagenet", "[-1,1]", "[0,1]")
Preprocess = str | Callable[[torch.Tensor], torch.Tensor]


class _Enough(Exception):
    """Raised by a hook once every wanted layer has its output: the rest of the forward is skipped."""


def _affine(preprocess: Preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), each (1, 3, 1, 1), with preprocess(x) == x * scale + shift; refused if it is not
    such a per-channel affine map."""
    if isinstance(preprocess, str):
        if preprocess == "imagenet":
            std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
            return 1.0 / std, -torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) / std
        if preprocess == "[-1,1]":
            return torch.full((1, 3, 1, 1), 2.0), torch.full((1, 3, 1, 1), -1.0)
        if preprocess == "[0,1]":
            return torch.ones(1, 3, 1, 1), torch.zeros(1, 3, 1, 1)
        raise ReverieError(f"unknown preprocess {preprocess!r}; choose {', '.join(PREPROCESS)} or a function")
    require(callable(preprocess), f"preprocess must be one of {', '.join(PREPROCESS)} or a function")
    probe = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    try:
        zero, one = preprocess(torch.zeros(1, 3, 1, 1)), preprocess(torch.ones(1, 3, 1, 1))
        mapped = preprocess(probe)
    except Exception as error:  # noqa: BLE001 - a user's function: any failure refuses it
        raise ReverieError(f"preprocess failed on a (1, 3, H, W) batch in [0, 1]: {error}") from None
    ok = isinstance(mapped, torch.Tensor) and mapped.shape == probe.shape and zero.shape == (1, 3, 1, 1)
    scale, shift = (one - zero, zero) if ok else (None, None)
    require(
        ok and bool(torch.allclose(mapped, probe * scale + shift, atol=1e-5)) and bool((scale != 0).all()),
        "preprocess must map each colour channel affinely (x * scale + shift per channel, scale not 0), "
        "so that dreams can map back to pixels",
    )
    return scale.detach().float(), shift.detach().float()


class HookedModule(Backbone):
    """A user's network seen as a Backbone whose layers are its submodules' outputs (module paths)."""

    def __init__(self, net: nn.Module, preprocess: Preprocess = "imagenet", name: str | None = None) -> None:
        super().__init__()
        require(isinstance(net, nn.Module), f"expected a torch.nn.Module, got {type(net).__name__}")
        self.net = net
        self.name = name or type(net).__name__
        scale, shift = _affine(preprocess)
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)
        self._order: list[str] | None = None

    def named_stages(self) -> list[tuple[str, nn.Module]]:
        modules = dict(self.net.named_modules())
        return [(name, modules[name]) for name in self.stage_names()]

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        return image * self.scale + self.shift

    def deprocess(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale

    def stage_names(self) -> list[str]:
        """Module paths whose output is a 4-D tensor, in the order the forward runs them."""
        if self._order is None:
            twin = self.meta_twin()
            shapes = twin._stage_shapes(PROBE_SIZE) if twin is not self else self._probe(PROBE_SIZE)
            require(
                shapes is not None,
                f"{self.name} does not run on a (1, 3, {PROBE_SIZE}, {PROBE_SIZE}) image on the meta device",
            )
            self._order = list(shapes)  # type: ignore[arg-type]
        return self._order

    def resolve_layer(self, layer: str) -> str:
        stages = self.stage_names()
        if layer in stages:
            return layer
        paths = [name for name, _ in self.net.named_modules() if name]
        near = difflib.get_close_matches(layer, stages, n=3, cutoff=0.5) or stages[:3]
        why = "its output is not a 4-D activation" if layer in paths else "no such module path"
        raise ReverieError(
            f"unknown layer {layer!r} for {self.name} ({why}); nearest: {', '.join(near)} "
            f"(`reverie layers --module ...` lists all {len(stages)})"
        )

    def _run(self, x: torch.Tensor, wanted: set[str] | None) -> dict[str, torch.Tensor]:
        """The forward with hooks: outputs of `wanted` paths (None: every 4-D output), in run order."""
        outputs: dict[str, torch.Tensor] = {}
        handles = []

        def hook(path: str) -> Callable[..., None]:
            def keep(module: nn.Module, inputs: Any, output: Any) -> None:
                spatial = isinstance(output, torch.Tensor) and output.dim() == 4
                if spatial and path not in outputs and (wanted is None or path in wanted):
                    outputs[path] = output
                if wanted is not None and len(outputs) == len(wanted):
                    raise _Enough

            return keep

        for path, module in self.net.named_modules():
            if path and (wanted is None or path in wanted):
                handles.append(module.register_forward_hook(hook(path)))
        try:
            self.net(x)
        except _Enough:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return outputs

    def features(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        wanted = {self.resolve_layer(layer): layer for layer in layers}
        out = self._run(x, set(wanted))
        return {layer: out[stage] for stage, layer in wanted.items()}

    def _probe(self, size: int, last_stage: str | None = None) -> dict[str, torch.Size] | None:
        x = torch.empty(1, 3, size, size, device="meta")
        try:
            outputs = self._run(x, None if last_stage is None else {last_stage})
        except (RuntimeError, ValueError):
            return None
        if last_stage is not None:  # only whether it runs that far matters
            return {last_stage: outputs[last_stage].shape} if last_stage in outputs else None
        return {name: out.shape for name, out in outputs.items()}

    def _stage_shapes(self, size: int, last_stage: str | None = None) -> dict[str, torch.Size] | None:
        shapes = self._probe(size, last_stage)
        if shapes is None or any(shape[-1] < 1 or shape[-2] < 1 for shape in shapes.values()):
            return None
        return shapes

    def layer_table(self) -> list[LayerInfo]:
        """The spatial layers (those whose output grows with the input) with channels and stride."""
        twin = self.meta_twin()
        shapes, wider = twin._stage_shapes(PROBE_SIZE), twin._stage_shapes(PROBE_SIZE + PROBE_STEP)
        require(shapes is not None and wider is not None, f"{self.name} cannot run a {PROBE_SIZE}px probe")
        table = []
        for name, shape in shapes.items():  # type: ignore[union-attr]
            growth = wider[name][-1] - shape[-1]  # type: ignore[index]
            if growth > 0:
                table.append(LayerInfo(name, (), shape[1], max(1, round(PROBE_STEP / growth))))
        return table


def wrap_module(net: nn.Module, preprocess: Preprocess | None = None) -> HookedModule:
    """`net` (eval mode, gradients off) as a HookedModule; `preprocess` default "imagenet"."""
    net.eval().requires_grad_(False)
    return HookedModule(net, "imagenet" if preprocess is None else preprocess)


def import_module_spec(spec: str) -> nn.Module:
    """The network `PACKAGE.MODULE:FUNCTION` builds (called with no arguments), or a module attribute."""
    module_name, sep, attribute = spec.partition(":")
    require(
        bool(sep and module_name and attribute), f"write --module as PACKAGE.MODULE:FUNCTION, got {spec!r}"
    )
    if "" not in sys.path:
        sys.path.insert(0, "")  # the current directory, as `python -m` would
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ReverieError(f"cannot import {module_name!r} for --module: {error}") from None
    require(hasattr(module, attribute), f"{module_name} has no {attribute!r}")
    made = getattr(module, attribute)
    if callable(made) and not isinstance(made, nn.Module):
        made = made()
    require(isinstance(made, nn.Module), f"{spec} gave a {type(made).__name__}, not a torch.nn.Module")
    return made


if __name__ == "__main__":
    for info in wrap_module(import_module_spec(sys.argv[1])).layer_table():
        print(f"{info.name:32} {info.channels:6} {info.stride:4}")
