"""DeepDream benchmark: seconds and FLOP/s for the book's run, bfloat16 against float32, and peak
memory with and without tiling. Writes the "DeepDream" section of docs/benchmarks.md.

    python benchmarks/dream_bench.py                 # everything (about 15 minutes on 2 cores)
    python benchmarks/dream_bench.py --only speed    # one part: speed, precision or memory

- speed: `--preset book` (3 octaves x1.4, 20 steps each, the book's loss) with inception_v3
  (random weights: the same arithmetic as the real ones) and efficientnet_lite0, on matplotlib's
  grace_hopper.jpg (600x512) and on a 1024x768 image, in float32 and bfloat16 (autocast,
  channels-last). FLOP/s = FLOPs of the run (torch.utils.flop_counter on one step per octave size,
  times the steps) / seconds, against this machine's measured 2048x2048 matmul throughput.
- precision: the same book run with efficientnet_lite0's real weights in float32 and bfloat16;
  mean absolute pixel difference (0-255) of the outputs, and a side-by-side picture to look at.
- memory: peak RSS of one step on a 4096x4096 image with `--tile 512`, next to the untiled run
  at 2048x2048, each in its own process (inception_v3, the book's layers).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from PIL import Image
from report import REPO, emit, machine_summary, matmul_gflops, run_worker, table, write_section

if TYPE_CHECKING:
    from reverie.deepdream.dreamer import Dreamer

SCRIPT = Path(__file__).resolve()
IMAGES_DIR = REPO / "docs" / "images"


def sample_photo() -> Path:
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def random_dreamer(name: str) -> Dreamer:
    """A dreamer of `name` with seeded random weights (the same arithmetic as the real ones)."""
    from reverie.deepdream.backbone import build_backbone
    from reverie.deepdream.dreamer import load_dreamer

    torch.manual_seed(0)
    return load_dreamer(build_backbone(name))


def run_flops(dreamer: Dreamer, height: int, width: int) -> float:
    """FLOPs of a whole book run: one counted gradient step per octave size, times its steps."""
    from torch.utils.flop_counter import FlopCounterMode

    from reverie.deepdream.octaves import octave_shapes

    plan = dreamer.plan(preset="book", dtype="float32")
    opts, objective = plan.options, plan.objective
    total = 0.0
    for shape in octave_shapes(height, width, opts.octaves, opts.octave_scale):
        x = torch.zeros(1, 3, *shape, device=dreamer.device, requires_grad=True)
        with FlopCounterMode(display=False) as counter:  # (autograd.grad is not countable; backward is)
            objective(dreamer.features(x, objective.layers, plan.dtype)).backward()
        total += counter.get_total_flops() * opts.iterations
    return total


def book_run(image: Image.Image, dreamer: Dreamer, dtype: str) -> tuple[float, Image.Image, int]:
    """Seconds of `--preset book` on `image` (after one warm-up step), the result, the steps run."""
    dreamer.octaves(image.resize((64 * 2, 64 * 2)), preset="book", dtype=dtype, octaves=1, iterations=1,
                    progress=False)
    start = time.perf_counter()
    result = dreamer.octaves(image, preset="book", dtype=dtype, progress=False)
    return time.perf_counter() - start, result.image, sum(len(losses) for losses in result.losses)


def speed(rows: list[list[str]]) -> str:
    """Time every book run into `rows`; return what the target run would take at this machine's
    matmul peak (a lower bound: every FLOP at the speed of a large matmul)."""
    photo = Image.open(sample_photo()).convert("RGB")
    images = {"600x512": photo, "1024x768": photo.resize((1024, 768), Image.BICUBIC)}
    peaks = {"float32": matmul_gflops(torch.float32), "bfloat16": matmul_gflops(torch.bfloat16)}
    for model in ("inception_v3", "efficientnet_lite0"):
        dreamer = random_dreamer(model)  # loaded once for all its runs
        for size, image in images.items():
            flops = run_flops(dreamer, image.height, image.width)
            for dtype in ("float32", "bfloat16"):
                print(f"speed {model} {size} {dtype} ...", file=sys.stderr)
                seconds, _, steps = book_run(image, dreamer, dtype)
                achieved = flops / seconds / 1e9
                rows.append([model, size, dtype, f"{seconds:.1f} s", steps, f"{flops / 1e12:.2f}",
                             f"{achieved:.0f} GFLOP/s", f"{100 * achieved / peaks[dtype]:.0f}%"])
            if (model, size) == ("inception_v3", "600x512"):
                target_flops = flops
    return (
        f"At this machine's matmul peak the 600x512 inception_v3 run's {target_flops / 1e12:.2f} TFLOPs "
        "take at "
        f"least {target_flops / peaks['float32'] / 1e9:.1f} s in float32 and "
        f"{target_flops / peaks['bfloat16'] / 1e9:.1f} s in bfloat16: 2 s needs about "
        f"{target_flops / 2 / 1e9:,.0f} GFLOP/s."
    )


def precision() -> str:
    from reverie.deepdream.dreamer import load_dreamer

    photo = Image.open(sample_photo()).convert("RGB")
    dreamer = load_dreamer("efficientnet_lite0")  # the real weights
    outputs = {}
    for dtype in ("float32", "bfloat16"):
        print(f"precision {dtype} ...", file=sys.stderr)
        _, outputs[dtype], _ = book_run(photo, dreamer, dtype)
    a, b = (np.asarray(outputs[d], dtype=np.float32) for d in ("float32", "bfloat16"))
    moved = np.abs(a - np.asarray(photo, dtype=np.float32)).mean()
    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    pair = Image.new("RGB", (photo.width * 2, photo.height))
    pair.paste(outputs["float32"], (0, 0))
    pair.paste(outputs["bfloat16"], (photo.width, 0))
    pair.resize((photo.width, photo.height // 2)).save(IMAGES_DIR / "bench-float32-vs-bfloat16.png")
    return (
        f"efficientnet_lite0 (real weights), `--preset book` on grace_hopper.jpg: mean absolute pixel "
        f"difference between the float32 and bfloat16 results {np.abs(a - b).mean():.2f} (0-255 scale), "
        f"against {moved:.2f} between the input and the float32 result; max {np.abs(a - b).max():.0f}. "
        "The two show the same kind of patterns at the same scale, in different places: sixty steps of "
        "gradient ascent amplify the small differences of the bfloat16 gradients. "
        "Both side by side (float32 left): ![float32 vs bfloat16](images/bench-float32-vs-bfloat16.png)"
    )


def worker_memory(size: str, tile: str) -> None:
    """One book step on a size x size image, tiled or not; prints peak RSS."""
    side = int(size)
    image = Image.open(sample_photo()).convert("RGB").resize((side, side), Image.BICUBIC)
    dreamer = random_dreamer("inception_v3")
    start = time.perf_counter()
    dreamer.octaves(image, preset="book", octaves=1, iterations=1, progress=False, dtype="float32",
                    tile=int(tile) if int(tile) > 0 else None)
    emit({"seconds": time.perf_counter() - start})


def memory() -> str:
    rows = []
    for size, tile in (("2048", "0"), ("4096", "512")):
        print(f"memory {size} tile {tile} ...", file=sys.stderr)
        result = run_worker(SCRIPT, "memory", size, tile)
        rows.append([f"{size}x{size}", tile if tile != "0" else "none", f"{result['peak_rss_mb']:,} MB",
                     f"{result['seconds']:.0f} s"])
    return table(["image", "--tile", "peak RSS", "time of one step"], rows) + (
        "\n\ninception_v3, the book's layers (mixed2..mixed5), one octave, one step, float32, each in its "
        "own process. Target: at most 3 GB at 4096x4096 with --tile 512."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="speed,precision,memory")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        {"memory": worker_memory}[args.worker[0]](*args.worker[1:])
        return
    parts = set(args.only.split(","))
    torch.manual_seed(0)
    sections = [f"Machine: {machine_summary()}"]
    if "speed" in parts:
        rows: list[list[str]] = []
        floor = speed(rows)
        sections.append("### `--preset book`, seconds per run\n\n" + table(
            ["model", "image", "dtype", "time", "steps", "TFLOPs", "achieved", "of matmul peak"], rows)
            + "\n\nTarget: the 600x512 inception_v3 book run in at most 2 s on a CPU with AMX (bfloat16). "
              "For scale (REFERENCE.md, measured on such a CPU): the book's own program on Keras 3 + "
              "TensorFlow 16 s, on Keras 3 + JAX 33 s. " + floor)
    if "precision" in parts:
        sections.append("### bfloat16 against float32\n\n" + precision())
    if "memory" in parts:
        sections.append("### Peak memory\n\n" + memory())
    command = "python benchmarks/dream_bench.py" + (f" --only {args.only}" if parts != {"speed", "precision",
                                                                                         "memory"} else "")
    write_section("DeepDream", "\n\n".join(sections), command)
    print("wrote docs/benchmarks.md", file=sys.stderr)


if __name__ == "__main__":
    main()
