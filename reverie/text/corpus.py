"""Corpora: text files, directories and named corpora turned into token ids, and windows of them.

    corpus = load_corpus(["shakespeare"], level="char")      # downloaded once into the cache
    train_ids, val_ids = split_ids(corpus.ids, 0.1)         # validation = the tail
    batch = gather_windows(train_ids, book_starts(len(train_ids))[:128], 61)   # (128, 61) LongTensor

A source is a text file, a directory (its text files, sorted; binary files skipped) or a named
corpus: `nietzsche` and `shakespeare` are downloaded on first use with a sha256 check (see
reverie.hub), `python-stdlib` is the running Python's standard library `.py` files (no network).

Text is read and tokenized in chunks. Ids are held in the smallest unsigned dtype; a corpus larger
than `memmap_threshold_bytes` is encoded chunk by chunk into a token file in the cache
(`<cache>/tokens/<key>.bin`, keyed by the corpus fingerprint and vocabulary) that is memory-mapped
and reused by later runs, so a corpus bigger than memory still works.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import sys
import sysconfig
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from reverie import hub
from reverie.checkpoint import atomic_path, write_text_atomic
from reverie.errors import ReverieError, require, require_positive
from reverie.text.tokenizer import LEVELS, Tokenizer, split_for

NAMED_CORPORA: dict[str, hub.Remote] = {
    "nietzsche": hub.Remote(
        url="https://s3.amazonaws.com/text-datasets/nietzsche.txt",
        sha256="23cf69874ab69d3d256099ab530ea4be24d47d9675b673bcc67cbcd6298ec647",
        filename="nietzsche.txt",
    ),
    "shakespeare": hub.Remote(
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        filename="tinyshakespeare.txt",
    ),
}
PYTHON_STDLIB = "python-stdlib"
CORPUS_NAMES = tuple(sorted([*NAMED_CORPORA, PYTHON_STDLIB]))

DEFAULT_CHUNK_CHARS = 1 << 22
DEFAULT_MEMMAP_THRESHOLD_BYTES = 64 << 20
_SNIFF_BYTES = 8192
# Directories never part of a corpus read from a directory tree.
_SKIPPED_DIRS = frozenset({"__pycache__", "site-packages", "dist-packages"})
# The stdlib's own test suites hold deliberately mis-encoded files, and are most of its size.
_SKIPPED_STDLIB_DIRS = _SKIPPED_DIRS | {"test", "tests", "idle_test"}


@dataclass
class TokenizedCorpus:
    """A corpus as token ids, with the tokenizer that made them."""

    tokenizer: Tokenizer
    ids: np.ndarray  # 1-D, tokenizer.id_dtype; an np.memmap for big corpora
    fingerprint: str  # sha256 over the source bytes and tokenizer settings
    sources: list[str]  # as the user named them
    paths: list[Path] = field(default_factory=list)  # the files actually read, in order


# ---- sources -> files ---------------------------------------------------------------------------


def resolve_sources(sources: Sequence[str] | str) -> list[Path]:
    """The text files that `sources` name, in order: files, directories (their text files sorted),
    named corpora (downloaded on first use) and `python-stdlib`."""
    sources = _as_list(sources)
    require(
        len(sources) > 0,
        f"no corpus given; pass a text file, a directory or one of: {', '.join(CORPUS_NAMES)}",
    )
    paths: list[Path] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_file():
            paths.append(path)
        elif path.is_dir():
            files = text_files_in(path)
            require(
                len(files) > 0, f"directory {path} has no text files; pass a directory holding text files"
            )
            paths.extend(files)
        elif path.exists():
            raise ReverieError(f"{path} is neither a regular file nor a directory; pass a text file")
        elif source == PYTHON_STDLIB:
            paths.extend(python_stdlib_files())
        elif source in NAMED_CORPORA:
            paths.append(fetch_named_corpus(source))
        else:
            raise ReverieError(
                f"no such file, directory or named corpus: {source!r}; "
                f"named corpora are {', '.join(CORPUS_NAMES)}"
            )
    return paths


def fetch_named_corpus(name: str) -> Path:
    """Local path of a downloadable named corpus, downloading and checking it on first use."""
    remote = NAMED_CORPORA[name]
    return hub.fetch(
        remote,
        hub.cache_dir() / "corpora",
        offline_hint=f"or pass a local file instead (reverie train path/to/{remote.filename})",
    )


def text_files_in(directory: Path) -> list[Path]:
    """Text files under `directory` (recursively), sorted by relative path; hidden entries,
    caches and binary files (a NUL byte in the first 8 KiB) are skipped."""
    return [path for path in _walk_sorted(directory, _SKIPPED_DIRS) if _looks_like_text(path)]


def python_stdlib_files() -> list[Path]:
    """The running Python's standard library `.py` files (no tests, no site-packages), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [path for path in _walk_sorted(root, _SKIPPED_STDLIB_DIRS) if path.suffix == ".py"]
    require(len(files) > 0, f"found no Python standard library files under {root}; pass a local file instead")
    return files


def _walk_sorted(root: Path, skipped_dirs: frozenset[str]) -> list[Path]:
    found: list[tuple[tuple[str, ...], Path]] = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in skipped_dirs]
        base = Path(directory)
        for name in filenames:
            path = base / name
            if not name.startswith(".") and path.is_file():
                found.append((path.relative_to(root).parts, path))
    return [path for _, path in sorted(found)]


def _looks_like_text(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return b"\0" not in handle.read(_SNIFF_BYTES)
    except OSError:
        return False


# ---- files -> text ------------------------------------------------------------------------------


def check_encoding(encoding: str, errors: str) -> None:
    """Refuse an unknown `--encoding` or `--errors` value in one line."""
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise ReverieError(
            f"unknown encoding {encoding!r}; use a Python codec name such as utf-8 or latin-1"
        ) from None
    # base64, zlib, rot13 ... are codecs too, but turn bytes into bytes, not text
    if not getattr(codec, "_is_text_encoding", True):
        raise ReverieError(f"{encoding!r} is not a text encoding; use one such as utf-8 or latin-1")
    try:
        codecs.lookup_error(errors)
    except LookupError:
        raise ReverieError(f"unknown error handler {errors!r}; use strict, replace or ignore") from None


def iter_text(
    paths: Sequence[Path],
    encoding: str = "utf-8",
    errors: str = "strict",
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    progress: Callable[[int], object] | None = None,
) -> Iterator[str]:
    """Stream the text of `paths` in chunks of at most `chunk_chars` characters.

    Files are joined with a newline when one does not end with one. Text that does not decode
    raises a ReverieError naming the file and the byte offset. `progress(n)` is called with the
    number of bytes read after each read.
    """
    check_encoding(encoding, errors)
    require_positive("chunk_chars", chunk_chars)
    for index, path in enumerate(paths):
        last_char = ""
        for text in _decode_file(path, encoding, errors, chunk_chars, progress):
            last_char = text[-1]
            yield text
        if last_char and last_char != "\n" and index < len(paths) - 1:
            yield "\n"


def _decode_file(
    path: Path, encoding: str, errors: str, chunk_chars: int, progress: Callable[[int], object] | None
) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    consumed = 0
    try:
        with open(path, "rb") as handle:
            while True:
                data = handle.read(chunk_chars)
                pending = decoder.getstate()[0]  # bytes of a character cut by the previous read
                try:
                    text = decoder.decode(data, final=not data)
                except UnicodeDecodeError as exc:
                    offset = consumed - len(pending) + exc.start
                    raise ReverieError(
                        f"{path} is not valid {encoding} at byte {offset} ({exc.reason}); "
                        f"pass --encoding with the file's encoding, or --errors replace to accept it"
                    ) from None
                consumed += len(data)
                if progress is not None and data:
                    progress(len(data))
                if text:
                    yield text
                if not data:
                    return
    except OSError as exc:
        raise ReverieError(f"cannot read {path}: {exc.strerror}") from None


def _source_digest(paths: Sequence[Path]) -> tuple[str, int]:
    """sha256 over the files' bytes (each prefixed by its length) and the total byte count."""
    digest = hashlib.sha256()
    total = 0
    for path in paths:
        try:
            size = path.stat().st_size
            digest.update(size.to_bytes(8, "little"))
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(hub.CHUNK_BYTES), b""):
                    digest.update(block)
        except OSError as exc:
            raise ReverieError(f"cannot read {path}: {exc.strerror}") from None
        total += size
    return digest.hexdigest(), total


# ---- text -> ids --------------------------------------------------------------------------------


def load_corpus(
    sources: Sequence[str] | str,
    level: str = "char",
    lower: bool = False,
    max_vocab: int | None = None,
    encoding: str = "utf-8",
    errors: str = "strict",
    tokenizer: Tokenizer | None = None,
    *,
    memmap_threshold_bytes: int = DEFAULT_MEMMAP_THRESHOLD_BYTES,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    vocabulary_of: str | None = None,
    progress: bool = True,
) -> TokenizedCorpus:
    """Read `sources` and encode them as token ids (a bar on stderr while a big corpus is encoded,
    unless `progress` is False).

    With `tokenizer` (resuming a run) its vocabulary, level and lowercasing are reused and
    `level`, `lower`, `max_vocab` are ignored; `vocabulary_of` names where it comes from when it is
    not the run's own (a fine-tuning base), for the refusal of characters it lacks. Corpora over
    `memmap_threshold_bytes` bytes go through a memory-mapped token file in the cache, reused while
    sources and settings match.
    """
    names = [str(s) for s in _as_list(sources)]
    if tokenizer is not None:
        level, lower = tokenizer.level, tokenizer.lower
    require(level in LEVELS, f"unknown level {level!r}; use one of: {', '.join(LEVELS)}")
    check_encoding(encoding, errors)
    paths = resolve_sources(names)
    digest, total_bytes = _source_digest(paths)
    if total_bytes == 0:
        raise ReverieError(f"the corpus {' '.join(names)} is empty; pass a file with some text")
    settings = {
        "sources_sha256": digest,
        "level": level,
        "lower": lower,
        "encoding": encoding,
        "errors": errors,
    }
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()

    def text_pieces(progress: Callable[[int], object] | None = None) -> Iterator[str]:
        return split_for(level, iter_text(paths, encoding, errors, chunk_chars, progress))

    if total_bytes > memmap_threshold_bytes:
        key_data = tokenizer.to_json() if tokenizer is not None else {"max_vocab": max_vocab}
        key = hashlib.sha256((fingerprint + json.dumps(key_data, sort_keys=True)).encode()).hexdigest()
        tokenizer, ids = _memmapped_ids(
            key, text_pieces, total_bytes, level, lower, max_vocab, tokenizer, vocabulary_of, progress
        )
    else:
        pieces = list(text_pieces())
        if tokenizer is None:
            tokenizer = Tokenizer.build(pieces, level, lower, max_vocab)
        arrays = [_encode(tokenizer, piece, vocabulary_of) for piece in pieces]
        ids = np.concatenate(arrays) if arrays else np.zeros(0, dtype=tokenizer.id_dtype)
    if len(ids) == 0:
        raise ReverieError(f"the corpus {' '.join(names)} has no tokens; pass a file with some text")
    return TokenizedCorpus(tokenizer, ids, fingerprint, names, list(paths))


def _memmapped_ids(
    key: str,
    text_pieces: Callable[..., Iterator[str]],
    total_bytes: int,
    level: str,
    lower: bool,
    max_vocab: int | None,
    tokenizer: Tokenizer | None,
    vocabulary_of: str | None = None,
    progress: bool = True,
) -> tuple[Tokenizer, np.ndarray]:
    """Token ids in a cached memory-mapped file, encoding them chunk by chunk on first use."""
    directory = hub.cache_dir() / "tokens"
    data_path, meta_path = directory / f"{key}.bin", directory / f"{key}.json"
    cached = _open_cached_ids(data_path, meta_path)
    if cached is not None:
        return cached

    def bar(desc: str) -> tqdm:
        return tqdm(
            total=total_bytes, unit="B", unit_scale=True, desc=desc, file=sys.stderr, leave=False,
            disable=not progress,
        )  # fmt: skip

    if tokenizer is None:
        with bar("counting tokens") as counting:
            tokenizer = Tokenizer.build(text_pieces(counting.update), level, lower, max_vocab)
    directory.mkdir(parents=True, exist_ok=True)
    n_tokens = 0
    with atomic_path(data_path) as tmp, open(tmp, "wb") as out, bar("encoding tokens") as encoding_bar:
        for piece in text_pieces(encoding_bar.update):
            ids = _encode(tokenizer, piece, vocabulary_of)
            ids.tofile(out)
            n_tokens += len(ids)
    if n_tokens == 0:
        data_path.unlink()  # no sidecar: never taken for a cached corpus
        return tokenizer, np.zeros(0, dtype=tokenizer.id_dtype)
    meta = {"tokenizer": tokenizer.to_json(), "n_tokens": n_tokens, "dtype": tokenizer.id_dtype.name}
    write_text_atomic(meta_path, json.dumps(meta))
    return tokenizer, np.memmap(data_path, dtype=tokenizer.id_dtype, mode="r", shape=(n_tokens,))


def _encode(tokenizer: Tokenizer, text: str, vocabulary_of: str | None = None) -> np.ndarray:
    try:
        return tokenizer.encode_array(text)
    except ReverieError as exc:  # only char level refuses: the corpus differs from the vocabulary's
        if vocabulary_of is not None:
            raise ReverieError(
                f"the text has {exc} of {vocabulary_of} (a char-level model reads only the characters it "
                "was trained on); fine-tune from a shipped model (byte level: any text) or remove them"
            ) from None
        raise ReverieError(f"the corpus has {exc}; use the corpus the model was trained on") from None


def _open_cached_ids(data_path: Path, meta_path: Path) -> tuple[Tokenizer, np.ndarray] | None:
    """A previously written token file, or None when it is missing or does not match its sidecar."""
    try:
        meta = json.loads(meta_path.read_text())
        tokenizer = Tokenizer.from_json(meta["tokenizer"])
        n_tokens, dtype = int(meta["n_tokens"]), np.dtype(meta["dtype"])
        if (
            dtype != tokenizer.id_dtype
            or data_path.stat().st_size != n_tokens * dtype.itemsize
            or n_tokens == 0
        ):
            return None
    except (OSError, ValueError, KeyError, TypeError, OverflowError, RecursionError, ReverieError):
        return None
    ids = np.memmap(data_path, dtype=dtype, mode="r", shape=(n_tokens,))
    if int(ids.max()) >= tokenizer.vocab_size:  # ids of no token: the file changed since it was written
        return None
    return tokenizer, ids


def _as_list(sources: Sequence[str] | str | os.PathLike) -> list[str]:
    if isinstance(sources, (str, os.PathLike)):
        return [os.fspath(sources)]
    return [os.fspath(s) for s in sources]


# ---- ids -> training windows --------------------------------------------------------------------


def split_ids(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation): validation is the last `val_fraction` (0 <= f < 1) of the ids (views, no copy)."""
    n_val = round(len(ids) * val_fraction)
    return ids[: len(ids) - n_val], ids[len(ids) - n_val :]


def book_starts(n_tokens: int, maxlen: int = 60, step: int = 3) -> np.ndarray:
    """The book's windows: `maxlen` tokens every `step`, each followed by its target token."""
    return np.arange(0, n_tokens - maxlen, step, dtype=np.int64)


def gather_windows(ids: np.ndarray, starts: np.ndarray, length: int) -> torch.Tensor:
    """Windows `ids[s : s + length]` for each start, as a (len(starts), length) int64 tensor."""
    index = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(length, dtype=np.int64)
    return torch.from_numpy(np.asarray(ids)[index].astype(np.int64))
