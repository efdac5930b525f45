"""DeepDream benchmark: seconds and FLOP/s of the book's run in every way `--dtype auto` chooses among
(float32 or bfloat16, channels-last or not) and in the way it chose, precision of bfloat16 against
float32, and peak memory with and without tiling. Writes the sections "DeepDream", "DeepDream
precision" and "DeepDream memory" of docs/benchmarks.md, one per part.

    python benchmarks/dream_bench.py                 # everything (about 20 minutes on 2 cores)
    python benchmarks/dream_bench.py --only speed    # one part: speed, precision or memory
    python benchmarks/dream_bench.py --device cuda --only speed --doc /tmp/b.md   # a GPU's section
    python benchmarks/dream_bench.py --quick         # a small image and one model: checks the script

- speed: `--preset book` (3 octaves x1.4, 20 steps each, the book's loss) with inception_v3
  (random weights: the same arithmetic as the real ones) and efficientnet_lite0, on matplotlib's
  grace_hopper.jpg (600x512) and on a 1024x768 image. FLOP/s = FLOPs of the run
  (torch.utils.flop_counter on one step per octave size, times the steps) / seconds, against the
  machine's measured limit in that dtype (the better of a large matmul and a 3x3 convolution).
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
from report import (
    REPO,
    add_output_arguments,
    emit,
    limit_gflops,
    machine_summary,
    run_worker,
    section_title,
    table,
    write_section,
)

if TYPE_CHECKING:
    from reverie.deepdream.dreamer import Dreamer

SCRIPT = Path(__file__).resolve()
IMAGES_DIR = REPO / "docs" / "images"


def sample_photo() -> Path:
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


KERAS_JAX_SECONDS = 21.3  # the book's program on Keras 3 + JAX, inception_v3, 600x512 (REFERENCE.md)
KERAS_JAX_MACHINE = "AMD EPYC, 2 cores, avx512_bf16, no AMX"
TARGET_SPEEDUP = 7
TARGET_OF_LIMIT = 0.8


def random_dreamer(name: str, device: str = "cpu", dtype: str = "float32") -> Dreamer:
    """A dreamer of `name` with seeded random weights (the same arithmetic as the real ones)."""
    from reverie.deepdream.backbone import build_backbone
    from reverie.deepdream.dreamer import load_dreamer

    torch.manual_seed(0)
    return load_dreamer(build_backbone(name), device=device, dtype=dtype)


def run_flops(dreamer: Dreamer, height: int, width: int, iterations: int | None = None) -> float:
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
        total += counter.get_total_flops() * (iterations or opts.iterations)
    return total


def book_run(
    image: Image.Image, dreamer: Dreamer, dtype: str, iterations: int | None = None
) -> tuple[float, Image.Image, int]:
    """Seconds of `--preset book` on `image` (after one warm-up step), the result, the steps run."""
    steps = {} if iterations is None else {"iterations": iterations}
    dreamer.octaves(
        image.resize((64 * 2, 64 * 2)), preset="book", dtype=dtype, octaves=1, iterations=1, progress=False
    )
    if dreamer.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = dreamer.octaves(image, preset="book", dtype=dtype, progress=False, **steps)
    if dreamer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, result.image, sum(len(losses) for losses in result.losses)


def speed(rows: list[list[str]], device: str, quick: bool) -> str:
    """Time the book run in each way into `rows` (the way auto picks marked), and say how it stands
    against the targets: 7x the book's program on Keras 3 + JAX, 80% of the machine's limit."""
    from reverie import precision

    photo = Image.open(sample_photo()).convert("RGB")
    images = {"600x512": photo, "1024x768": photo.resize((1024, 768), Image.BICUBIC)}
    models = ("inception_v3", "efficientnet_lite0")
    iterations = None
    if quick:  # checks the script: one small image, one model, two steps an octave
        images = {"160x136": photo.resize((160, 136), Image.BICUBIC)}
        models, iterations = ("efficientnet_lite0",), 2
    target: dict[str, float] = {}
    for model in models:
        dreamer = random_dreamer(model, device, "auto")  # loaded once for all its runs
        chosen = dreamer.choose_dtype()  # measured on this dreamer (random weights), or cached
        for size, image in images.items():
            flops = run_flops(dreamer, image.height, image.width, iterations)
            for way in precision.LAYOUTS:
                print(f"speed {model} {size} {way} ...", file=sys.stderr)
                dreamer.set_layout(way.endswith("channels-last"))
                seconds, _, steps = book_run(image, dreamer, way.split()[0], iterations)
                achieved = flops / seconds / 1e9
                share = achieved / limit_gflops(precision.dtype_of(way), device)
                picked = "**auto**" if way == chosen.way else ""
                rows.append(
                    [
                        model,
                        size,
                        way,
                        picked,
                        f"{seconds:.2f} s",
                        steps,
                        f"{flops / 1e12:.2f}",
                        f"{achieved:.0f} GFLOP/s",
                        f"{100 * share:.0f}%",
                    ]
                )
                if (model, size, way) == ("inception_v3", "600x512", chosen.way):
                    target = {"seconds": seconds, "share": share, "flops": flops}
            dreamer.set_layout(chosen.channels_last)
        if model == "inception_v3":
            target["way"], target["reason"] = chosen.way, chosen.reason
    if not target:
        return "(--quick: no target run.)"
    dtype = precision.dtype_of(target["way"])
    floor = target["flops"] / limit_gflops(dtype, device) / 1e9
    wanted = KERAS_JAX_SECONDS / TARGET_SPEEDUP
    speedup = KERAS_JAX_SECONDS / target["seconds"]
    return (
        f"`auto` chose {target['way']} for inception_v3 here ({target['reason']}). Targets for the "
        f"600x512 inception_v3 run in the way auto chose: at least {TARGET_SPEEDUP}x the book's program "
        f"on Keras 3 + JAX ({KERAS_JAX_SECONDS} s measured on an {KERAS_JAX_MACHINE}, so at most "
        f"{wanted:.1f} s): **{target['seconds']:.1f} s, {speedup:.1f}x**; and at least "
        f"{TARGET_OF_LIMIT:.0%} of the machine's measured limit for its {target['flops'] / 1e12:.2f} "
        f"TFLOPs in {str(dtype).removeprefix('torch.')}: **{target['share']:.0%}**. At that limit "
        f"the run would take {floor:.1f} s, so on this machine no program reaches "
        f"{wanted:.1f} s in that dtype unless the limit is above "
        f"{target['flops'] / wanted / 1e9:,.0f} GFLOP/s."
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
    dreamer.octaves(
        image,
        preset="book",
        octaves=1,
        iterations=1,
        progress=False,
        dtype="float32",
        tile=int(tile) if int(tile) > 0 else None,
    )
    emit({"seconds": time.perf_counter() - start})


def memory() -> str:
    rows = []
    for size, tile in (("2048", "0"), ("4096", "512")):
        print(f"memory {size} tile {tile} ...", file=sys.stderr)
        result = run_worker(SCRIPT, "memory", size, tile)
        rows.append(
            [
                f"{size}x{size}",
                tile if tile != "0" else "none",
                f"{result['peak_rss_mb']:,} MB",
                f"{result['seconds']:.0f} s",
            ]
        )
    return table(["image", "--tile", "peak RSS", "time of one step"], rows) + (
        "\n\ninception_v3, the book's layers (mixed2..mixed5), one octave, one step, float32, each in its "
        "own process. Target: at most 3 GB at 4096x4096 with --tile 512."
    )


PARTS = {"speed": "DeepDream", "precision": "DeepDream precision", "memory": "DeepDream memory"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="speed,precision,memory")
    parser.add_argument("--quick", action="store_true", help="a small image, one model, two steps an octave")
    add_output_arguments(parser)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        {"memory": worker_memory}[args.worker[0]](*args.worker[1:])
        return
    parts = [part for part in PARTS if part in args.only.split(",")]
    torch.manual_seed(0)
    machine = f"Machine: {machine_summary(args.device)}"
    for part in parts:  # each part its own section, so parts measured apart stand side by side
        if part == "speed":
            rows: list[list[str]] = []
            verdict = speed(rows, args.device, args.quick)
            header = ["model", "image", "way", "auto", "time", "steps", "TFLOPs", "achieved", "of the limit"]
            body = "### `--preset book`, seconds per run\n\n" + table(header, rows) + "\n\n" + verdict
        elif part == "precision":
            body = "### bfloat16 against float32\n\n" + precision()
        else:
            body = "### Peak memory\n\n" + memory()
        command = (
            f"python benchmarks/dream_bench.py --only {part}"
            + (" --quick" if args.quick else "")
            + (f" --device {args.device}" if args.device != "cpu" else "")
        )
        title = section_title(PARTS[part], args.device)
        write_section(title, machine + "\n\n" + body, command, args.doc)
        print(f"wrote {title} into {args.doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
