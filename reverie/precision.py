"""What `--dtype auto` means: the fastest way to run this model on this machine that agrees with
float32, found by measuring the model's own work once, and kept.

    work = lambda way: one_training_step(model, batch, way)            # -> (loss, gradient)
    choice = choose("lstm 2x448 vocab 65 batch 32x32", device, work)   # a Choice
    choice.dtype, choice.channels_last, choice.reason

A way is a dtype, float32 or bfloat16, and for convnets a memory layout too ("bfloat16
channels-last"). The first time a model kind meets a machine, a few runs of `work` in each way are
timed, and the fastest is kept among those that agree with the first (plain float32). What agrees
is the `judge`'s to say, asked of the faster ways, fastest first, until one agrees:

- `gradient_judge` (the default, text models): the loss within 1%, the gradient within 5% in L2.
- `picture_judge(dream)` (DeepDream): a dream is judged by its picture. A small seeded image is
  dreamed for a few steps in float32 with jitter seed A and seed B, and in the candidate way with
  seed A; the candidate agrees when its picture is as close to float32-A's as float32-B's is, in
  mean absolute difference (0-255 levels) and in SSIM (`ssim`). Two float32 dreams with different
  seeds differ far more than a bfloat16 gradient does from a float32 one.

The choice is cached in reverie's cache directory under a key of the machine (processor, cores this
process may use, torch version, device), so later runs decide at once and a changed machine measures
again. No CPU flag decides: machines that report the same flags run bfloat16 at a fifth of float32
or at three times it.

    python -m reverie.precision      # the cached choices of this machine
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from reverie import hub
from reverie.checkpoint import write_text_atomic

DTYPES = ("float32", "bfloat16")
LAYOUTS = ("float32", "float32 channels-last", "bfloat16", "bfloat16 channels-last")  # for convnets
LOSS_RTOL = 0.01  # bfloat16's loss may differ from float32's by this much, relatively
GRADIENT_RTOL = 0.05  # and its gradient by this much in L2, relatively
REPEATS = 3  # timed runs of each candidate, after one to warm up; the best counts
FAR_SLOWER = 3.0  # a candidate this many times slower than the reference after one timed run is not run again
CACHE_FILE = "precision.json"
CPU = torch.device("cpu")

SEEDS = (1, 2)  # picture_judge's jitter seeds A and B
MIN_SPREAD = 0.5  # levels: reference dreams with two seeds closer than this say nothing (none moved)
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5  # Wang et al. 2004's Gaussian window

# (a way: "float32", "bfloat16 channels-last", ...) -> (loss, gradient) of one run of the model's work
Work = Callable[[str], tuple[float, torch.Tensor]]
Results = dict[str, tuple[float, torch.Tensor]]  # each way's last result of `work`
# (reference way, candidate way, results) -> whether the candidate agrees with the reference, and
# how far apart the two are, in words
Judge = Callable[[str, str, Results], tuple[bool, str]]
# (way, jitter seed) -> the picture of a small seeded dream in that way, uint8 (H, W, 3)
Dream = Callable[[str, int], np.ndarray]


@dataclass(frozen=True)
class Choice:
    """The way `auto` chose for a model kind on this machine, why, and the seconds per run measured."""

    way: str
    reason: str
    seconds: dict[str, float]

    @property
    def dtype(self) -> torch.dtype:
        return dtype_of(self.way)

    @property
    def channels_last(self) -> bool:
        return self.way.endswith("channels-last")


def dtype_of(way: str) -> torch.dtype:
    """The torch dtype of a way ("bfloat16 channels-last" -> torch.bfloat16)."""
    return getattr(torch, way.split()[0])


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity, within a cgroup's CPU quota if any."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:  # cgroup v2: "max 100000" or "200000 100000" (quota, period)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cores


def processor_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(device: torch.device) -> str:
    """What a measurement depends on: processor, cores, torch version, and the device."""
    where = device.type
    if device.type == "cuda":
        where = f"cuda {torch.cuda.get_device_name(device)}"
    return f"{processor_name()} | {available_cores()} cores | torch {torch.__version__} | {where}"


def cache_path() -> Path:
    return hub.cache_dir() / CACHE_FILE


def _read_cache() -> dict[str, dict[str, dict]]:
    try:
        data = json.loads(cache_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def cached(kind: str, device: torch.device) -> Choice | None:
    """The choice measured before for `kind` on this machine, if any."""
    entry = _read_cache().get(machine_key(device), {}).get(kind)
    try:
        return Choice(**entry) if entry else None
    except TypeError:  # another version's entry: measure again
        return None


def choose(
    kind: str,
    device: torch.device,
    work: Work,
    ways: tuple[str, ...] = DTYPES,
    *,
    judge: Judge | None = None,
    timer: Callable[[], float] = time.perf_counter,
    say: Callable[[str], None] | None = None,
) -> Choice:
    """The way to run `kind` on `device`: cached, or measured now with `work` over `ways` (the first
    the reference the others must agree with, as `judge` says: default `gradient_judge`) and then
    cached. `say` (default: a line on stderr) is told once that a measurement is being made."""
    known = cached(kind, device)
    if known is not None and known.way in ways:
        return known
    (say or _stderr)(f"reverie: measuring {' against '.join(ways)} for {kind} on this machine (once)")
    seconds, results, failed = {}, {}, {}
    for way in ways:
        try:
            work(way)  # warm up: first-call allocations and kernel choice
        except RuntimeError as exc:  # a kernel this machine's library lacks (oneDNN's bfloat16 LSTM)
            if way == ways[0]:
                raise
            failed[way] = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            continue
        best = float("inf")
        for _ in range(REPEATS):
            started = timer()
            results[way] = work(way)
            best = min(best, timer() - started)
            if way != ways[0] and best > FAR_SLOWER * seconds[ways[0]]:
                break  # it cannot win: one run says enough (bfloat16 matmul is 400x slower on some CPUs)
        seconds[way] = best
    choice = _verdict(
        tuple(way for way in ways if way not in failed), seconds, results, judge or gradient_judge
    )
    if failed:
        cannot = "; ".join(f"{way} does not run here ({why})" for way, why in failed.items())
        choice = Choice(choice.way, f"{choice.reason}; {cannot}", choice.seconds)
    _remember(kind, device, choice)
    return choice


def _verdict(ways: tuple[str, ...], seconds: dict[str, float], results: Results, judge: Judge) -> Choice:
    """The fastest way that agrees with the reference (ways[0]): the ways faster than the reference
    are judged fastest first, until one agrees."""
    reference = ways[0]
    best, agreement, disagree = reference, "", {}
    for way in sorted(ways, key=lambda way: seconds[way]):  # stable: the reference wins a tie
        if way == reference:
            break
        agrees, how = judge(reference, way, results)
        if agrees:
            best, agreement = way, how
            break
        disagree[way] = how
    fastest = min(ways, key=lambda way: seconds[way])
    speed = f"{seconds[reference] / max(seconds[best], 1e-12):.2f}x {reference}'s speed"
    if best == reference and fastest == reference:
        reason = f"{reference} is the fastest here"
    elif best == reference:
        reason = f"{fastest} is faster but disagrees with {reference} ({disagree[fastest]})"
    else:
        reason = f"{best} runs at {speed} and agrees with {reference}"
        if agreement:
            reason += f" ({agreement})"
        if fastest != best:
            reason += f" ({fastest} is faster but disagrees: {disagree[fastest]})"
    return Choice(best, reason, seconds)


def gradient_judge(reference: str, way: str, results: Results) -> tuple[bool, str]:
    """The rule for text models: `way`'s loss within LOSS_RTOL of the reference's, relatively, and its
    gradient within GRADIENT_RTOL in L2. Says how far apart only when they disagree."""
    loss0, gradient0 = results[reference][0], results[reference][1].float()
    loss, gradient = results[way][0], results[way][1].float()
    loss_error = abs(loss - loss0) / max(abs(loss0), 1e-12)
    gradient_error = float((gradient - gradient0).norm() / gradient0.norm().clamp_min(1e-12))
    agrees = loss_error <= LOSS_RTOL and gradient_error <= GRADIENT_RTOL
    return agrees, "" if agrees else f"loss {loss_error:.1%}, gradient {gradient_error:.1%} apart"


def picture_judge(dream: Dream, seeds: tuple[int, int] = SEEDS) -> Judge:
    """The rule for dreams: a candidate agrees when its picture (`dream(way, seed A)`) is no farther
    from the reference's with seed A than the reference's with seed B is, in mean absolute
    difference and in SSIM. The reference's two pictures are dreamed once, when first needed. Where
    they are under MIN_SPREAD levels apart (the dream hardly moves the picture: weights whose
    gradient vanishes), the pictures cannot tell and `gradient_judge` decides."""
    a, b = seeds
    pictures: dict[tuple[str, int], np.ndarray] = {}

    def picture(way: str, seed: int) -> np.ndarray:
        if (way, seed) not in pictures:
            pictures[way, seed] = np.asarray(dream(way, seed))
        return pictures[way, seed]

    def judge(reference: str, way: str, results: Results) -> tuple[bool, str]:
        spread, spread_ssim = picture_difference(picture(reference, a), picture(reference, b))
        if spread < MIN_SPREAD:
            agrees, how = gradient_judge(reference, way, results)
            why = f"judged by the gradient: {reference}'s dreams with two seeds are {spread:.2f} levels apart"
            return agrees, f"{how}; {why}" if how else why
        difference, similarity = picture_difference(picture(way, a), picture(reference, a))
        agrees = difference <= spread and similarity >= spread_ssim
        return agrees, (
            f"its dream {difference:.1f} levels, SSIM {similarity:.3f} from {reference}'s; "
            f"{reference}'s with another jitter seed {spread:.1f} levels, SSIM {spread_ssim:.3f}"
        )

    return judge


def picture_difference(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """Mean absolute difference in 0-255 levels and SSIM of two uint8 (H, W, 3) pictures."""
    x, y = (torch.from_numpy(np.asarray(p, dtype=np.float64)) for p in (first, second))
    return float((x - y).abs().mean()), ssim(x, y)


def ssim(
    first: torch.Tensor | np.ndarray, second: torch.Tensor | np.ndarray, data_range: float = 255.0
) -> float:
    """The structural similarity of two pictures, (H, W) or (H, W, C) (Wang et al. 2004): local
    means, variances and covariance under an 11-pixel Gaussian window (sigma 1.5, shrunk to a picture
    narrower than that) over the valid area, C1 = (0.01 L)^2, C2 = (0.03 L)^2 for the data range L,
    averaged over positions and channels. 1 for identical pictures, less the more they differ."""
    x, y = (torch.as_tensor(p, dtype=torch.float64) for p in (first, second))
    if x.shape != y.shape:
        raise ValueError(f"ssim of pictures of different shapes: {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() == 2:
        x, y = x[..., None], y[..., None]
    x, y = x.permute(2, 0, 1)[:, None], y.permute(2, 0, 1)[:, None]  # (C, 1, H, W): each channel alone
    size = min(SSIM_WINDOW, *x.shape[-2:])
    line = torch.exp(-((torch.arange(size, dtype=torch.float64) - (size - 1) / 2) ** 2) / (2 * SSIM_SIGMA**2))
    line = line / line.sum()
    window = (line[:, None] * line[None, :])[None, None]

    def mean(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(t, window)

    mx, my = mean(x), mean(y)
    vx, vy, cxy = mean(x * x) - mx**2, mean(y * y) - my**2, mean(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(index.mean())


def matmul_gflops(
    dtype: torch.dtype, device: torch.device = CPU, size: int = 2048, repeats: int = 6, budget_s: float = 4.0
) -> float:
    """Measured dense matmul throughput, GFLOP/s (the best of `repeats`), on `size`-square matrices,
    or smaller ones where a 256-square probe says `size` would take more than `budget_s` in all
    (some CPUs multiply bfloat16 at 0.3 GFLOP/s: 2048-square would take a minute a product)."""
    probe = min(size, 256)
    a, b = (torch.randn(probe, probe, device=device).to(dtype) for _ in range(2))
    rate = 2 * probe**3 / _best_seconds(lambda: a @ b, device, 1)
    while size > probe and 2 * size**3 / rate > budget_s / (repeats + 1):
        size //= 2
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    return 2 * size**3 / _best_seconds(lambda: a @ b, device, repeats) / 1e9


def conv_gflops(dtype: torch.dtype, device: torch.device = CPU, repeats: int = 6) -> float:
    """Measured 3x3 convolution throughput, 64 channels at 128x128, channels-last, GFLOP/s."""
    x = torch.randn(4, 64, 128, 128, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(64, 64, 3, 3, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    flops = 2 * x.numel() * 64 * 9
    return (
        flops / _best_seconds(lambda: torch.nn.functional.conv2d(x, weight, padding=1), device, repeats) / 1e9
    )


def limit_gflops(dtype: torch.dtype, device: torch.device = CPU) -> float:
    """The machine's measured limit for dense work in `dtype`: the better of matmul and convolution
    (which of the two runs faster differs between machines and libraries)."""
    return max(matmul_gflops(dtype, device), conv_gflops(dtype, device))


def _best_seconds(run: Callable[[], object], device: torch.device, repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return best


def _remember(kind: str, device: torch.device, choice: Choice) -> None:
    data = _read_cache()
    data.setdefault(machine_key(device), {})[kind] = asdict(choice)
    try:
        write_text_atomic(cache_path(), json.dumps(data, indent=1))
    except OSError:  # a read-only cache: measure again next time
        pass


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    for machine, kinds in _read_cache().items():
        print(machine)
        for kind, entry in kinds.items():
            print(f"  {kind}: {entry['way']} ({entry['reason']})")
