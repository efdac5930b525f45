"""DeepDream benchmark: seconds and FLOP/s of the book's run in every way `--dtype auto` chooses among
(float32 or bfloat16, channels-last or not) and in the way it chose, precision of bfloat16 against
float32, and peak memory with and without tiling. Writes the sections "DeepDream", "DeepDream
precision" and "DeepDream memory" of docs/benchmarks.md, one per part.

    python benchmarks/dream_bench.py                 # everything (about 20 minutes on 2 cores)
    python benchmarks/dream_bench.py --only speed    # one part: speed, precision or memory
    python benchmarks/dream_bench.py --device cuda --only speed --doc /tmp/b.md   # a GPU's section
    python benchmarks/dream_bench.py --quick         # a small image and one model: checks the script

- speed: `--preset book` (3 octaves x1.4, 20 steps each, the book's loss; all 60 steps, as random
  weights' loss says nothing of max_loss) with inception_v3 (random weights: the same arithmetic as
  the real ones) and efficientnet_lite0, on matplotlib's
  grace_hopper.jpg (600x512) and on a 1024x768 image. FLOP/s = FLOPs of the run
  (torch.utils.flop_counter on one step per octave size, times the steps) / seconds, against the
  machine's measured limit in that dtype (the better of a large matmul and a 3x3 convolution).
- precision: what `--dtype auto` judges a dream's way by, its picture. The book run with jitter on
  (`--jitter 32`: the book's own run has none, so its seed changes nothing) with efficientnet_lite0's
  real weights, in float32 with jitter seeds 1 and 2 and in bfloat16 channels-last with seed 1: mean
  absolute difference (0-255 levels) and SSIM of each pair, and the three side by side in
  docs/images/bench-dream-seeds-vs-bfloat16.jpg. Then auto's verdict for inception_v3 (measured
  afresh, in a scratch cache) by the picture rule and by the gradient rule it replaced, and the
  600x512 book run's seconds in each verdict's way, alternated, the best of `--repeats`.
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
NO_MAX_LOSS = 1e30  # random weights' loss says nothing of the book's max_loss: every step runs


def random_dreamer(name: str, device: str = "cpu", dtype: str = "float32") -> Dreamer:
    """A dreamer of `name` with seeded random weights (the same arithmetic as the real ones), its
    convolutions He-initialized so that activations keep their scale through the depth as trained
    weights' do (PyTorch's default shrinks inception_v3's to about 1e-7 by mixed5, where a dream's
    step, `step * g / max(mean|g|, 1e-7)`, no longer moves the picture auto judges ways by)."""
    from reverie.deepdream.backbone import build_backbone
    from reverie.deepdream.dreamer import load_dreamer

    torch.manual_seed(0)
    backbone = build_backbone(name)
    for module in backbone.modules():
        if isinstance(module, torch.nn.Conv2d):
            fan_in = module.weight[0].numel()
            torch.nn.init.normal_(module.weight, std=(2 / fan_in) ** 0.5)
    return load_dreamer(backbone, device=device, dtype=dtype)


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
    image: Image.Image, dreamer: Dreamer, dtype: str, iterations: int | None = None, **options: object
) -> tuple[float, Image.Image, int]:
    """Seconds of `--preset book` on `image` (after one warm-up step), the result, the steps run;
    `options` change the preset's (jitter=, seed=)."""
    steps = {} if iterations is None else {"iterations": iterations}
    steps.update(options)
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
                seconds, _, steps = book_run(image, dreamer, way.split()[0], iterations, max_loss=NO_MAX_LOSS)
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


JITTER = 32  # the precision part's book run: jitter on, so the seed matters
PICTURES = {  # label -> (way, jitter seed)
    "float32, seed 1": ("float32", 1),
    "float32, seed 2": ("float32", 2),
    "bfloat16 channels-last, seed 1": ("bfloat16 channels-last", 1),
}
PICTURE_FILE = "bench-dream-seeds-vs-bfloat16.jpg"


def precision_part(device: str, repeats: int) -> str:
    """The three pictures and their differences, then auto's verdicts and their book runs' seconds."""
    return pictures(device) + "\n\n" + auto_verdicts(device, repeats)


def pictures(device: str) -> str:
    from reverie import precision
    from reverie.deepdream.dreamer import load_dreamer

    photo = Image.open(sample_photo()).convert("RGB")
    dreamer = load_dreamer("efficientnet_lite0", device=device, dtype="float32")  # the real weights
    outputs, seconds = {}, {}
    for label, (way, seed) in PICTURES.items():
        print(f"precision {label} ...", file=sys.stderr)
        dreamer.set_layout(way.endswith("channels-last"))
        seconds[label], outputs[label], _ = book_run(photo, dreamer, way.split()[0], jitter=JITTER, seed=seed)
    arrays = {label: np.asarray(image) for label, image in outputs.items()}
    a, b, candidate = PICTURES
    rows, apart = [], []
    for first, second in ((a, b), (candidate, a), (candidate, b)):
        levels, similarity = precision.picture_difference(arrays[first], arrays[second])
        rows.append([first, second, f"{levels:.2f}", f"{similarity:.3f}"])
        apart.append((levels, similarity))
    moved = np.abs(arrays[a].astype(np.float32) - np.asarray(photo, dtype=np.float32)).mean()
    save_side_by_side(outputs, IMAGES_DIR / PICTURE_FILE)
    verdict = "within" if apart[1][0] <= apart[0][0] and apart[1][1] >= apart[0][1] else "outside"
    return (
        f"### A dream judged by its picture\n\nefficientnet_lite0 (real weights), `--preset book "
        f"--jitter {JITTER}` on grace_hopper.jpg (600x512, 60 steps; the book's own run has no jitter, "
        f"so its seed would change nothing); the float32 dream moved the picture {moved:.2f} levels "
        "from the input on average.\n\n"
        + table(["picture", "against", "mean abs. difference (0-255)", "SSIM"], rows)
        + f"\n\nbfloat16 channels-last's picture is {verdict} the spread of two float32 dreams with "
        "different jitter seeds, the rule `--dtype auto` now applies to a short dream (a seeded "
        "160x160 image, 8 steps of the model's default dream). "
        f"Left to right, {', '.join(PICTURES)}: ![float32 seed 1, float32 seed 2, bfloat16 seed 1]"
        f"(images/{PICTURE_FILE})"
    )


def save_side_by_side(outputs: dict[str, Image.Image], path: Path, width: int = 1500) -> None:
    """The pictures left to right, each labelled, scaled to `width` in all, as a JPEG."""
    from PIL import ImageDraw

    first = next(iter(outputs.values()))
    strip = Image.new("RGB", (first.width * len(outputs), first.height), "white")
    draw = ImageDraw.Draw(strip)
    for index, (label, image) in enumerate(outputs.items()):
        strip.paste(image, (index * first.width, 0))
        left = index * first.width
        draw.rectangle((left, 0, left + draw.textlength(label) + 16, 22), fill="black")
        draw.text((left + 8, 5), label, fill="white")
    scale = width / strip.width
    path.parent.mkdir(parents=True, exist_ok=True)
    strip.resize((width, round(strip.height * scale)), Image.LANCZOS).save(path, quality=80, optimize=True)


def auto_verdicts(device: str, repeats: int) -> str:
    """For inception_v3: which ways pass the gradient rule and the picture rule, the book run
    (600x512) in every way, alternated, the best of `repeats`, so the fastest way each rule lets
    through; and what `choose_dtype()` itself picks by each rule, measured afresh in a scratch cache."""
    import os
    import tempfile

    from reverie import precision

    photo = Image.open(sample_photo()).convert("RGB")
    dreamer = random_dreamer("inception_v3", device, "auto")
    saved = os.environ.get("REVERIE_CACHE")
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["REVERIE_CACHE"] = scratch  # measured now, not read from this machine's cache
        try:
            print("auto: the picture rule ...", file=sys.stderr)
            started = time.perf_counter()
            now = dreamer.choose_dtype()
            measuring = time.perf_counter() - started
            print("auto: the gradient rule ...", file=sys.stderr)
            work = dreamer._step_work()
            before = precision.choose("dream inception_v3", dreamer.device, work, precision.LAYOUTS)
        finally:
            if saved is None:
                os.environ.pop("REVERIE_CACHE", None)
            else:
                os.environ["REVERIE_CACHE"] = saved
    reference = precision.LAYOUTS[0]
    results = {way: work(way) for way in precision.LAYOUTS}
    by_picture = precision.picture_judge(dreamer._judge_dream)
    verdicts = {reference: ((True, "the reference"), (True, "the reference"))}
    for way in precision.LAYOUTS[1:]:
        print(f"auto: judging {way} ...", file=sys.stderr)
        verdicts[way] = (
            precision.gradient_judge(reference, way, results),
            by_picture(reference, way, results),
        )
    best = dict.fromkeys(precision.LAYOUTS, float("inf"))
    for attempt in range(repeats):
        for way in precision.LAYOUTS:
            print(f"auto: book run {way} ({attempt + 1}/{repeats}) ...", file=sys.stderr)
            dreamer.set_layout(way.endswith("channels-last"))
            seconds, _, steps = book_run(photo, dreamer, way.split()[0], max_loss=NO_MAX_LOSS)
            best[way] = min(best[way], seconds)
    gradient_way = min((way for way in best if verdicts[way][0][0]), key=best.__getitem__)
    picture_way = min((way for way in best if verdicts[way][1][0]), key=best.__getitem__)
    rows = []
    for way in precision.LAYOUTS:
        (gradient_ok, gradient_how), (picture_ok, picture_how) = verdicts[way]
        marks = [
            rule for rule, chosen in (("gradient", gradient_way), ("picture", picture_way)) if way == chosen
        ]
        rows.append(
            [
                way,
                f"{best[way]:.2f} s",
                ("agrees" if gradient_ok else "refused") + (f": {gradient_how}" if gradient_how else ""),
                ("agrees" if picture_ok else "refused") + f": {picture_how}",
                ", ".join(f"**{rule}**" for rule in marks),
            ]
        )
    speedup = best[gradient_way] / best[picture_way]
    return (
        "### What `--dtype auto` picks for inception_v3\n\n"
        + table(["way", "book run 600x512", "gradient rule (before)", "picture rule (now)", "auto by"], rows)
        + f"\n\ninception_v3 with seeded random He-initialized weights (the real ones are not on this "
        f"machine), `--preset book` on grace_hopper.jpg, all {steps} steps (max_loss off: random weights' "
        f"loss is not the book's), the best of {repeats} alternated runs of each way. By these times the "
        f"fastest way the picture rule lets through, {picture_way}, runs the book at **{speedup:.2f}x** "
        f"the speed of the gradient rule's, {gradient_way} (target: at least 1.4x).\n\n"
        f"`choose_dtype()` itself, which times four runs of one 224x224 step in each way, picked "
        f"**{now.way}** by the picture rule ({now.reason}; {measuring:.1f} s to measure, once per "
        f"machine) and {before.way} by the gradient rule ({before.reason})."
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
    parser.add_argument(
        "--repeats", type=int, default=2, help="precision: timed book runs of each auto way (default 2)"
    )
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
            body = precision_part(args.device, args.repeats)
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
