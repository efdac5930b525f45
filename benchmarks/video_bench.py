"""DeepDream-on-video benchmark: how steady `--flow` is against `--independent`, whether the dream
drifts over a long clip, and how fast frames go at 512 px with the time split between flow and dream.
Writes the "DeepDream on video" section of docs/benchmarks.md (or --doc).

    python benchmarks/video_bench.py                     # 300 frames at 512 px (about 15 minutes on 2 cores)
    python benchmarks/video_bench.py --frames 8 --compare 4 --width 192 --doc /tmp/v.md   # checks the script
    python benchmarks/video_bench.py --device cuda --doc /tmp/v.md
    python benchmarks/video_bench.py --gif docs/images/video-flow.gif --frames 24 --width 192 --doc /tmp/v.md

The clip is camera-free: a slow pan and zoom over matplotlib's sample photo grace_hopper.jpg, 16:9,
`--width` px wide (the default 512), rendered from the photo enlarged twice (bicubic at twice the
frame size, then shrunk with Lanczos so nothing aliases): half a pixel
down and 0.05% closer each frame. The dream is
efficientnet_lite0 with its real weights and reverie's default dream options unless given.

- stability (the issue's measure, reverie.deepdream.flow.instability): the mean absolute difference
  (0-255) between each output frame and the previous output warped by the input's flow, over the
  pixels the flow follows, for --flow against --independent over the first `--compare` frames; the
  input's own score (the warp's error on undreamed frames) is the floor. Target: flow at most half
  of independent.
- drift: the largest difference over the `--frames` frames of --flow between an output frame's mean
  brightness (and each colour's mean) and its input frame's, in 0-255 levels. Target: within 3.
- speed: frames/s of --flow, and the share of a frame's time in the flow (two Farneback flows, the
  occlusion test, the warp) and in the dream.
"""

from __future__ import annotations

import argparse
import sys
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.cbook
import numpy as np
import torch
from PIL import Image
from report import REPO, machine_summary, table, write_section

from reverie.deepdream.dreamer import load_dreamer
from reverie.deepdream.flow import instability
from reverie.deepdream.video import Carrier, dream_frame
from reverie.deepdream.videoio import write_video

DOC = REPO / "docs" / "benchmarks.md"
TITLE = "DeepDream on video"


def pan_and_zoom(frames: int, width: int, speed: float = 1.0) -> list[np.ndarray]:
    """`frames` 16:9 frames `width` px wide: a window that moves down the photo by half a frame pixel
    per frame and zooms in by 0.05% per frame (times `speed`), centred across (the motion per frame is
    the same whatever the number of frames)."""
    photo = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    big = photo.resize((photo.width * 2, photo.height * 2), Image.Resampling.LANCZOS)
    height = round(width * 9 / 16 / 2) * 2
    out = []
    for t in range(frames):
        scale = max(0.5, 1.0 - 0.0005 * speed * t)
        window_w = big.width * 0.9 * scale
        step = window_w / width  # photo pixels per frame pixel
        left = (big.width - window_w) / 2
        top = min(big.height - height * step, big.height * 0.04 + 0.5 * speed * step * t)
        # rendered at twice the size and shrunk (Lanczos): no aliasing when the photo is minified
        affine = (step / 2, 0, left, 0, step / 2, top)
        frame = big.transform((width * 2, height * 2), Image.Transform.AFFINE, affine, Image.BICUBIC)
        out.append(np.asarray(frame.resize((width, height), Image.Resampling.LANCZOS)))
    return out


def dream_clip(plan, frames: list[np.ndarray], mode: str) -> tuple[list[np.ndarray], float, float]:
    """The dreamed frames in `mode`, and the seconds spent in the flow and in the dream."""
    carrier = Carrier(mode)
    outputs, flow_seconds, dream_seconds = [], 0.0, 0.0
    for index, frame in enumerate(frames):
        started = time.perf_counter()
        start = carrier.start(frame)
        flowed = time.perf_counter()
        dreamed = dream_frame(plan, start)
        finished = time.perf_counter()
        outputs.append(carrier.finish(frame, dreamed))
        flow_seconds += flowed - started + time.perf_counter() - finished
        dream_seconds += finished - flowed
        print(f"  {mode} frame {index + 1}/{len(frames)}", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return outputs, flow_seconds, dream_seconds


def drift(outputs: list[np.ndarray], inputs: list[np.ndarray]) -> tuple[float, float]:
    """The largest |mean brightness| and |mean colour| difference (0-255) of output against input frames."""
    brightness, colour = 0.0, 0.0
    for output, frame in zip(outputs, inputs):
        shift = output.reshape(-1, 3).astype(np.float64).mean(0) - frame.reshape(-1, 3).astype(
            np.float64
        ).mean(0)
        brightness = max(brightness, abs(float(shift.mean())))
        colour = max(colour, float(np.abs(shift).max()))
    return brightness, colour


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--frames", type=int, default=300, help="frames of --flow (drift, speed); default 300"
    )
    parser.add_argument("--compare", type=int, default=60, help="frames for flow against independent (60)")
    parser.add_argument("--width", type=int, default=512, help="frame width in pixels (default 512)")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--octaves", type=int, default=None, help="dream octaves (default: reverie's)")
    parser.add_argument("--iterations", type=int, default=None, help="steps per octave (default: reverie's)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--doc", type=Path, default=DOC, help="where the section goes (default docs/benchmarks.md)"
    )
    parser.add_argument(
        "--gif", type=Path, help="also write input | independent | flow side by side as a GIF"
    )
    parser.add_argument("--fps", type=int, default=10, help="the GIF's frame rate (default 10)")
    parser.add_argument("--speed", type=float, default=1.0, help="pan and zoom this many times faster")
    args = parser.parse_args()
    compare = min(args.compare, args.frames)

    machine = machine_summary(args.device)
    frames = pan_and_zoom(args.frames, args.width, args.speed)
    dreamer = load_dreamer(args.model, device=args.device)
    options = {
        k: v for k, v in {"octaves": args.octaves, "iterations": args.iterations}.items() if v is not None
    }
    plan = dreamer.plan(progress=False, **options)
    flowed, flow_s, dream_s = dream_clip(plan, frames, "flow")
    independent, _, independent_dream_s = dream_clip(plan, frames[:compare], "independent")

    floor = instability(frames[:compare], frames[:compare])
    steady_flow = instability(flowed[:compare], frames[:compare])
    steady_independent = instability(independent, frames[:compare])
    brightness, colour = drift(flowed, frames)
    _, independent_colour = drift(independent, frames[:compare])
    total = flow_s + dream_s
    height = frames[0].shape[0]
    rows = [
        ["stability, --flow (0-255, lower is steadier)", f"{steady_flow:.2f}", f"first {compare} frames"],
        ["stability, --independent", f"{steady_independent:.2f}", f"first {compare} frames"],
        ["flow / independent", f"{steady_flow / steady_independent:.2f}", "target at most 0.5"],
        ["the input's own score (the warp's error)", f"{floor:.2f}", "the floor"],
        [
            "drift of mean brightness, --flow",
            f"{brightness:.2f}",
            f"largest over {args.frames} frames; target 3",
        ],
        ["drift of a colour's mean, --flow", f"{colour:.2f}", f"--independent: {independent_colour:.2f}"],
        ["frames/s, --flow", f"{args.frames / total:.3f}", f"{args.width}x{height}"],
        ["frames/s, --independent", f"{compare / independent_dream_s:.3f}", "the dream alone"],
        [
            "share of time in the flow",
            f"{flow_s / total:.1%}",
            f"{flow_s / args.frames * 1000:.0f} ms a frame",
        ],
        ["share of time in the dream", f"{dream_s / total:.1%}", f"{dream_s / args.frames:.2f} s a frame"],
    ]
    settings = ", ".join(f"{k} {v}" for k, v in options.items()) or "reverie's default dream options"
    body = (
        f"{machine}\n\n{args.model} ({settings}), a pan and zoom over grace_hopper.jpg, "
        f"{args.width}x{height}, {args.frames} frames, dtype {plan.dtype}.\n\n"
        + table(["measure", "value", "note"], rows)
    )
    command = "python benchmarks/video_bench.py " + " ".join(sys.argv[1:])
    write_section(
        TITLE if args.device == "cpu" else f"{TITLE} ({args.device.upper()})", body, command.strip(), args.doc
    )
    print(body)
    if args.gif is not None:
        count = min(len(independent), len(flowed))
        panels = [np.concatenate([frames[i], independent[i], flowed[i]], axis=1) for i in range(count)]
        path, _ = write_video(panels, args.gif, Fraction(args.fps))
        print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
