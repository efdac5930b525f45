"""A training run's directory: its files, and `RunConfig`, the one schema of its config.json.

    RUN_DIR/
      config.json         RunConfig: model config, tokenizer, corpus fingerprint, train options and
                          state, and the sha256 of each .safetensors file below
      model.safetensors   the latest weights
      best.safetensors    the weights with the best validation loss
      state.safetensors   optimizer moments, RNG states, carried hidden state (for --resume)
      metrics.csv         one row per step (train loss) and per evaluation (validation loss)
      loss.png            train and validation curves
      samples.txt         text sampled during training

    config = RunConfig.load("runs/shakespeare")      # refuses a missing, corrupt or foreign config
    weights = config.load_tensors("runs/shakespeare", BEST)   # checked against its sha256

Every file is written atomically (temporary file, then rename), and config.json last: it names
the checksums of the weight files it goes with, so a checkpoint whose files do not match (a
crash between two renames, a truncated copy, a flipped bit) is refused in one line instead of
being loaded wrong. Everything that reads or writes config.json goes through RunConfig.

    python -m reverie.text.rundir RUN_DIR     # print what a run directory holds
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reverie import checkpoint
from reverie.errors import ReverieError
from reverie.hub import sha256_of
from reverie.text.models import ModelConfig
from reverie.text.options import TrainOptions
from reverie.text.tokenizer import Tokenizer

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


@dataclass
class CorpusInfo:
    """What the run was trained on: the sources as named, their fingerprint, and the token counts."""

    sources: list[str]
    fingerprint: str
    tokens: int
    train_tokens: int
    val_tokens: int


@dataclass
class TrainState:
    """Where training stands. The optimizer, RNG and carried states are JSON with placeholders for
    the tensors that state.safetensors holds (see reverie.checkpoint.split_tensors)."""

    step: int
    epoch: int
    step_in_epoch: int
    tokens: int
    steps_per_epoch: int
    elapsed_s: float
    best_val_loss: float | None
    best_step: int | None
    last_val_loss: float | None
    last_eval_step: int | None
    dtype: str
    world_size: int
    optimizer: Any
    rng: Any
    rng_ranks: Any
    carry: Any


@dataclass
class RunConfig:
    """The contents of config.json. A run that only generates (no training state) has no corpus,
    options or state."""

    model: ModelConfig
    tokenizer: Tokenizer
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    corpus: CorpusInfo | None = None
    options: TrainOptions | None = None
    state: TrainState | None = None

    # ---- JSON ----

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model.to_json(),
            "tokenizer": self.tokenizer.to_json(),
            "corpus": None if self.corpus is None else dataclasses.asdict(self.corpus),
            "options": None if self.options is None else dataclasses.asdict(self.options),
            "state": None if self.state is None else dataclasses.asdict(self.state),
            "files": dict(self.files),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: Path, training: bool = False) -> RunConfig:
        """The config in `data` (read from `source`, named in errors), refused in one line when a
        section is missing or malformed. Generating needs only the model, the tokenizer and the
        checksums; with `training` (resuming) the corpus, options and state are read too."""
        for key in ("model", "tokenizer", "files"):
            if not isinstance(data.get(key), dict):
                raise ReverieError(f"{source} has no {key!r} section; it is corrupted or not a text run")
        config = cls(
            model=ModelConfig.from_json(data["model"]),
            tokenizer=Tokenizer.from_json(data["tokenizer"]),
            files={str(name): str(digest) for name, digest in data["files"].items()},
        )
        if training:
            config.corpus = _section(CorpusInfo, data.get("corpus"), source, "corpus")
            config.options = _section(TrainOptions, data.get("options"), source, "options")
            config.state = _section(TrainState, data.get("state"), source, "state")
        return config

    # ---- the directory ----

    @classmethod
    def load(cls, run_dir: Path, training: bool = False) -> RunConfig:
        """config.json of a run, refusing a directory that holds none or one from another version
        (`training`: with the sections a resumed run needs, see `from_json`)."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise ReverieError(
                f"run directory {run_dir} does not exist; "
                f"train one with `reverie train CORPUS --out {run_dir}`"
            )
        if not (run_dir / CONFIG).is_file():
            raise ReverieError(
                f"{run_dir} holds no checkpoint (no {CONFIG}); "
                f"train one with `reverie train CORPUS --out {run_dir}`"
            )
        return cls.from_json(checkpoint.load_json(run_dir / CONFIG), run_dir / CONFIG, training)

    def save(self, run_dir: Path, tensors: dict[str, dict[str, torch.Tensor]]) -> None:
        """Write each `tensors[name]` to RUN_DIR/name, then config.json with their checksums.

        Files not in `tensors` keep their checksum from `files` (e.g. best.safetensors when the
        validation loss did not improve).
        """
        run_dir = Path(run_dir)
        for name, group in tensors.items():
            checkpoint.save_tensors(run_dir / name, group)
            self.files[name] = sha256_of(run_dir / name)
        checkpoint.save_json(run_dir / CONFIG, self.to_json())

    def read_checked(self, run_dir: Path, name: str) -> bytes:
        """The bytes of `name` (e.g. state.safetensors), refused unless they match their sha256."""
        path = Path(run_dir) / name
        expected = self.files.get(name)
        if expected is None or not path.is_file():
            raise ReverieError(f"no checkpoint at {path}; train one first with `reverie train`")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected:
            raise ReverieError(
                f"checkpoint {path} does not match its checksum in {CONFIG}: it is truncated, corrupted or "
                "from an interrupted save; retrain or restore it"
            )
        return data

    def load_tensors(self, run_dir: Path, name: str) -> dict[str, torch.Tensor]:
        """Tensors of `name` (e.g. model.safetensors), after checking them against their sha256."""
        return checkpoint.load_tensor_bytes(self.read_checked(run_dir, name), Path(run_dir) / name)


def _section(cls: type, data: Any, source: Path, key: str) -> Any:
    """A dataclass from a JSON object (None stays None); wrong or missing keys are refused."""
    if data is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    if not isinstance(data, dict) or set(data) - names or required - set(data):
        raise ReverieError(
            f"the {key!r} section of {source} does not fit this version of reverie; it is corrupted or "
            "from an incompatible version"
        )
    return cls(**data)


def has_run(run_dir: Path) -> bool:
    """Whether `run_dir` already holds a run (its config.json)."""
    return (Path(run_dir) / CONFIG).is_file()


# ---- metrics.csv ----


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
    info = RunConfig.load(target, training=True)
    state = info.state
    print(
        f"{target}: {info.model.kind} model, vocab {info.tokenizer.vocab_size}, "
        f"step {state.step if state else '-'}, best val loss {state.best_val_loss if state else '-'}"
    )
    for file_name in RUN_FILES:
        print(f"  {file_name:18} {'present' if (target / file_name).exists() else '-'}")
