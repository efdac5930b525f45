"""The shipped models: small pretrained language models inside the package, ready to generate, and
what fine-tuning starts from.

    import reverie
    reverie.load("shakespeare").generate("ROMEO:", length=200, seed=0)   # a shipped model, by name

    reverie models                                            # name, corpus, size, validation loss, licence
    reverie generate shakespeare --prompt "ROMEO:"
    reverie train my_poems.txt --from english --out runs/poems --minutes 2   # fine-tune one

    python -m reverie.text.pretrained                         # the same list as `reverie models`

Each shipped model is a folder in the run directory's layout (reverie.text.rundir): config.json and
one weights file named by its sha256, loaded by the same code as a user's run. They live in the
package's `reverie/models/NAME/` (installed with it), or in `$REVERIE_MODELS/NAME/` when that variable
names a folder (a folder of models of your own, or models built with scripts/pretrain.py before they
are copied into the package). Their tokenizer is byte level (reverie.text.tokenizer), so they read
and fine-tune on any UTF-8 text. Every file of a shipped model is checked against its sha256 each
time it is loaded; a damaged one is refused in one line.

`RECIPES` says how each is trained (corpus, licence, shape, steps); scripts/pretrain.py follows a
recipe and `export` writes the result: the best weights (in bfloat16 when float32 would be over
MAX_SHIPPED_BYTES), no optimizer state, and a "pretrained" section in config.json recording the
exact command, the corpus with its sha256, the seed, the steps and the validation loss of the
weights as stored.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reverie import checkpoint
from reverie.errors import ReverieError, require
from reverie.text import rundir

MODELS_ENV = "REVERIE_MODELS"
PACKAGE_MODELS = Path(__file__).resolve().parent.parent / "models"
MAX_SHIPPED_BYTES = 10_000_000  # a shipped model's files together, on disk (the repository's cap per file)
PRETRAINED = "pretrained"  # config.json's section of a shipped model's provenance
STORED_DTYPES = ("float32", "bfloat16")  # tried in this order; the first that fits is kept

# The shape every recipe shares: a byte-level LSTM that is 2x384 (1.99 M parameters, 4.0 MB in
# bfloat16), the default LSTM's best size below the 5 MB cap on tiny-shakespeare (docs/benchmarks.md:
# 2x384 reaches 1.444 nats/char in 5 minutes against 2x448's 1.429). Dropout is chosen for the
# epochs the steps buy (reverie.text.fit).
SHAPE: dict[str, Any] = {"level": "byte", "model": "lstm", "layers": 2, "hidden": 384, "embed": 64}
STEPS = 6_000  # about 10 minutes on a 2-core CPU (docs/benchmarks.md, "Shipped models")
ENGLISH_DIR = "corpora/english"  # where scripts/english_corpus.py writes the english corpus
ENGLISH_HELDOUT = "corpora/english-heldout.txt"  # its held-out text, Flask's docs, in none of it
# The english corpus's files (scripts/english_corpus.py --list), in the order they are read: the last
# 10%, held out for validation, is the end of the Rust books, the World English Bible and Django's docs.
ENGLISH_FILES = (
    "kjv", "treasury-of-david", "jargon", "devils-dictionary", "wordnet", "python-docs", "sqlite-docs",
    "postgresql-docs", "erlang-docs", "apache-docs", "llvm-docs", "openstack-docs", "sqlalchemy-docs",
    "scientific-python-docs", "python-tools-docs", "cmake-docs", "nodejs-docs", "nim-docs",
    "swi-prolog-docs", "ghc-docs", "rust-books", "web-bible", "django-docs",
)  # fmt: skip
# english reads subwords (--level bpe, 4,096 tokens, about 3.2 characters each): after 10 minutes on this
# corpus it scores 1.172 nats/char on the held-out text against byte level's 1.261 (docs/benchmarks.md);
# 2x448 keeps its larger output layer within 10 MB in bfloat16. 64,000 steps of 32 x 32 tokens are about
# 200 M characters, two passes: a long job, continued across sessions with --resume.
ENGLISH_SHAPE: dict[str, Any] = {**SHAPE, "level": "bpe", "hidden": 448}
ENGLISH_STEPS = 64_000


@dataclass(frozen=True)
class Recipe:
    """How a shipped model is made: its corpus (sources as `reverie train` names them), where the
    text comes from and its licence, its training options, and the command that writes the corpus's
    files where reverie cannot fetch them itself."""

    name: str
    corpus: tuple[str, ...]
    about: str
    licence: str
    prompt: str  # a prompt to try it with
    options: dict[str, Any] = field(default_factory=dict)  # TrainOptions fields
    prepare: str = ""  # the command that writes the corpus's files first, where they are made


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            "shakespeare",
            ("shakespeare",),
            "tiny-shakespeare: 1.1 M characters of Shakespeare's plays (karpathy/char-rnn)",
            "public domain (the plays); the selection is from karpathy/char-rnn, MIT licence",
            "ROMEO:",
            {**SHAPE, "hidden": 512, "dropout": 0.2, "steps": 10_000},  # 10.2 epochs; docs/benchmarks.md
        ),
        Recipe(
            "nietzsche",
            ("nietzsche",),
            "Nietzsche, Beyond Good and Evil, Helen Zimmern's 1907 translation (600 K characters, the "
            "book's corpus)",
            "public domain (Project Gutenberg)",
            "The meaning of ",
            {**SHAPE, "hidden": 512, "dropout": 0.3, "steps": STEPS},  # 11.4 epochs; docs/benchmarks.md
        ),
        Recipe(
            "python",
            ("python-stdlib",),
            "the .py files of the running Python's standard library, tests left out (12 M characters)",
            "Python Software Foundation License 2.0 (Python's own)",
            "def ",
            {**SHAPE, "steps": STEPS},
        ),
        Recipe(
            "english",
            tuple(f"{ENGLISH_DIR}/{name}.txt" for name in ENGLISH_FILES),
            "general English, 103 MB from 50 Debian packages: the King James and World English Bibles, "
            "Spurgeon's Treasury of David, the Jargon File, The Devil's Dictionary, WordNet's definitions, "
            "nine of Rust's books, and the prose of the documentation of Python, Django, SQLite, PostgreSQL, "
            "Erlang, LLVM, OpenStack, SciPy and more (scripts/english_corpus.py --list)",
            "public domain (the Bibles, Spurgeon, the Jargon File, Bierce, SQLite, Docutils) or permissive: "
            "WordNet 3.0, PSF-2.0, MIT, BSD-2/3-Clause, Apache-2.0 (LLVM's with its exception), PostgreSQL",
            "The",  # subwords: a word's token carries its leading space, so a prompt ends before it
            {**ENGLISH_SHAPE, "steps": ENGLISH_STEPS},
            prepare=f"python scripts/english_corpus.py {ENGLISH_DIR}",
        ),
    )
}


def models_dir() -> Path:
    """Where the shipped models are: $REVERIE_MODELS when set, else the package's reverie/models."""
    return Path(os.environ[MODELS_ENV]).expanduser() if os.environ.get(MODELS_ENV) else PACKAGE_MODELS


def folder_of(name: str) -> Path:
    """The folder shipped model `name` is (or would be) in."""
    return models_dir() / name


def is_built(name: str) -> bool:
    """Whether shipped model `name` is there (a run directory in the models folder)."""
    return _plain_name(name) and rundir.has_run(folder_of(name))


def built_names() -> list[str]:
    """The shipped models there are, sorted: the recipes' and any other run in the models folder."""
    root = models_dir()
    found = {entry.name for entry in root.iterdir() if rundir.has_run(entry)} if root.is_dir() else set()
    return sorted(found)


def known_names() -> list[str]:
    """Every name `reverie models` lists: the recipes and the built models, sorted."""
    return sorted({*RECIPES, *built_names()})


def names_line() -> str:
    """The shipped models for an error message: the built ones, and the recipes not built yet."""
    built = built_names()
    missing = [name for name in RECIPES if name not in built]
    line = ", ".join(built) if built else "none built in this install"
    if missing:
        line += f" (not built yet: {', '.join(missing)}; see `reverie models`)"
    return line


def locate(target: str | Path, flag: str | None = None) -> Path:
    """The folder that `target` names: a path that exists as it is, else a shipped model of that
    name (its files checked against their sha256, see `verify`). Anything else is refused in one
    line that lists the shipped models; `flag` names the option it came from (`--from`)."""
    path = Path(target).expanduser()
    if path.exists():
        return path
    name = str(target)
    if is_built(name):
        verify(name)
        return folder_of(name)
    if _plain_name(name) and name in RECIPES:
        raise ReverieError(
            f"the shipped model {name!r} is not built in this install ({folder_of(name)} is missing); "
            f"build it with `python scripts/pretrain.py {name}`, or pick another: {names_line()}"
        )
    if flag is not None:
        raise ReverieError(
            f"{flag} {name}: no run directory or shipped model of that name; shipped models: {names_line()}"
        )
    raise ReverieError(
        f"run directory {path} does not exist and no shipped model is named {name!r}; train one with "
        f"`reverie train CORPUS --out {path}`, or pick a shipped model: {names_line()}"
    )


def verify(name: str) -> rundir.RunConfig:
    """The config of shipped model `name`, after checking every file it names against its sha256."""
    folder = folder_of(name)
    config = rundir.RunConfig.load(folder)
    for stored in {stored.path: stored for stored in config.files.values()}.values():
        path = folder / stored.path
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        if digest != stored.sha256:
            state = "is missing" if digest is None else "does not match its sha256 in config.json"
            raise ReverieError(
                f"the shipped model {name!r} is damaged: {path} {state}; reinstall reverie (pip install "
                f"--force-reinstall reverie) or rebuild it with `python scripts/pretrain.py {name}`"
            )
    return config


def provenance(folder: Path) -> dict[str, Any]:
    """The "pretrained" section of a shipped model's config.json ({} for a run without one)."""
    section = checkpoint.load_json(Path(folder) / rundir.CONFIG).get(PRETRAINED)
    return section if isinstance(section, dict) else {}


@dataclass
class Listing:
    """One row of `reverie models`."""

    name: str
    built: bool
    corpus: str
    licence: str
    size_bytes: int | None = None
    val_loss: float | None = None  # of the weights as stored, in `unit`
    unit: str = "nats/byte"  # nats/char where the build recorded its tokens per character
    dtype: str | None = None
    steps: int | None = None


def listing() -> list[Listing]:
    """A row for every shipped model: what its config records when it is built, else its recipe."""
    rows = []
    for name in known_names():
        recipe = RECIPES.get(name)
        row = Listing(
            name,
            is_built(name),
            recipe.about if recipe else "-",
            recipe.licence if recipe else "-",
        )
        if row.built:
            folder = folder_of(name)
            info = provenance(folder)
            row.size_bytes = sum(entry.stat().st_size for entry in folder.iterdir() if entry.is_file())
            row.val_loss, per_char = info.get("val_loss"), info.get("tokens_per_char")
            if isinstance(row.val_loss, (int, float)) and isinstance(per_char, (int, float)):
                row.val_loss, row.unit = row.val_loss * per_char, "nats/char"
            row.dtype, row.steps = info.get("dtype"), info.get("steps")
            corpus = info.get("corpus") or {}
            if corpus.get("sources") and not recipe:
                row.corpus = " ".join(corpus["sources"])
            row.licence = info.get("licence") or row.licence
        rows.append(row)
    return rows


def format_listing(rows: list[Listing]) -> str:
    """The table `reverie models` prints."""
    lines = [f"shipped models in {models_dir()}:"]
    for row in rows:
        if row.built:
            loss = f"{row.val_loss:.3f} {row.unit}" if isinstance(row.val_loss, (int, float)) else "-"
            size = f"{row.size_bytes / 1e6:.1f} MB" if row.size_bytes is not None else "-"
            state = f"{size}, {row.dtype or '-'} weights, {row.steps or '-'} steps, validation loss {loss}"
        else:
            state = f"not built (python scripts/pretrain.py {row.name})"
        lines.append(f"  {row.name:12} {state}")
        lines.append(f"  {'':12} corpus: {row.corpus}")
        lines.append(f"  {'':12} licence: {row.licence}")
    return "\n".join(lines)


# ---- writing a shipped model ------------------------------------------------------------------------


def export(run_dir: Path, dest: Path, info: dict[str, Any], measure: Any = None) -> dict[str, Any]:
    """Write the best weights of the run in `run_dir` as a shipped model into folder `dest`.

    The weights are stored in float32 if the model's files fit in MAX_SHIPPED_BYTES, else in
    bfloat16 (refused in one line if neither fits); `measure(weights) -> float` gives the validation
    loss of weights loaded into the float32 model: of the best weights in float32 and as stored.
    `info` (the command, corpus, seed ...) goes into config.json's "pretrained" section, with the
    dtype, the steps and the losses; returns that section."""
    config, _, best = rundir.RunConfig.load_checkpoint(run_dir, rundir.BEST, training=True)
    state = config.state
    section = dict(info)
    section["steps"] = state.step if state else None
    section["val_loss_float32"] = (
        float(measure(best)) if measure is not None else (state.best_val_loss if state else None)
    )
    section["best_step"] = state.best_step if state else None
    for dtype in STORED_DTYPES:
        weights = {key: tensor.to(getattr(torch, dtype)) for key, tensor in best.items()}
        data = checkpoint.tensor_bytes(weights)
        if len(data) + 64_000 <= MAX_SHIPPED_BYTES:  # config.json is well under 64 KB
            break
    else:
        raise ReverieError(
            f"the model's weights take {len(data) / 1e6:.1f} MB even in bfloat16, over the shipped "
            f"models' cap of {MAX_SHIPPED_BYTES / 1e6:g} MB; use a smaller --hidden or --layers"
        )
    section["dtype"] = dtype
    section["val_loss"] = float(measure(weights)) if measure is not None else section["val_loss_float32"]
    shipped = rundir.RunConfig(
        model=config.model, tokenizer=config.tokenizer, corpus=config.corpus, options=config.options
    )
    dest = Path(dest)
    require(dest.resolve() != Path(run_dir).resolve(), "export a run into another folder than its own")
    dest.mkdir(parents=True, exist_ok=True)
    require(
        not rundir.foreign_files(dest),
        f"{dest} holds files a shipped model does not ({', '.join(rundir.foreign_files(dest)[:3])}); "
        "choose another folder",
    )
    shipped.store(dest, {rundir.MODEL: weights})
    shipped.files[rundir.BEST] = shipped.files[rundir.MODEL]
    payload = {**shipped.to_json(), PRETRAINED: section}
    checkpoint.save_json(dest / rundir.CONFIG, payload)
    used = {stored.path for stored in shipped.files.values()}
    for entry in dest.iterdir():  # an older build's files
        if entry.name not in used and entry.name != rundir.CONFIG:
            entry.unlink()
    total = sum(entry.stat().st_size for entry in dest.iterdir())
    require(
        total <= MAX_SHIPPED_BYTES,
        f"{dest} takes {total / 1e6:.2f} MB, over the cap of {MAX_SHIPPED_BYTES / 1e6:g} MB",
    )
    return section


def _plain_name(name: str) -> bool:
    """Whether `name` can name a shipped model: one path component, not hidden."""
    return bool(name) and Path(name).name == name and not name.startswith(".")


__all__ = [
    "MAX_SHIPPED_BYTES",
    "RECIPES",
    "Listing",
    "Recipe",
    "export",
    "folder_of",
    "is_built",
    "listing",
    "locate",
    "models_dir",
    "verify",
]


if __name__ == "__main__":
    print(format_listing(listing()), file=sys.stdout)
