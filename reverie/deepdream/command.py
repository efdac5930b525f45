"""The `reverie dream` and `reverie layers` subcommands: parse, call the API, write files.

    reverie dream photo.jpg                          # -> photo-dream.png
    reverie dream photo.jpg out.jpg --preset book    # the book's run, exactly
    reverie dream photo.jpg --model efficientnet_lite0 --layers block8:1,block10:2
    reverie dream photo.jpg --channels mixed4:12,97 --keep-colors --tile 512
    reverie dream photo.jpg --zoom-frames 30 --zoom 0.05     # numbered PNGs + an animated GIF
    reverie dream frames/ --out dreamed/             # every image of a folder or glob (deepdream.folder)
    reverie dream clip.mp4 out.mp4 --max-size 512    # a video, the dream carried along the flow
    reverie layers inception_v3                      # the layer names --layers accepts
    reverie layers --module my_pkg.nets:build        # any torch.nn.Module's layers (module paths)
    reverie visualize efficientnet_lite0 block8:3    # what channel 3 wants, from noise (deepdream.visualize)
    reverie visualize efficientnet_lite0 block8 --channels 0-15 --grid --size 128

The dream options' flags are generated from `DreamOptions` (reverie.deepdream.options), so their
names, help and checks are defined there once; the flags here are the command's own.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any, TextIO

from PIL import Image

from reverie.deepdream.backbone import available_models, list_layers
from reverie.deepdream.dreamer import dream_octaves
from reverie.deepdream.folder import classify, dream_folder
from reverie.deepdream.hooked import import_module_spec, wrap_module
from reverie.deepdream.images import check_output, default_output, save_image
from reverie.deepdream.options import PRESETS, DreamOptions
from reverie.deepdream.video import VideoOptions, dream_video, frames_dir_for
from reverie.deepdream.videoio import is_video_path
from reverie.deepdream.visualize import (
    VisualizeOptions,
    as_dreamer,
    grid,
    parse_indices,
    parse_target,
    visualize,
    visualize_channels,
)
from reverie.deepdream.zoom import dream_zoom, frame_paths, save_zoom
from reverie.device import add_device_flag
from reverie.errors import require
from reverie.interrupt import EXIT_CODES
from reverie.options import add_flags, add_progress_flags, flag, flag_of, given


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `dream`, `layers` and `visualize` to the `reverie` command."""
    dream = subparsers.add_parser(
        "dream", help="DeepDream an image", description="Amplify what a pretrained convnet sees in an image."
    )
    dream.add_argument(
        "input",
        help="the image to dream on (PNG, JPEG, ...), a video (mp4, mov, mkv, webm, avi, animated GIF), "
        "or a folder or glob pattern of images with --out",
    )
    dream.add_argument(
        "output",
        nargs="?",
        help="where to write (format from the extension; default INPUT-dream.png, for a video "
        "INPUT-dream with the input's extension)",
    )
    dream.add_argument(
        "--preset", choices=list(PRESETS), help="a published setting: the book's, keras.io's, google's"
    )
    add_flags(
        dream,
        DreamOptions,
        overrides={
            "model": {"choices": available_models(), "metavar": None},  # the registry as it is now
            "step": {"type": float},  # a number here; the API also takes a PixelStep
            "channels": {"action": "append"},  # --channels a:1 --channels b:2,3
        },
    )
    dream.add_argument(
        "--save-octaves", action="store_true", help="also write OUTPUT-octave{i}.png for each octave"
    )
    dream.add_argument(
        "--zoom-frames", type=int, metavar="N", help="make a zoom animation of N frames (GIF + PNGs)"
    )
    dream.add_argument("--zoom", type=float, default=0.05, help="zoom per frame (default 0.05)")
    add_progress_flags(dream, DreamOptions)
    dream.add_argument(
        "--out",
        metavar="OUT_DIR",
        help="write the dreams of every image of INPUT (a folder or glob) into this folder, keeping the "
        "names; images already there are skipped; under torchrun the images are split across the processes",
    )
    add_flags(dream.add_argument_group("video (needs reverie[video])"), VideoOptions)
    dream.set_defaults(handler=run_dream)

    layers = subparsers.add_parser("layers", help="list a convnet's layer names for --layers")
    layers.add_argument(
        "model", nargs="?", help=f"one of {', '.join(available_models())}, or PACKAGE.MODULE:FUNCTION"
    )
    layers.add_argument(
        "--module",
        metavar="PKG.MODULE:FUNCTION",
        help="list the layers (module paths) of the torch.nn.Module this function builds",
    )
    layers.set_defaults(handler=run_layers)

    visualize = subparsers.add_parser(
        "visualize",
        help="render what a convnet's channel wants, from noise",
        description="Feature visualization: the image that maximizes a channel, neuron or layer.",
    )
    visualize.add_argument(
        "model", help=f"one of {', '.join(available_models())}, or PACKAGE.MODULE:FUNCTION building a network"
    )
    visualize.add_argument(
        "target", help="LAYER (the whole layer) or LAYER:CHANNEL,... (e.g. block8:3 or block8:0-7)"
    )
    visualize.add_argument("--channels", metavar="RANGE", help="channels of LAYER, one image each: 0-63,70")
    visualize.add_argument("--grid", action="store_true", help="write one labelled sheet of all the images")
    visualize.add_argument(
        "--preprocess", help="a module's input: imagenet (default), [-1,1] or [0,1]", metavar="NAME"
    )
    visualize.add_argument("--weights", metavar="FILE", help="a local weight file for a named model")
    add_device_flag(visualize)
    visualize.add_argument(
        "--out", metavar="PNG", help="where to write (default MODEL-LAYER[-CHANNEL].png; several: -cN added)"
    )
    add_flags(visualize, VisualizeOptions)
    add_progress_flags(visualize, VisualizeOptions)
    visualize.set_defaults(handler=run_visualize)


def dream_options(args: argparse.Namespace) -> dict[str, Any]:
    """The API options the user gave on the command line, --no-progress among them (the rest come
    from the preset or the defaults)."""
    options = given(args, DreamOptions)
    if "channels" in options:
        options["channels"] = " ".join(options["channels"])
    return options


def run_dream(args: argparse.Namespace) -> None:
    kind, input_path = classify(args.input)
    if kind in ("file", "missing") and is_video_path(input_path):  # a missing clip: said by the video path
        run_dream_video(args, input_path)
        return
    if args.out is not None or kind in ("folder", "pattern"):
        _refuse_video_flags(args, "a folder of images")
        run_dream_folder(args)
        return
    _refuse_video_flags(args, "an image")
    output = Path(args.output) if args.output else default_output(input_path)
    options = dream_options(args)
    with _warnings_as_lines():
        if args.zoom_frames is not None:
            for path in [output, *frame_paths(output, args.zoom_frames)[1][:1]]:
                check_output(path, input_path)
            frames = dream_zoom(input_path, args.zoom_frames, args.zoom, preset=args.preset, **options)
            written = save_zoom(frames, output, input_path)
            print(f"wrote {written[0]} and {len(written) - 1} frames {written[1]} ...")
            return
        check_output(output, input_path)  # refuse a bad output before spending minutes on the dream
        result = dream_octaves(input_path, preset=args.preset, **options)
        save_image(result.image, output, input_path)
        print(output)
        if args.save_octaves:
            for index, image in enumerate(result.octaves, start=1):
                path = output.with_name(f"{output.stem}-octave{index}{output.suffix}")
                save_image(image, path, input_path)
                print(path)


def run_dream_folder(args: argparse.Namespace) -> None:
    require(args.out is not None, f"{args.input} names several images; pass --out OUT_DIR for the dreams")
    require(
        args.output is None and args.zoom_frames is None and not args.save_octaves,
        "--out dreams a folder: an OUTPUT file, --zoom-frames and --save-octaves apply to one image",
    )
    with _warnings_as_lines():
        done = dream_folder(
            args.input,
            args.out,
            preset=args.preset,
            on_written=lambda path: print(path, flush=True),
            **dream_options(args),
        )
    if done.skipped:
        print(f"reverie: skipped {len(done.skipped)} image(s) already in {args.out}", file=sys.stderr)


def _refuse_video_flags(args: argparse.Namespace, what: str) -> None:
    typed = given(args, VideoOptions)
    require(not typed, f"{flag(next(iter(typed), ''))} is for videos; {args.input} is {what}")


def run_dream_video(args: argparse.Namespace, input_path: Path) -> None:
    require(
        args.out is None and args.zoom_frames is None and not args.save_octaves,
        "a video is dreamed into one OUTPUT video: --out, --zoom-frames and --save-octaves are for images",
    )
    output = (
        Path(args.output)
        if args.output
        else input_path.with_name(f"{input_path.stem}-dream{input_path.suffix}")
    )
    options = {**dream_options(args), **given(args, VideoOptions)}
    with _warnings_as_lines():
        done = dream_video(input_path, output, preset=args.preset, **options)
    if done.note:
        print(f"reverie: warning: {done.note}", file=sys.stderr)
    if done.stopped:
        kept = done.kept  # by all the processes, under torchrun
        print(
            f"reverie: {done.stopped}: stopped after {kept} of {done.info.frames} frames, kept in "
            f"{frames_dir_for(output)}; run the same command again to resume",
            file=sys.stderr,
        )
        sys.exit(EXIT_CODES[done.stopped])
    if done.output is not None:  # under torchrun, rank 0 writes the video
        print(done.output)


def _model_arg(text: str) -> Any:
    """A registered model's name as it is, PACKAGE.MODULE:FUNCTION as the network it builds."""
    return import_module_spec(text) if ":" in text else text


def run_layers(args: argparse.Namespace) -> None:
    require(
        (args.model is None) != (args.module is None),
        "give a MODEL or --module PACKAGE.MODULE:FUNCTION (one of them)",
    )
    spec = args.module or args.model
    if ":" in spec:
        rows = wrap_module(import_module_spec(spec)).layer_table()
    else:
        rows = list_layers(spec)
    require(bool(rows), f"model {spec} lists no layers")
    print(f"{'layer':24} {'aliases':12} {'channels':>8} {'stride':>6}")
    for info in rows:
        print(f"{info.name:24} {','.join(info.aliases) or '-':12} {info.channels:8d} {info.stride:6d}")


def run_visualize(args: argparse.Namespace) -> None:
    options = given(args, VisualizeOptions)
    model = _model_arg(args.model)
    require(
        args.preprocess is None or not isinstance(model, str),
        "--preprocess is for a PACKAGE.MODULE:FUNCTION network; a named model has its own",
    )
    layer, listed = parse_target(args.target)
    if args.channels is not None:
        require(listed is None, f"give the channels in {args.target} or with --channels, not both")
        listed = parse_indices(args.channels)
    if args.out:
        check_output(args.out)  # a bad output is refused before any weights load
    dreamer = as_dreamer(model, args.weights, args.device, options.get("dtype") or "auto", args.preprocess)
    base = Path(args.out) if args.out else visualize_output(dreamer.name, layer)
    check_output(base)
    entries: list[tuple[Image.Image, str, str]] = []  # (image, label, file name suffix)
    with _warnings_as_lines():
        if listed is None:
            images = visualize(dreamer, layer, **options).images
            entries = [(image, layer, f"-{k}" if len(images) > 1 else "") for k, image in enumerate(images)]
        else:
            sheet = visualize_channels(dreamer, layer, listed, **options)
            for c, result in zip(listed, sheet.results):
                images = result.images
                for k, image in enumerate(images):
                    suffix = (f"-c{c}" if len(listed) > 1 else "") + (f"-{k}" if len(images) > 1 else "")
                    entries.append((image, f"{layer}:{c}", suffix))
    if args.grid or len(entries) == 1:
        written = grid([e[0] for e in entries], [e[1] for e in entries]) if args.grid else entries[0][0]
        written.save(base)
        print(base)
        return
    for image, _, suffix in entries:
        path = base.with_name(f"{base.stem}{suffix}{base.suffix}")
        image.save(path)
        print(path)


def visualize_output(model: str, layer: str) -> Path:
    """Where `reverie visualize` writes without --out, and the name of the page's sheet:
    MODEL-LAYER.png, a '/' of a module path written '_'."""
    return Path(f"{model}-{layer}.png".replace("/", "_"))


def visualize_command(model: str, layer: str, channels: str, *, grid: bool = True, **options: Any) -> str:
    """The `reverie visualize` command line that draws `channels` ('0-7', '3,12') of `layer` with
    `options` (VisualizeOptions' names: size=96, steps=64), as the page shows it."""
    words = ["reverie", "visualize", model, layer, "--channels", channels, *(["--grid"] if grid else [])]
    for name, value in options.items():
        words += [flag_of(VisualizeOptions, name), str(value)]
    return shlex.join(words)


class _warnings_as_lines:
    """Show Python warnings (a dropped octave, ...) as one `reverie: warning:` line on stderr."""

    def __enter__(self) -> None:
        self._catcher = warnings.catch_warnings()
        self._catcher.__enter__()
        warnings.showwarning = self._show

    def __exit__(self, *exc: object) -> None:
        self._catcher.__exit__(*exc)

    @staticmethod
    def _show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        print(f"reverie: warning: {message}", file=sys.stderr)
