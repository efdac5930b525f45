"""Optimizers and the learning-rate schedule for training text models.

AdamW (weights decayed, embeddings and biases not) with linear warmup then cosine decay, or the
book's RMSprop exactly as Keras computes it. The optimizers stand alone rather than subclass
torch.optim.Optimizer: its methods import torch._dynamo on first use, which costs a training
run about 75 MB of memory and a second of start-up for a compiler it never uses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import torch

from reverie.text.options import TrainOptions

MIN_LR_FRACTION = 0.1  # the cosine schedule ends at this fraction of --lr


class Optimizer:
    """What training needs of torch.optim.Optimizer, in its layout: `param_groups` (dicts of
    "params" and hyperparameters; "lr" is set every step), per-parameter `state`, `zero_grad`,
    and `state_dict` / `load_state_dict` (states keyed by the parameter's position)."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups = [{**defaults, **group, "params": list(group["params"])} for group in groups]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def _params(self) -> list[torch.Tensor]:
        return [param for group in self.param_groups for param in group["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self._params():
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        position = {id(param): index for index, param in enumerate(self._params())}
        return {
            "state": {position[id(param)]: dict(state) for param, state in self.state.items()},
            "param_groups": [
                {
                    **{k: v for k, v in group.items() if k != "params"},
                    "params": [position[id(p)] for p in group["params"]],
                }
                for group in self.param_groups
            ],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        params = self._params()
        saved_groups = state_dict["param_groups"]
        if [len(g["params"]) for g in saved_groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("the optimizer state has other parameter groups than the model")
        for group, saved in zip(self.param_groups, saved_groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        # the step count stays a CPU scalar (as _state makes it): reading it is then no device sync
        self.state = {
            params[int(index)]: {
                k: v.to(params[int(index)].device) if isinstance(v, torch.Tensor) and k != "step" else v
                for k, v in state.items()
            }
            for index, state in state_dict["state"].items()
        }

    def _state(self, param: torch.Tensor, *names: str) -> dict[str, torch.Tensor]:
        """The state of `param`, made zero on its first step: "step" a scalar count, any other
        name a tensor shaped like the parameter."""
        state = self.state.get(param)
        if state is None:
            state = {
                name: torch.zeros(())
                if name == "step"
                else torch.zeros_like(param, memory_format=torch.preserve_format)
                for name in names
            }
            self.state[param] = state
        return state


class AdamW(Optimizer):
    """AdamW with torch.optim.AdamW's update (decoupled weight decay, bias correction)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self._state(param, "step", "exp_avg", "exp_avg_sq")
                state["step"] += 1
                step = float(state["step"])
                if decay:
                    param.mul_(1 - lr * decay)
                state["exp_avg"].lerp_(param.grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
                denominator = state["exp_avg_sq"].sqrt().div_(math.sqrt(1 - beta2**step)).add_(eps)
                param.addcdiv_(state["exp_avg"], denominator, value=-lr / (1 - beta1**step))


class KerasRMSprop(Optimizer):
    """RMSprop as Keras writes it: v = rho*v + (1-rho)*g^2; w -= lr*g / sqrt(v + eps).

    torch.optim.RMSprop adds eps outside the square root, which bounds tiny-gradient steps very
    differently (1e-7 against sqrt(1e-7) = 3e-4), so the book preset uses this one.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-7) -> None:
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps})

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                square_avg = self._state(param, "square_avg")["square_avg"]
                square_avg.mul_(group["rho"]).addcmul_(param.grad, param.grad, value=1 - group["rho"])
                param.addcdiv_(param.grad, square_avg.add(group["eps"]).sqrt_(), value=-group["lr"])


def layer_depth(name: str, layers: int) -> int:
    """How far from the input a parameter is: 0 for the embedding (and a conv model's input
    projection), i + 1 for layer i's, layers + 1 for what sits above them (the output layer, the
    last norm, the heads predicting further ahead)."""
    if name.startswith(("embedding.", "tokens.", "inp.")):
        return 0
    found = re.search(r"(?:_l|blocks\.)(\d+)", name)
    return int(found.group(1)) + 1 if found else layers + 1


def build_optimizer(model: torch.nn.Module, options: TrainOptions) -> Optimizer:
    """The run's optimizer, AdamW (matrices decayed, embeddings and biases not) or the book's
    RMSprop, its parameters grouped so that each group's "lr_scale" is the fraction of the scheduled
    rate it learns at: options.layer_lr per layer below the top (at layer_lr 1, one scale for all:
    AdamW's two groups, RMSprop's one)."""
    adamw = options.optimizer == "adamw"
    top = options.model.layers + 1
    groups: dict[tuple[int, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        depth = layer_depth(name, options.model.layers) if options.layer_lr != 1 else top
        decayed = adamw and param.dim() >= 2 and not name.startswith("embedding.")
        groups.setdefault((depth, decayed), []).append(param)
    order = sorted(groups, key=lambda key: (not key[1], -key[0]))  # at layer_lr 1: matrices, then the rest
    params = [{"params": groups[key], "lr_scale": options.layer_lr ** (top - key[0])} for key in order]
    if not adamw:
        return KerasRMSprop(params, lr=options.lr)
    for group, (_, decayed) in zip(params, order):
        group["weight_decay"] = options.weight_decay if decayed else 0.0
    return AdamW(params, lr=options.lr, betas=(0.9, 0.99))


def learning_rate(options: TrainOptions, step: int, progress: float) -> float:
    """Linear warmup over warmup_steps, then constant or cosine decay to MIN_LR_FRACTION by
    `progress` (the fraction of the budget spent, 0..1)."""
    warmup = min(1.0, (step + 1) / options.warmup_steps) if options.warmup_steps else 1.0
    if options.schedule == "constant":
        return options.lr * warmup
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return options.lr * warmup * (MIN_LR_FRACTION + (1.0 - MIN_LR_FRACTION) * cosine)
