"""scripts/english_corpus.py, which writes the `english` model's corpus from Debian's packages: its
text extraction on tiny hand-written inputs, and the whole script on a fake package, with stand-ins
for apt-get and dpkg-deb (no network, no Debian package needed).

    python -m pytest -q tests/text/test_english_corpus.py
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import os
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "english_corpus.py"


@pytest.fixture(scope="module")
def corpus() -> ModuleType:
    """scripts/english_corpus.py as a module."""
    spec = importlib.util.spec_from_file_location("english_corpus", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["english_corpus"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


PAGE = """<!DOCTYPE html>
<html><head><title>Reverie</title><script>var x = 1;</script></head>
<body><nav><a href="/">Home</a> <a href="/next">Next</a></nav>
<div class="sphinxsidebar"><div>Quick</div> search</div>
<h1>Getting started<a class="headerlink" href="#start">¶</a></h1>
<p>Reverie reads   <code>text</code>
   files &amp; writes models.</p>
<pre>for line in open(path):
    print(line)</pre>
<pre>Roses are red,
violets are blue.</pre>
<ul><li>One item</li><li>Another item<br>on two lines</li></ul>
<dl><dt class="sig">reverie.load(name, *, device=None)</dt><dd>Load a model.</dd></dl>
<table><tr><td>lists:append(List1, List2) -&gt; List3</td></tr></table>
<footer>Copyright 2024</footer>
</body></html>"""


def test_html_keeps_the_prose_and_drops_navigation_scripts_and_code(corpus) -> None:
    assert corpus.html_paragraphs(PAGE) == [
        "Getting started",
        "Reverie reads text files & writes models.",
        "Roses are red,\nviolets are blue.",  # a <pre> block of prose
        "One item",
        "Another item\non two lines",
        "Load a model.",
    ]


def test_what_looks_like_code(corpus) -> None:
    assert not corpus.looks_like_code("The function f(x) returns the list of values it was given.")
    assert corpus.looks_like_code("lists:append(List1, List2) -> List3")
    assert corpus.looks_like_code("")
    # <pre> blocks are held to more
    assert corpus.looks_like_code("def f(x):\n    return x + 1", strict=True)
    assert corpus.looks_like_code("$ pip install reverie", strict=True)
    assert corpus.looks_like_code("SELECT name FROM users\nWHERE id = 1;", strict=True)
    assert not corpus.looks_like_code("Roses are red,\nviolets are blue.", strict=True)


def test_boilerplate_is_kept_once_and_a_source_is_capped_at_whole_paragraphs(corpus) -> None:
    assert list(corpus.dedupe(["Next topic", "A.", "Next topic", "B.", "A."])) == ["Next topic", "A.", "B."]
    assert corpus.capped(["aaaa", "bbbb", "cccc"], cap=12) == "aaaa\n\nbbbb\n"  # 6 + 6 bytes, then 18
    assert corpus.capped(["aaaa", "bbbb"], cap=12, sep="\n") == "aaaa\nbbbb\n"


def test_the_bible_loses_its_chapter_headings_and_verse_numbers(corpus) -> None:
    printed = (
        "\nGenesis 1\n\n  1 In the beginning God created the heaven and the earth.\n"
        "  2 And the earth was without form, and void; and darkness was upon the face of\n"
        "the deep.\n\n\n1 Samuel 3\n\n 10 And the LORD came, and stood.\n"
    )
    assert corpus.bible_text(printed) == (
        "\nIn the beginning God created the heaven and the earth.\n"
        "And the earth was without form, and void; and darkness was upon the face of\n"
        "the deep.\n\nAnd the LORD came, and stood.\n"
    )


def test_a_wordnet_line_reads_as_its_words_and_gloss(corpus) -> None:
    line = (
        "02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 001 @ 02083346 n 0000 | a member of "
        'the genus Canis; "the dog barked all night"  '
    )
    assert corpus.wordnet_gloss(line) == (
        'dog, domestic dog, Canis familiaris: a member of the genus Canis; "the dog barked all night"'
    )
    adjective = "00020103 00 s 02 outback(a) 0 remote 0 001 & 00019874 a 0000 | inaccessible  "
    assert corpus.wordnet_gloss(adjective) == "outback, remote: inaccessible"
    assert corpus.wordnet_gloss("  1 This software and database is being provided") is None


def test_a_dictd_dictionary_reads_as_its_entries_in_order(corpus, tmp_path: Path) -> None:
    text = "00-database-short\nX\nABATIS, n.  Rubbish.\n\nABDOMEN, n.  A temple.\n\n"
    (tmp_path / "devil.dict.dz").write_bytes(gzip.compress(text.encode()))
    # dictd writes numbers in base 64 with the digits A-Z a-z 0-9 + /: U is 20, W 22, q 42, Y 24
    index = "abdomen\tq\tY\nabatis\tU\tW\n00databaseshort\tA\tU\nabatises\tU\tW\n"
    (tmp_path / "devil.index").write_text(index)
    files = [tmp_path / "devil.dict.dz", tmp_path / "devil.index"]
    assert corpus.dictd(files) == "ABATIS, n.  Rubbish.\n\nABDOMEN, n.  A temple.\n\n"


def test_a_sword_module_reads_as_paragraphs_of_verses(corpus, tmp_path: Path) -> None:
    """Two testaments in the zText format: zlib blocks (.bzz), their index (.bzs: offset, size, size
    unpacked) and the verses' (.bzv: block, offset in it, size in 2 bytes; size 0 for no text)."""
    verses = {
        "ot": [
            b'<title type="x-s">Psalm 1</title> <div sID="g1" type="x-p"/><w>Blessed</w> is the man,',
            b'<note placement="foot">Or, happy</note>who walks not.<div eID="g1" type="x-p"/>',
        ],
        "nt": [b'<div sID="g2" type="x-p"/>In the beginning was the Word.<div eID="g2" type="x-p"/>'],
    }
    for testament, texts in verses.items():
        block = b"".join(texts)
        packed = zlib.compress(block)
        (tmp_path / f"{testament}.bzz").write_bytes(packed)
        (tmp_path / f"{testament}.bzs").write_bytes(struct.pack("<III", 0, len(packed), len(block)))
        index, start = struct.pack("<IIH", 0, 0, 0), 0  # a verse with no text first
        for text in texts:
            index += struct.pack("<IIH", 0, start, len(text))
            start += len(text)
        (tmp_path / f"{testament}.bzv").write_bytes(index)
    files = sorted(tmp_path.iterdir())  # nt's first: the Old Testament is read first all the same
    assert (
        corpus.sword(files)
        == "Psalm 1\n\nBlessed is the man, who walks not.\n\nIn the beginning was the Word.\n"
    )


# ---- the whole script ----------------------------------------------------------------------------


def stand_ins(folder: Path, deb: Path | None) -> Path:
    """A folder of stand-ins for apt-get and dpkg-deb: `apt-get download PKG` copies `deb` (a plain
    tar here) as PKG_1.0_all.deb, or says it has no such package when `deb` is None, and logs each
    call; dpkg-deb gives the tar and version 1.0."""
    folder.mkdir()
    found = f'cp {deb} "$2_1.0_all.deb"' if deb else 'echo "E: Unable to locate package $2" >&2; exit 100'
    (folder / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {folder}/apt-get.log\n{found}\n')
    (folder / "dpkg-deb").write_text(
        '#!/bin/sh\ncase "$1" in\n--fsys-tarfile) cat "$2";;\n-f) echo 1.0;;\n*) exit 2;;\nesac\n'
    )
    for tool in ("apt-get", "dpkg-deb"):
        (folder / tool).chmod(0o755)
    return folder


def run_script(args: list[str], path: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path},
    )


def test_a_missing_tool_or_package_is_refused_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "corpora" / "english"
    done = run_script([str(out), "--cache", str(tmp_path / "cache")], str(empty))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("english_corpus: error: apt-get not found; install Debian's package tools")
    assert done.stderr.endswith(": apt-get install apt dpkg\n") and len(done.stderr.splitlines()) == 1
    tools = stand_ins(tmp_path / "bin", deb=None)
    done = run_script([str(out), "--cache", str(tmp_path / "cache")], f"{tools}:/usr/bin:/bin")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(
        "english_corpus: error: apt-get download bible-kjv failed (E: Unable to locate"
    )
    assert done.stderr.rstrip().endswith("install it with: apt-get install bible-kjv")
    assert not out.exists()


def fake_deb(path: Path) -> Path:
    """A package's file system as a tar: two pages of prose, an index page, a stylesheet, and a page
    for the held-out text that has a paragraph of the first page's."""
    files = {
        "./usr/share/doc/fake-doc/html/b.html": "<p>Second page.</p><p>Previous topic</p>",
        "./usr/share/doc/fake-doc/html/a.html": "<nav>Menu</nav><p>First page.</p><p>Previous topic</p>",
        "./usr/share/doc/fake-doc/html/genindex.html": "<p>An index.</p>",
        "./usr/share/doc/fake-doc/html/style.css": "p { color: red }",
        "./usr/share/doc/fake-doc/held/c.html": "<p>Held out.</p><p>First page.</p>",
    }
    with tarfile.open(path, "w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return path


def test_the_script_writes_each_source_and_checks_its_sha256(
    corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    tools = stand_ins(tmp_path / "bin", fake_deb(tmp_path / "fake.tar"))
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    docs = corpus.Source("fake-docs", corpus.pages("fake-doc", under="usr/share/doc/{}/html/"), "docs", "MIT")
    monkeypatch.setattr(corpus, "SOURCES", (docs,))
    heldout = corpus.Source("heldout", {"fake-doc": ("usr/share/doc/fake-doc/held/*.html",)}, "-", "MIT")
    monkeypatch.setattr(corpus, "HELDOUT", heldout)
    monkeypatch.setattr(corpus, "EXPECTED", {})
    out, cache = tmp_path / "corpora" / "english", tmp_path / "cache"
    assert corpus.main([str(out), "--cache", str(cache)]) == 1  # nothing expected yet
    text = "First page.\n\nPrevious topic\n\nSecond page.\n"  # a.html then b.html, boilerplate once
    assert (out / "fake-docs.txt").read_text() == text
    assert (tmp_path / "corpora" / "english-heldout.txt").read_text() == "Held out.\n"  # none of the corpus
    assert sorted(path.name for path in out.iterdir()) == ["fake-docs.txt"]  # no .part left
    digest = hashlib.sha256(text.encode()).hexdigest()
    captured = capsys.readouterr()
    assert f"fake-docs.txt: {len(text)} bytes from fake-doc 1.0; sha256 not as expected" in captured.out
    assert f"  fake-docs.txt (sha256 {digest}) is not in EXPECTED\n" in captured.err
    assert sorted(path.name for path in cache.iterdir()) == ["fake-doc.deb"]

    heldout_digest = hashlib.sha256(b"Held out.\n").hexdigest()
    monkeypatch.setattr(corpus, "EXPECTED", {"fake-docs.txt": digest, "english-heldout.txt": heldout_digest})
    monkeypatch.setattr(corpus, "VERSIONS", {"fake-doc": "1.0"})
    assert corpus.main([str(out), "--cache", str(cache)]) == 0
    assert (
        f"fake-docs.txt: {len(text)} bytes from fake-doc 1.0; sha256 as expected" in capsys.readouterr().out
    )
    assert (tools / "apt-get.log").read_text() == "download fake-doc\n"  # fetched once, then the cache's


def test_a_changed_text_is_put_down_to_the_package_that_changed(corpus, monkeypatch) -> None:
    monkeypatch.setattr(corpus, "EXPECTED", {"kjv.txt": "ab12"})
    monkeypatch.setattr(corpus, "VERSIONS", {"bible-kjv": "4.38", "bible-kjv-text": "4.38"})
    assert corpus.changes("kjv.txt", "ab12", {"bible-kjv": "4.39", "bible-kjv-text": "4.38"}) == ""
    assert corpus.changes("kjv.txt", "cd34", {"bible-kjv": "4.38", "bible-kjv-text": "4.39"}) == (
        "kjv.txt has sha256 cd34, from bible-kjv-text 4.39, not 4.38"
    )
    assert corpus.changes("kjv.txt", "cd34", {"bible-kjv": "4.38", "bible-kjv-text": "4.38"}) == (
        "kjv.txt has sha256 cd34, from the same package versions: this script reads them otherwise"
    )
    assert corpus.changes("new.txt", "ef56", {"new-doc": "1"}) == "new.txt (sha256 ef56) is not in EXPECTED"
