"""A training run's directory: its files and `RunConfig` (the one schema of its config.json); the
lock that lets one process at a time write it is reverie.text.runlock.

    RUN_DIR/
      config.json                config: model, tokenizer, corpus fingerprint, options, training
                                 state, and which weight files it goes with (name and sha256)
      weights-<sha>.safetensors  the latest weights, and the weights with the best validation loss
                                 (one file when they are the same)
      state-<sha>.safetensors    optimizer moments, RNG states, carried hidden state (for --resume)
      metrics.csv                one row per step (train loss) and per evaluation (validation loss)
      loss.png                   train and validation curves
      samples.txt                text sampled during training
      .lock                      held while a process trains into the folder

    config = RunConfig.load("runs/shakespeare")             # refuses a missing, corrupt or foreign config
    weights = config.load_tensors("runs/shakespeare", BEST)  # checked against its sha256

A save never changes a file a previous checkpoint uses: the tensors go to new files named by
their content's sha256 (written and flushed to disk), then config.json is replaced in one rename,
and only then are the files no checkpoint refers to any more removed. A kill at any instant
leaves config.json naming complete files: the previous checkpoint or the new one. Everything
that reads or writes config.json goes through RunConfig.

    python -m reverie.text.rundir RUN_DIR     # print what a run directory holds
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reverie import checkpoint
from reverie.errors import ReverieError, require
from reverie.options import build, keywords_of, options_of
from reverie.text.language_model import ModelConfig
from reverie.text.options import TrainOptions
from reverie.text.tokenizer import Tokenizer

CONFIG = "config.json"
METRICS = "metrics.csv"
PLOT = "loss.png"
SAMPLES = "samples.txt"
LOCK = ".lock"
READ_ATTEMPTS = 20  # config.json re-read while saves keep replacing the files it names
# the roles of a run's tensor files (config.json's "files" keys), and the name each file kind takes
MODEL, BEST, STATE = "model", "best", "state"
KIND = {MODEL: "weights", BEST: "weights", STATE: "state"}
STORED = re.compile(r"(weights|state)-[0-9a-f]{16}\.safetensors")
LEGACY = {"model.safetensors": MODEL, "best.safetensors": BEST, "state.safetensors": STATE}  # format 1
TEMPORARY = re.compile(r"\..+\.(tmp|part)")  # an atomic write that was interrupted
RUN_FILES = (CONFIG, METRICS, PLOT, SAMPLES, LOCK, *LEGACY)

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
    samples_bytes: int = 0  # the length of samples.txt at this checkpoint (a resumed run cuts what follows)
    evals_since_best: int = 0  # evaluations in a row without a better validation loss (--patience)


@dataclass(frozen=True)
class Stored:
    """A tensor file of the run: its name in the folder and its sha256."""

    path: str
    sha256: str


@dataclass
class RunConfig:
    """The contents of config.json. A run that only generates (no training state) has no corpus,
    options or state."""

    model: ModelConfig
    tokenizer: Tokenizer
    files: dict[str, Stored] = field(default_factory=dict)  # role (MODEL, BEST, STATE) -> file
    corpus: CorpusInfo | None = None
    options: TrainOptions | None = None
    state: TrainState | None = None

    # ---- JSON ----

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model.to_json(),
            "tokenizer": self.tokenizer.to_json(),
            "corpus": None if self.corpus is None else dataclasses.asdict(self.corpus),
            "options": None if self.options is None else keywords_of(self.options),
            "state": None if self.state is None else dataclasses.asdict(self.state),
            "files": {role: dataclasses.asdict(stored) for role, stored in self.files.items()},
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
            files=_files(data["files"], source),
        )
        if training:
            config.corpus = _section(CorpusInfo, data.get("corpus"), source, "corpus")
            config.options = _options(data.get("options"), config.model, source)
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

    @classmethod
    def load_checkpoint(
        cls, run_dir: Path, role: str, training: bool = False
    ) -> tuple[RunConfig, str, dict[str, torch.Tensor]]:
        """config.json and the tensors of `role` (MODEL where the run has no file of that role), as
        one consistent checkpoint while another process may be saving into the run: a save removes
        the files the previous config.json named only after replacing it, so a reader that finds
        its files gone reads config.json again (the new checkpoint) instead of failing. Returns
        (config, the role read, tensors)."""
        for attempt in range(READ_ATTEMPTS):
            config = cls.load(run_dir, training)
            found = role if role in config.files else MODEL
            try:
                return config, found, config.load_tensors(run_dir, found)
            except ReverieError:
                if attempt == READ_ATTEMPTS - 1 or cls.load(run_dir, training) == config:
                    raise  # nothing was saved meanwhile: the files are really missing or corrupt
        raise AssertionError("unreachable")

    def store(self, run_dir: Path, tensors: dict[str, dict[str, torch.Tensor]]) -> None:
        """Write each role's tensors to a file named by their sha256 (kept as it is if it exists
        already) and point `files` at it; no file a checkpoint on disk uses is changed. Roles not
        in `tensors` keep their file (best when the validation loss did not improve)."""
        run_dir = Path(run_dir)
        for role, group in tensors.items():
            data = checkpoint.tensor_bytes(group)
            digest = hashlib.sha256(data).hexdigest()  # of the bytes written, not of a file re-read
            name = f"{KIND[role]}-{digest[:16]}.safetensors"
            if not _holds(run_dir / name, digest):
                checkpoint.write_bytes_atomic(run_dir / name, data)
            self.files[role] = Stored(name, digest)

    def commit(self, run_dir: Path) -> None:
        """Make this the run's checkpoint: replace config.json in one step, then remove the tensor
        files and interrupted writes that no checkpoint refers to any more."""
        run_dir = Path(run_dir)
        checkpoint.save_json(run_dir / CONFIG, self.to_json())
        used = {stored.path for stored in self.files.values()}
        for entry in run_dir.iterdir():
            stale = STORED.fullmatch(entry.name) or entry.name in LEGACY or TEMPORARY.fullmatch(entry.name)
            if stale and entry.name not in used:
                entry.unlink(missing_ok=True)

    def save(self, run_dir: Path, tensors: dict[str, dict[str, torch.Tensor]]) -> None:
        """`store` then `commit`."""
        self.store(run_dir, tensors)
        self.commit(run_dir)

    def read_checked(self, run_dir: Path, role: str) -> bytes:
        """The bytes of the file of `role` (MODEL, BEST, STATE), refused unless they match its sha256."""
        stored = self.files.get(role)
        path = Path(run_dir) / (stored.path if stored else f"{role} weights")
        missing = ReverieError(f"no checkpoint at {path}; train one first with `reverie train`")
        if stored is None:
            raise missing
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):  # also a save removing it after a check
            raise missing from None
        except OSError as exc:
            raise ReverieError(
                f"cannot read checkpoint {path} ({exc.strerror}); check its permissions"
            ) from None
        if hashlib.sha256(data).hexdigest() != stored.sha256:
            raise ReverieError(
                f"checkpoint {path} does not match its checksum in {CONFIG}: it is truncated, corrupted or "
                "from an interrupted copy; retrain or restore it"
            )
        return data

    def load_tensors(self, run_dir: Path, role: str) -> dict[str, torch.Tensor]:
        """Tensors of the file of `role`, after checking them against its sha256."""
        return checkpoint.load_tensor_bytes(self.read_checked(run_dir, role), self.path_of(run_dir, role))

    def path_of(self, run_dir: Path, role: str) -> Path:
        """Where the file of `role` is."""
        return Path(run_dir) / self.files[role].path


def _holds(path: Path, digest: str) -> bool:
    """Whether `path` exists with exactly the bytes of sha256 `digest`."""
    if not path.is_file():
        return False
    return hashlib.sha256(path.read_bytes()).hexdigest() == digest


def _files(data: dict[str, Any], source: Path) -> dict[str, Stored]:
    """config.json's "files": role -> {path, sha256}; format 1 mapped fixed file names to sha256."""
    files: dict[str, Stored] = {}
    for key, value in data.items():
        if isinstance(value, str) and key in LEGACY:
            files[LEGACY[key]] = Stored(key, value)
        elif (
            isinstance(value, dict)
            and isinstance(value.get("path"), str)
            and isinstance(value.get("sha256"), str)
        ):
            name = value["path"]
            require(
                Path(name).name == name and not name.startswith("."),
                f"{source} names a weight file outside its folder ({name!r}); it is corrupted",
            )
            require(  # NUL, a control character or a lone surrogate, or too long: no file has that name
                name.isprintable() and len(name.encode("utf-8", "surrogatepass")) <= 255,
                f"{source} names a weight file no file system holds ({name[:80]!r}); it is corrupted",
            )
            files[str(key)] = Stored(value["path"], value["sha256"])
        else:
            raise ReverieError(f"the 'files' section of {source} is malformed; it is corrupted")
    return files


def _section(cls: type, data: Any, source: Path, key: str) -> Any:
    """A dataclass from a JSON object (None stays None); wrong or missing keys are refused."""
    if data is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    if not isinstance(data, dict) or set(data) - names or required - set(data):
        raise _misfit(source, key)
    return cls(**data)


def _misfit(source: Path, key: str) -> ReverieError:
    return ReverieError(
        f"the {key!r} section of {source} does not fit this version of reverie; it is corrupted or from an "
        "incompatible version"
    )


def _options(data: Any, model: ModelConfig, source: Path) -> TrainOptions | None:
    """config.json's "options" (None stays None): a run's options by the names reverie.train takes,
    flat as every version writes them, its model the checkpoint's ("model": the shape a resumed or
    fine-tuned run takes; the options' copy of it is what older versions read)."""
    if data is None:
        return None
    if not isinstance(data, dict) or set(data) - set(options_of(TrainOptions)):
        raise _misfit(source, "options")
    return dataclasses.replace(build(TrainOptions, data), model=dataclasses.replace(model, vocab_size=None))


def has_run(run_dir: Path) -> bool:
    """Whether `run_dir` holds a reverie run: a config.json with reverie's header (someone else's
    config.json is not a run)."""
    path = Path(run_dir) / CONFIG
    try:
        if not path.is_file() or path.stat().st_size > checkpoint.MAX_JSON_BYTES:
            return False
        return checkpoint.is_reverie_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, RecursionError):
        return False


def foreign_files(run_dir: Path) -> list[str]:
    """The entries of `run_dir` that a run does not write, sorted (what --overwrite must not delete)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    ours = set(RUN_FILES)
    return sorted(
        entry.name
        for entry in run_dir.iterdir()
        if entry.name not in ours and not STORED.fullmatch(entry.name) and not TEMPORARY.fullmatch(entry.name)
    )


def check_new_run(run_dir: Path, overwrite: bool) -> None:
    """Refuse to start a new run in `run_dir` over something already there: a run unless
    `overwrite`, and anything reverie did not write (a file named like a run's file, or with
    `overwrite` any other entry, which it would delete)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    if has_run(run_dir) and not overwrite:
        raise ReverieError(
            f"{run_dir} already holds a run; pass --resume to continue it, --overwrite to replace it, "
            "or choose another --out"
        )
    if overwrite:
        others = foreign_files(run_dir)
        require(
            not others,
            f"--overwrite would clear {run_dir}, which holds {_listed(others)} that reverie did not "
            "write; move them or choose another --out",
        )
    if not has_run(run_dir):
        clash = [name for name in (CONFIG, METRICS, PLOT, SAMPLES) if (run_dir / name).exists()]
        require(
            not clash,
            f"{run_dir} holds {_listed(clash)}, which a run would write over and reverie did not write; "
            "choose another --out",
        )


def clear_run(run_dir: Path) -> None:
    """Remove every file a run writes from `run_dir` (--overwrite; check_new_run refused anything else)."""
    run_dir = Path(run_dir)
    for entry in run_dir.iterdir():
        if entry.name != LOCK and (
            entry.name in RUN_FILES or STORED.fullmatch(entry.name) or TEMPORARY.fullmatch(entry.name)
        ):
            entry.unlink(missing_ok=True)


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


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
    for role, stored in info.files.items():
        print(f"  {role:6} {stored.path}")
