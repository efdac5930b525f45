"""Corpus loading (files, directories, named corpora, python-stdlib, memmap cache) and windows."""

from __future__ import annotations

import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import NIETZSCHE, SHAKESPEARE

from reverie import hub
from reverie.errors import ReverieError
from reverie.text import corpus as corpus_module
from reverie.text.corpus import (
    NAMED_CORPORA,
    book_starts,
    gather_windows,
    iter_text,
    load_corpus,
    resolve_sources,
    split_ids,
)
from reverie.text.tokenizer import Tokenizer


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REVERIE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_file_corpus_char_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "hello world\n")
    corpus = load_corpus(str(path))
    assert corpus.tokenizer.vocab == sorted(set("hello world\n"))
    assert corpus.ids.dtype == np.uint8
    assert corpus.tokenizer.decode(corpus.ids) == "hello world\n"
    assert corpus.sources == [str(path)] and corpus.paths == [path]


def test_directory_reads_sorted_text_files_and_skips_binary(tmp_path: Path) -> None:
    root = tmp_path / "texts"
    write(root / "b.txt", "bee")
    write(root / "a.txt", "ant\n")
    write(root / "sub" / "c.md", "cat")
    write(root / "image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    write(root / ".hidden.txt", "secret")
    write(root / "__pycache__" / "x.txt", "cached")
    assert resolve_sources([str(root)]) == [root / "a.txt", root / "b.txt", root / "sub" / "c.md"]
    corpus = load_corpus([str(root)])
    assert corpus.tokenizer.decode(corpus.ids) == "ant\nbee\ncat"  # files joined by a newline


def test_several_sources_in_order(tmp_path: Path) -> None:
    first = write(tmp_path / "z.txt", "zed\n")
    write(tmp_path / "dir" / "y.txt", "why\n")
    corpus = load_corpus([str(first), str(tmp_path / "dir"), str(first)])
    assert corpus.tokenizer.decode(corpus.ids) == "zed\nwhy\nzed\n"


def test_python_stdlib_is_deterministic_and_offline() -> None:
    files = resolve_sources(["python-stdlib"])
    assert len(files) > 100
    assert files == resolve_sources(["python-stdlib"])
    assert all(f.suffix == ".py" and "site-packages" not in f.parts and "test" not in f.parts for f in files)
    text = "".join(iter_text(files[:20]))
    assert "import" in text or "def " in text


def test_invalid_utf8_names_file_and_byte_offset(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.txt", "héllo".encode() * 2 + b" \xff tail")
    # é is two bytes, so the bad byte is at 2 * 6 + 1 = 13; small chunks split characters across reads
    for chunk_chars in (3, 1 << 20):
        with pytest.raises(ReverieError) as error:
            list(iter_text([path], chunk_chars=chunk_chars))
        message = str(error.value)
        assert "bad.txt" in message and "byte 13" in message
        assert "--encoding" in message and "--errors replace" in message and "\n" not in message
    corpus = load_corpus(str(path), errors="replace")
    assert corpus.tokenizer.decode(corpus.ids) == "héllohéllo \ufffd tail"
    assert load_corpus(str(path), encoding="latin-1").tokenizer.decode(corpus.ids[:1]) == "h"


def test_bad_encoding_option_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "abc")
    with pytest.raises(ReverieError, match="encoding"):
        load_corpus(str(path), encoding="no-such-codec")
    with pytest.raises(ReverieError, match="error handler"):
        load_corpus(str(path), errors="shrug")


def test_empty_corpus_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.txt", "")
    with pytest.raises(ReverieError, match="empty"):
        load_corpus(str(path))
    blank = write(tmp_path / "blank.txt", "  \t  ")
    with pytest.raises(ReverieError, match="no words|no tokens"):
        load_corpus(str(blank), level="word")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ReverieError, match="no text files"):
        load_corpus(str(tmp_path / "nothing"))


def test_unknown_name_lists_named_corpora() -> None:
    with pytest.raises(ReverieError) as error:
        resolve_sources(["no-such-corpus"])
    message = str(error.value)
    assert "no-such-corpus" in message
    assert all(name in message for name in ("nietzsche", "shakespeare", "python-stdlib"))


def test_named_corpora_checksums_are_the_published_files() -> None:
    # the whole files' digests (REFERENCE.md); benchmarks/report.py checks them against the files it reads
    assert NAMED_CORPORA["nietzsche"].sha256.startswith("23cf69874ab6")
    assert NAMED_CORPORA["shakespeare"].sha256.startswith("86c4e6aa9db7")


def test_cached_named_corpus_gives_the_books_window_count(cache: Path, monkeypatch) -> None:
    # the excerpt stands for the whole file: the cached copy is used when it matches the checksum
    remote = NAMED_CORPORA["nietzsche"]
    monkeypatch.setitem(
        NAMED_CORPORA, "nietzsche", hub.Remote(remote.url, hub.sha256_of(NIETZSCHE), remote.filename)
    )
    (cache / "corpora").mkdir(parents=True)
    shutil.copy(NIETZSCHE, cache / "corpora" / "nietzsche.txt")
    corpus = load_corpus("nietzsche", lower=True)  # no download: already cached
    assert corpus.tokenizer.vocab_size == 52
    assert len(corpus.ids) == 99_974
    assert len(book_starts(len(corpus.ids), maxlen=60, step=3)) == 33_305  # ceil((99,974 - 60) / 3)


def test_named_corpus_offline_names_url_and_local_file(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    def offline(url: str, dest: Path) -> None:
        dest.write_bytes(b"partial")
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(hub, "_download", offline)
    with pytest.raises(ReverieError) as error:
        load_corpus("shakespeare")
    message = str(error.value)
    assert NAMED_CORPORA["shakespeare"].url in message and "local file" in message and "\n" not in message
    assert list((cache / "corpora").iterdir()) == []


def test_big_corpus_goes_through_a_reused_memmap(tmp_path: Path, cache: Path, monkeypatch) -> None:
    path = write(tmp_path / "s.txt", SHAKESPEARE.read_text())
    for level in ("char", "word"):
        in_memory = load_corpus(str(path), level=level)
        mapped = load_corpus(str(path), level=level, memmap_threshold_bytes=10_000, chunk_chars=7_777)
        assert isinstance(mapped.ids, np.memmap) and not isinstance(in_memory.ids, np.memmap)
        assert mapped.ids.dtype == in_memory.ids.dtype == in_memory.tokenizer.id_dtype
        np.testing.assert_array_equal(mapped.ids, in_memory.ids)
        assert mapped.tokenizer == in_memory.tokenizer
        assert mapped.fingerprint == in_memory.fingerprint
    token_files = sorted(p.name for p in (cache / "tokens").iterdir())
    assert len(token_files) == 4 and not [name for name in token_files if name.startswith(".")]

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached token file should have been reused")

    monkeypatch.setattr(Tokenizer, "build", no_rebuild)
    monkeypatch.setattr(Tokenizer, "encode_array", no_rebuild)
    again = load_corpus(str(path), level="word", memmap_threshold_bytes=10_000)
    np.testing.assert_array_equal(again.ids, in_memory.ids)


def test_encoding_a_big_corpus_shows_a_bar_unless_progress_is_off(
    tmp_path: Path, cache: Path, capsys
) -> None:
    path = write(tmp_path / "s.txt", SHAKESPEARE.read_text()[:50_000])
    load_corpus(str(path), memmap_threshold_bytes=10_000, progress=False)
    assert capsys.readouterr().err == ""  # --no-progress: not a line, not a bar
    load_corpus(str(path), level="word", memmap_threshold_bytes=10_000)
    assert "encoding tokens" in capsys.readouterr().err


def test_fingerprint_follows_content_and_settings(tmp_path: Path) -> None:
    a = write(tmp_path / "a.txt", "Some Text\n")
    b = write(tmp_path / "b.txt", "Some Text\n")
    c = write(tmp_path / "c.txt", "Other Text\n")
    base = load_corpus(str(a))
    assert load_corpus(str(b)).fingerprint == base.fingerprint
    assert load_corpus(str(c)).fingerprint != base.fingerprint
    assert load_corpus(str(a), lower=True).fingerprint != base.fingerprint
    resumed = load_corpus(str(b), tokenizer=base.tokenizer)
    assert resumed.fingerprint == base.fingerprint
    np.testing.assert_array_equal(resumed.ids, base.ids)
    with pytest.raises(ReverieError, match="not in the vocabulary"):
        load_corpus(str(c), tokenizer=base.tokenizer)


def test_split_ids_takes_the_tail() -> None:
    train, val = split_ids(np.arange(10, dtype=np.uint8), 0.2)
    assert train.tolist() == list(range(8)) and val.tolist() == [8, 9]
    train, val = split_ids(np.arange(10), 0.0)
    assert len(train) == 10 and len(val) == 0


def test_window_starts() -> None:
    assert book_starts(10, maxlen=4, step=3).tolist() == [0, 3]
    assert len(book_starts(600_893)) == 200_278  # the book's window count on Nietzsche


def test_gather_windows_from_memmap_and_array(tmp_path: Path) -> None:
    ids = np.arange(20, dtype=np.uint8)
    windows = gather_windows(ids, np.array([0, 5, 16]), 4)
    assert windows.dtype == torch.int64
    assert windows.tolist() == [[0, 1, 2, 3], [5, 6, 7, 8], [16, 17, 18, 19]]
    ids.tofile(tmp_path / "ids.bin")
    mapped = np.memmap(tmp_path / "ids.bin", dtype=np.uint8, mode="r")
    assert torch.equal(gather_windows(mapped, np.array([0, 5, 16]), 4), windows)


def test_corpus_module_has_no_whole_corpus_one_hot() -> None:
    # the corpus stays token ids: one byte per char for tinyshakespeare
    corpus = load_corpus(str(SHAKESPEARE))
    assert corpus.ids.nbytes == 99_991
    assert corpus_module.DEFAULT_MEMMAP_THRESHOLD_BYTES == 64 << 20
