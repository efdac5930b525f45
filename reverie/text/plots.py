"""loss.png: training and validation loss curves of a run, drawn with matplotlib (no display needed).

python -m reverie.text.plots RUN_DIR      # redraw RUN_DIR/loss.png from its metrics.csv
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reverie.checkpoint import atomic_path

SMOOTH_STEPS = 50  # the train curve is a running mean over up to this many steps (5% of the run)


def plot_losses(rows: Sequence[dict[str, Any]], path: Path, title: str = "") -> None:
    """Draw train loss (per step, smoothed) and validation loss (per evaluation) against steps, in
    nats per token, and write the PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    train = [(r["step"], r["train_loss"]) for r in rows if r.get("train_loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=100)
    try:
        if train:
            steps, losses = np.array(train, dtype=float).T
            axes.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8)
            window = max(1, min(SMOOTH_STEPS, len(losses) // 20))
            axes.plot(steps, _running_mean(losses, window), color="tab:blue", label="train")
        if val:
            steps, losses = np.array(val, dtype=float).T
            axes.plot(steps, losses, "o-", color="tab:orange", label="validation")
            best = int(np.argmin(losses))
            axes.annotate(
                f"{losses[best]:.3f} ({losses[best] / math.log(2):.3f} bits)",
                (steps[best], losses[best]),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
            )
        axes.set_xlabel("step")
        axes.set_ylabel("loss (nats per token)")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        if train or val:
            axes.legend()
        figure.tight_layout()
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png")
    finally:
        plt.close(figure)


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` values at each point (fewer at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    index = np.arange(1, len(values) + 1)
    start = np.maximum(index - window, 0)
    return (sums[index] - sums[start]) / (index - start)


if __name__ == "__main__":
    from reverie.text import rundir

    run = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    plot_losses(rundir.read_metrics(run / rundir.METRICS), run / rundir.PLOT, title=run.name)
    print(run / rundir.PLOT)
