"""Optimizers and the learning-rate schedule for training text models.

AdamW (weights decayed, embeddings and biases not) with linear warmup then cosine decay, or the
book's RMSprop exactly as Keras computes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from reverie.text.options import TrainOptions

MIN_LR_FRACTION = 0.1  # the cosine schedule ends at this fraction of --lr


class KerasRMSprop(torch.optim.Optimizer):
    """RMSprop as Keras writes it: v = rho*v + (1-rho)*g^2; w -= lr*g / sqrt(v + eps).

    torch.optim.RMSprop adds eps outside the square root, which bounds tiny-gradient steps very
    differently (1e-7 against sqrt(1e-7) = 3e-4), so the book preset uses this one.
    """

    def __init__(self, params: Any, lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-7) -> None:
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["square_avg"] = torch.zeros_like(param)
                square_avg = state["square_avg"]
                square_avg.mul_(group["rho"]).addcmul_(param.grad, param.grad, value=1 - group["rho"])
                param.addcdiv_(param.grad, square_avg.add(group["eps"]).sqrt_(), value=-group["lr"])


def build_optimizer(model: torch.nn.Module, options: TrainOptions) -> torch.optim.Optimizer:
    if options.optimizer == "rmsprop":
        return KerasRMSprop(model.parameters(), lr=options.lr)
    matrices = [
        p for name, p in model.named_parameters() if p.dim() >= 2 and not name.startswith("embedding.")
    ]
    others = [
        p for name, p in model.named_parameters() if not (p.dim() >= 2 and not name.startswith("embedding."))
    ]
    return torch.optim.AdamW(
        [{"params": matrices, "weight_decay": options.weight_decay}, {"params": others, "weight_decay": 0.0}],
        lr=options.lr,
        betas=(0.9, 0.99),
    )


def learning_rate(options: TrainOptions, step: int, progress: float) -> float:
    """Linear warmup over warmup_steps, then constant or cosine decay to MIN_LR_FRACTION by
    `progress` (the fraction of the budget spent, 0..1)."""
    warmup = min(1.0, (step + 1) / options.warmup_steps) if options.warmup_steps else 1.0
    if options.schedule == "constant":
        return options.lr * warmup
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return options.lr * warmup * (MIN_LR_FRACTION + (1.0 - MIN_LR_FRACTION) * cosine)
