"""Weight files for the dream backbones: where they are cached, how they are read and checked.

Published PyTorch weights (torchvision's `inception_v3_google-0cc3c7bd.pth`, ...) are cached
where torch.hub puts them (`$TORCH_HOME/hub/checkpoints`, default `~/.cache/torch/hub/checkpoints`),
so a file another tool already downloaded is reused. The hash prefix in the file name is the
sha256 prefix `reverie.hub.fetch` checks. Every file is read with `torch.load(weights_only=True)`
and loaded with `strict=True`; keys a backbone has no use for (auxiliary classifiers, the final
classifier) are dropped by name before that, never ignored silently.

    python -m reverie.deepdream.weights FILE    # list the keys and shapes of a weight file
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from reverie.errors import ReverieError
from reverie.hub import Remote, fetch

MAX_LISTED = 3


def hub_checkpoint_dir() -> Path:
    """torch.hub's weight cache: `$TORCH_HOME/hub/checkpoints` (default `~/.cache/torch/...`)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def torchvision_remote(url: str) -> Remote:
    """A torchvision-style weight URL (`name-<sha256 prefix>.pth`) as a checked download."""
    filename = url.rsplit("/", 1)[-1]
    hash_prefix = Path(filename).stem.rsplit("-", 1)[-1]
    return Remote(url=url, sha256=hash_prefix, filename=filename)


def offline_hint(model_name: str) -> str:
    """What to do instead of downloading the weights of `model_name`."""
    return (
        f"or give a local copy of the {model_name} weights with --weights FILE, "
        "or use --model efficientnet_lite0 (its weights come with reverie and work offline)"
    )


def cached_or_download(url: str, model_name: str) -> Path:
    """The local path of the weight file at `url`, downloaded into the hub cache on first use."""
    return fetch(torchvision_remote(url), hub_checkpoint_dir(), offline_hint=offline_hint(model_name))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a PyTorch weight file, read without executing pickled code."""
    path = Path(path)
    if not path.is_file():
        raise ReverieError(f"weight file {path} does not exist; check the path given to --weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - weights_only runs no code: any failure is a corrupt file
        # (UnpicklingError, RuntimeError, EOFError, OSError, ValueError; IndexError, KeyError and more
        # from a pickle stream cut or flipped)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReverieError(
            f"cannot read {path} as a PyTorch weight file ({reason}); give a .pth state dict with --weights"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ReverieError(f"{path} holds no state dict of tensors; give a .pth state dict with --weights")
    return dict(state)


def drop_keys(state: Mapping[str, torch.Tensor], prefixes: Sequence[str]) -> dict[str, torch.Tensor]:
    """`state` without the keys under any of `prefixes` (e.g. "fc." for a classifier we don't run)."""
    return {key: value for key, value in state.items() if not key.startswith(tuple(prefixes))}


def load_torchvision(
    model: nn.Module, path: Path | None, url: str, unused_prefixes: Sequence[str] = ()
) -> None:
    """Load a torchvision weight file into `model` (a Backbone, named by its `name`) unchanged:
    `path`, or (None) the file at `url`, cached or downloaded; the keys under `unused_prefixes` (a
    classifier reverie does not run) dropped, the rest checked strictly (`load_strict`)."""
    name = model.name
    path = cached_or_download(url, name) if path is None else Path(path)
    load_strict(model, drop_keys(read_state_dict(path), unused_prefixes), path, name)


def _listed(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f" (+{len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else "")


BATCH_COUNTER = ".num_batches_tracked"  # batch norm's training-batch counter


def load_strict(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path, model_name: str
) -> None:
    """Load `state` into `model` with strict=True, first refusing wrong keys or shapes in one line.
    Batch-norm `num_batches_tracked` counters that a file saved before PyTorch 0.4 lacks are taken as
    zero (they count training batches and play no part in evaluation)."""
    expected = model.state_dict()
    counters = {
        key: torch.zeros_like(expected[key], device="cpu")
        for key in expected
        if key.endswith(BATCH_COUNTER) and key not in state
    }
    state = {**state, **counters}
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [
        f"{key} {tuple(state[key].shape)} instead of {tuple(expected[key].shape)}"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listed(unexpected)}")
    if wrong_shape:
        problems.append(f"wrong shape {_listed(wrong_shape)}")
    if problems:
        raise ReverieError(
            f"{source} does not fit {model_name}: {'; '.join(problems)}; "
            f"give the {model_name} weight file with --weights (or leave --weights out to use the default)"
        )
    model.load_state_dict(state, strict=True)


if __name__ == "__main__":
    for key, tensor in read_state_dict(Path(sys.argv[1])).items():
        print(f"{key:60} {tuple(tensor.shape)} {tensor.dtype}")
