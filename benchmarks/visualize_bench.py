"""Feature-visualization benchmark: seconds per visualization (224x224, 256 steps by default) in float32
and bfloat16 on efficientnet_lite0, lucent's defaults (128 px, 512 steps) for scale, and how much
higher the Fourier parameterization takes a channel's activation than plain pixels in the same steps.
Writes the "Feature visualization" section of docs/benchmarks.md (or --doc).

    python benchmarks/visualize_bench.py                                 # the issue's settings (minutes)
    python benchmarks/visualize_bench.py --size 48 --steps 4 --lucent-steps 4 --lucent-size 32 \\
        --reach-steps 4 --reach-channels 2 --doc /tmp/v.md               # checks the script
    python benchmarks/visualize_bench.py --grid docs/images/visualize-grid.png --grid-channels 0-7

Each timed visualization is one image from seeded noise (reverie.visualize with its defaults:
Fourier parameterization, the robustness transforms, Adam at 0.05), its time from the first step to
the last (the model loaded and warmed up first). "auto" is what `--dtype auto` picks for this model
here (reverie.precision's measured choice). The reach is the channel's mean activation on the
final image (no transforms), for `--reach-channels` channels of `--layer`, Fourier against pixel.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from report import REPO, machine_summary, table, write_section

from reverie.deepdream.dreamer import load_dreamer
from reverie.deepdream.visualize import parse_indices, visualize, visualize_channels

DOC = REPO / "docs" / "benchmarks.md"
TITLE = "Feature visualization"


def timed(dreamer, layer: str, channel: int, size: int, steps: int, dtype: str) -> float:
    """Seconds for one visualization of `layer`:`channel`."""
    start = time.perf_counter()
    visualize(dreamer, f"{layer}:{channel}", size=size, steps=steps, dtype=dtype, progress=False)
    return time.perf_counter() - start


def reach(dreamer, layer: str, channel: int, size: int, steps: int, param: str) -> float:
    """The mean activation of `channel` on the final image of a `param` visualization."""
    result = visualize(dreamer, f"{layer}:{channel}", size=size, steps=steps, param=param, progress=False)
    with torch.no_grad():
        return float(dreamer.features(dreamer.to_input(result.tensor), [layer])[layer][0, channel].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--layer", default="block8")
    parser.add_argument("--channel", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--lucent-size", type=int, default=128)
    parser.add_argument("--lucent-steps", type=int, default=512)
    parser.add_argument("--reach-size", type=int, default=128)
    parser.add_argument("--reach-steps", type=int, default=128)
    parser.add_argument("--reach-channels", type=int, default=4)
    parser.add_argument("--grid", type=Path, help="also write a labelled sheet of --grid-channels here")
    parser.add_argument("--grid-channels", default="0-7")
    parser.add_argument("--grid-size", type=int, default=96)
    parser.add_argument("--grid-steps", type=int, default=128)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args()

    machine = machine_summary(args.device)
    dreamer = load_dreamer(args.model, device=args.device, dtype="float32")
    auto = dreamer.choose_dtype().way
    timed(dreamer, args.layer, args.channel, 32, 2, "float32")  # warm up
    rows = []
    for dtype in ("float32", "bfloat16"):
        seconds = timed(dreamer, args.layer, args.channel, args.size, args.steps, dtype)
        note = "what auto picks here" if auto.split()[0] == dtype else ""
        rows.append([f"{args.size}x{args.size}, {args.steps} steps, {dtype}", f"{seconds:.1f}", note])
    seconds = timed(dreamer, args.layer, args.channel, args.lucent_size, args.lucent_steps, "float32")
    rows.append(
        [
            f"lucent's defaults: {args.lucent_size} px, {args.lucent_steps} steps, float32",
            f"{seconds:.1f}",
            "",
        ]
    )

    generator = torch.Generator().manual_seed(0)
    width = {info.name: info.channels for info in dreamer.layer_table()}[dreamer.resolve_layer(args.layer)]
    channels = torch.randperm(width, generator=generator)[: args.reach_channels].tolist()
    reached = []
    for channel in channels:
        fourier = reach(dreamer, args.layer, channel, args.reach_size, args.reach_steps, "fourier")
        pixel = reach(dreamer, args.layer, channel, args.reach_size, args.reach_steps, "pixel")
        reached.append(
            [f"{args.layer}:{channel}", f"{fourier:.2f}", f"{pixel:.2f}", f"{fourier / pixel:.2f}"]
        )

    body = (
        f"{machine}\n\n{args.model}, `{args.layer}:{args.channel}`, one image from seeded noise with "
        f"reverie.visualize's defaults; `--dtype auto` picks {auto} here.\n\n"
        + table(["visualization", "seconds", "note"], rows)
        + f"\n\nReach: the channel's mean activation on the final image, {args.reach_size} px, "
        f"{args.reach_steps} steps, same seed and transforms.\n\n"
        + table(["channel", "fourier", "pixel", "fourier / pixel"], reached)
    )
    command = ("python benchmarks/visualize_bench.py " + " ".join(sys.argv[1:])).strip()
    write_section(
        TITLE if args.device == "cpu" else f"{TITLE} ({args.device.upper()})", body, command, args.doc
    )
    print(body)
    if args.grid is not None:
        sheet = visualize_channels(
            dreamer,
            args.layer,
            parse_indices(args.grid_channels),
            size=args.grid_size,
            steps=args.grid_steps,
            batch=8,
            progress=False,
        )
        sheet.sheet.save(args.grid)
        print(f"wrote {args.grid} ({args.grid.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
