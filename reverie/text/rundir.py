"""A training run's directory: which files it holds and how they are written and read back.

    RUN_DIR/
      config.json         model config, tokenizer, corpus fingerprint, train options and state,
                          and the sha256 of each .safetensors file below
      model.safetensors   the latest weights
      best.safetensors    the weights with the best validation loss
      state.safetensors   optimizer moments, RNG states, carried hidden state (for --resume)
      metrics.csv         one row per step (train loss) and per evaluation (validation loss)
      loss.png            train and validation curves
      samples.txt         text sampled during training

Every file is written atomically (temporary file, then rename), and config.json last: it names
the checksums of the weight files it goes with, so a checkpoint whose files do not match (a
crash between two renames, a truncated copy, a flipped bit) is refused in one line instead of
being loaded wrong.

    python -m reverie.text.rundir RUN_DIR     # print what a run directory holds
"""

from __future__ import annotations

import csv
import hashlib
import io
import sys
from pathlib import Path
from typing import Any

import torch

from reverie import checkpoint
from reverie.errors import ReverieError
from reverie.hub import sha256_of

CONFIG = "config.json"
MODEL = "model.safetensors"
BEST = "best.safetensors"
STATE = "state.safetensors"
METRICS = "metrics.csv"
PLOT = "loss.png"
SAMPLES = "samples.txt"
RUN_FILES = (CONFIG, MODEL, BEST, STATE, METRICS, PLOT, SAMPLES)

METRIC_COLUMNS = (
    "step",
    "epoch",
    "tokens",
    "lr",
    "train_loss",
    "val_loss",
    "val_bits",
    "tokens_per_s",
    "elapsed_s",
)


def has_run(run_dir: Path) -> bool:
    """Whether `run_dir` already holds a run (its config.json)."""
    return (Path(run_dir) / CONFIG).is_file()


def read_config(run_dir: Path) -> dict[str, Any]:
    """config.json of a run, refusing a directory that holds none or one from another version."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReverieError(
            f"run directory {run_dir} does not exist; train one with `reverie train CORPUS --out {run_dir}`"
        )
    if not (run_dir / CONFIG).is_file():
        raise ReverieError(
            f"{run_dir} holds no checkpoint (no {CONFIG}); "
            f"train one with `reverie train CORPUS --out {run_dir}`"
        )
    config = checkpoint.load_json(run_dir / CONFIG)
    for key in ("model", "tokenizer", "files"):
        if not isinstance(config.get(key), dict):
            raise ReverieError(
                f"{run_dir / CONFIG} has no {key!r} section; it is corrupted or not a text run"
            )
    return config


def load_checked(run_dir: Path, config: dict[str, Any], name: str) -> dict[str, torch.Tensor]:
    """Tensors of `name` (e.g. model.safetensors), after checking them against config.json's sha256."""
    return checkpoint.load_tensor_bytes(read_checked(run_dir, config, name), Path(run_dir) / name)


def read_checked(run_dir: Path, config: dict[str, Any], name: str) -> bytes:
    """The bytes of `name` (e.g. state.safetensors), refused unless they match config.json's sha256."""
    path = Path(run_dir) / name
    expected = config["files"].get(name)
    if expected is None or not path.is_file():
        raise ReverieError(f"no checkpoint at {path}; train one first with `reverie train`")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != expected:
        raise ReverieError(
            f"checkpoint {path} does not match its checksum in {CONFIG}: it is truncated, corrupted or from "
            "an interrupted save; retrain or restore it"
        )
    return data


def save_checkpoint(
    run_dir: Path, config: dict[str, Any], tensors: dict[str, dict[str, torch.Tensor]]
) -> None:
    """Write each `tensors[name]` to RUN_DIR/name, then config.json with their checksums.

    Files not in `tensors` keep their checksum from `config["files"]` (e.g. best.safetensors when
    the validation loss did not improve).
    """
    run_dir = Path(run_dir)
    files = dict(config.get("files", {}))
    for name, group in tensors.items():
        checkpoint.save_tensors(run_dir / name, group)
        files[name] = sha256_of(run_dir / name)
    config["files"] = files
    checkpoint.save_json(run_dir / CONFIG, config)


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """metrics.csv from metric rows (missing values are left empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _format(row.get(key)) for key in METRIC_COLUMNS})
    checkpoint.write_text_atomic(path, buffer.getvalue())


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of metrics.csv as dicts of numbers (empty cells become None); [] when there is none."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key in METRIC_COLUMNS:
                value = raw.get(key) or ""
                row[key] = (
                    None if value == "" else (int(value) if key in ("step", "tokens") else float(value))
                )
            rows.append(row)
    return rows


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly, so a resumed run's metrics match an uninterrupted one
    return str(value)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    info = read_config(target)
    state = info.get("state", {})
    print(
        f"{target}: {info['model'].get('kind')} model, vocab {len(info['tokenizer'].get('vocab', []))}, "
        f"step {state.get('step')}, best val loss {state.get('best_val_loss')}"
    )
    for file_name in RUN_FILES:
        print(f"  {file_name:18} {'present' if (target / file_name).exists() else '-'}")
