"""Write the English text the shipped `english` model is trained on: 103 MB of public-domain and
permissively licensed English from 50 of Debian's packages, a plain-text file per source, and beside
it a held-out text, from another package, to measure the model on text it has not seen.

    python scripts/english_corpus.py [DIR] [--cache FOLDER] [--list]

DIR defaults to corpora/english; the held-out text is written beside it, to DIR-heldout.txt
(corpora/english-heldout.txt). `--list` prints the sources, their packages and licences.

A package is read where it is installed, else fetched with `apt-get download` into the cache
folder (default: corpora/debian-packages, 333 MB in all; delete it to fetch them again) and the
files the source needs are unpacked from it, so no root is needed: only Debian's apt and dpkg, with
apt's package lists (`apt-get update`). Nothing else is fetched.

From documentation the script keeps prose: each HTML page is read with the standard library's HTML
parser, keeping headings, paragraphs, list items and table cells and dropping navigation, scripts,
signatures and code (a <pre> block is kept only where it reads as prose), and a paragraph met before
in the same source (a site's boilerplate) is kept once. Each source is capped at CAP bytes (12 MB,
under an eighth of the corpus), and the held-out text keeps none of the corpus's paragraphs.

Each file is written atomically (NAME.txt.part, then renamed) and its sha256 checked against
EXPECTED, made from the package versions in VERSIONS: a file that differs is named with the packages
whose version changed since, and the exit status is 1 (the files are written all the same). A
missing tool or package is refused in one line, with exit status 2. With the packages fetched it
takes 3 minutes on 2 cores, most of it reading HTML (8 when a training run shares them; the first
run, fetching them too, took 18 so).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

PROG = "english_corpus"
DEFAULT_DIR = Path("corpora/english")
DEFAULT_CACHE = Path("corpora/debian-packages")
MB = 1_000_000
CAP = 12 * MB  # the most text taken from one source, an eighth of the corpus


class Refusal(Exception):
    """What stops the script before it writes anything: a missing tool or package (exit status 2)."""


# ---- prose from HTML -----------------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
SKIP_TAGS = {"head", "script", "style", "nav", "noscript", "svg", "math", "form", "button", "select"}
SKIP_TAGS |= {"textarea", "iframe", "template", "object", "header", "footer", "note"}  # note: OSIS's
SKIP_CLASSES = {"nav", "navigation", "navheader", "navfooter", "sidebar", "sphinxsidebar", "related"}
SKIP_CLASSES |= {"headerlink", "breadcrumb", "breadcrumbs", "menu", "mainmenu", "nosearch", "toc"}
SKIP_CLASSES |= {"toctree-wrapper", "sig", "footer", "copyright", "search", "leftnav", "topbar"}
SKIP_ROLES = {"navigation", "search", "banner", "contentinfo"}
BLOCK_TAGS = {"p", "div", "section", "article", "aside", "main", "body", "blockquote", "pre", "center"}
BLOCK_TAGS |= {"h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd", "table", "tr"}
BLOCK_TAGS |= {"td", "th", "caption", "figure", "figcaption", "hr", "address", "details", "summary"}
BLOCK_TAGS |= {"title"}  # a heading in OSIS (SWORD's markup); in HTML it is in <head>, left out
BREAK = "\v"  # a <br> inside a paragraph, until its whitespace is collapsed


class _Blocks(HTMLParser):
    """The text of a page as blocks (paragraphs, headings, list items, cells, <pre> blocks) in
    order, leaving out the elements that SKIP_TAGS, SKIP_CLASSES and SKIP_ROLES name, with all
    that is in them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, bool]] = []  # (text, whether it is a <pre> block)
        self.parts: list[str] = []
        self.skipping: str | None = None  # the tag of the element being left out
        self.depth = 0  # how many elements of that tag are open, itself included
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skipping is not None:
            self.depth += tag == self.skipping and tag not in VOID
            return
        found = dict(attrs)
        classes = set((found.get("class") or "").split())
        if tag in SKIP_TAGS or classes & SKIP_CLASSES or found.get("role") in SKIP_ROLES:
            if tag not in VOID:
                self.skipping, self.depth = tag, 1
        elif tag == "br":
            self.parts.append(BREAK)
        elif tag in BLOCK_TAGS:
            self.flush()
            self.pre += tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        if self.skipping is not None:
            self.depth -= tag == self.skipping
            if self.depth == 0:
                self.skipping = None
                self.parts.append(" ")  # what was left out may have stood between two words
        elif tag in BLOCK_TAGS:
            self.flush()
            self.pre -= tag == "pre" and self.pre > 0

    def handle_data(self, data: str) -> None:
        if self.skipping is None:
            self.parts.append(data)

    def flush(self) -> None:
        text = "".join(self.parts).replace("¶", "")
        self.parts = []
        if self.pre:  # its lines kept as they are
            text = "\n".join(line.rstrip() for line in text.replace(BREAK, "\n").splitlines()).strip("\n")
        else:  # whitespace collapsed, but for the line breaks of <br>
            text = "\n".join(" ".join(line.split()) for line in text.split(BREAK))
            text = re.sub(r"\n{2,}", "\n", text).strip()
        if text.strip():
            self.blocks.append((text, self.pre > 0))


def html_paragraphs(html: str) -> list[str]:
    """The prose of an HTML page, a paragraph (or heading, list item, cell ...) a string; left out
    are navigation, scripts, styles and code (a <pre> block that looks like code, and any block
    that is mostly symbols)."""
    parser = _Blocks()
    parser.feed(html)
    parser.close()
    parser.flush()
    return [text for text, pre in parser.blocks if not looks_like_code(text, strict=pre)]


WORD = re.compile(r"^[(\"'“‘]*[A-Za-z][A-Za-z'’-]*[.,;:!?\"'”’)]*$")
CODE_LINE_END = re.compile(r"[;{}()\[\]=\\:]$")
SYMBOLS = "{}[]<>=;|&$#@^~`*_/\\+%"


def looks_like_code(text: str, strict: bool = False) -> bool:
    """Whether a block is code, a shell session or a list of symbols rather than prose: under half
    of its words are plain words (letters, with an apostrophe or hyphen, in punctuation). `strict`,
    for <pre> blocks (mostly code), asks more of prose: 80% plain words, under 3% of its characters
    brackets, operators and the like, and under a fifth of its lines ending as code lines do."""
    words = text.split()
    if not words:
        return True
    plain = sum(bool(WORD.match(word)) for word in words) / len(words)
    if not strict:
        return plain < 0.5
    symbols = sum(text.count(c) for c in SYMBOLS) / len("".join(words))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    code_ends = sum(bool(CODE_LINE_END.search(line)) for line in lines) / len(lines)
    return plain < 0.8 or symbols >= 0.03 or code_ends >= 0.2


def digest(paragraph: str) -> bytes:
    """What tells a paragraph from others, in 20 bytes."""
    return hashlib.sha1(paragraph.encode("utf-8")).digest()


def dedupe(paragraphs: Iterable[str]) -> Iterable[str]:
    """`paragraphs` less each one met before: a site's boilerplate is kept once."""
    seen: set[bytes] = set()
    for paragraph in paragraphs:
        if (key := digest(paragraph)) not in seen:
            seen.add(key)
            yield paragraph


def capped(paragraphs: Iterable[str], cap: int = CAP, sep: str = "\n\n") -> str:
    """The paragraphs joined by `sep`, whole ones up to `cap` bytes, ending in a newline."""
    kept, size = [], 0
    for paragraph in paragraphs:
        size += len(paragraph.encode("utf-8")) + len(sep)
        if size > cap:
            break
        kept.append(paragraph)
    return sep.join(kept) + "\n"


def read_text(path: Path) -> str:
    """A file's text, through gzip for .gz and .dz (dictzip) files: UTF-8, else Latin-1."""
    data = path.read_bytes()
    if path.suffix in (".gz", ".dz"):
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# ---- the readers: a source's files, in order, to its text --------------------------------------


def html(files: list[Path]) -> str:
    """The prose of HTML pages, each paragraph once."""
    return capped(dedupe(p for page in files for p in html_paragraphs(read_text(page))))


BIBLE_HEADING = re.compile(r"^[1-3]? ?[A-Z][a-z]+( of [A-Z][a-z]+)? [0-9]+$")


def bible_text(printed: str) -> str:
    """What Debian's `bible` program prints, less its chapter headings ("Genesis 1") and verse
    numbers ("  12 And ..."), blank lines squeezed to one."""
    lines: list[str] = []
    for line in printed.splitlines():
        if not BIBLE_HEADING.match(line):
            line = re.sub(r"^ +[0-9]+ ", "", line)
            if line or not lines or lines[-1]:
                lines.append(line)
    return "\n".join(lines) + "\n"


def kjv(files: list[Path]) -> str:
    """The King James Bible, printed by bible-kjv's `bible` from bible-kjv-text's own format,
    wrapped at 80 columns."""
    program, data = files[0], files[1].parent
    done = run([str(program), "-p", str(data), "-l80", "gen1:1-rev22:21"])
    if done.returncode != 0:
        raise Refusal(f"{program} failed ({done.stderr.strip()}); reinstall bible-kjv and bible-kjv-text")
    return bible_text(done.stdout)


def whole(files: list[Path]) -> str:
    """The files' text as it is."""
    return "".join(read_text(path) for path in files)


DICTD_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dictd(files: list[Path]) -> str:
    """A dictd dictionary's entries (NAME.dict.dz, NAME.index) in the order they are stored, less
    its header entries (00-database-...)."""
    data, index = read_text(files[0]).encode("utf-8"), read_text(files[1])

    def number(digits: str) -> int:
        return sum(DICTD_DIGITS.index(c) * 64**i for i, c in enumerate(reversed(digits)))

    entries = set()  # (offset, length): a few headwords share an entry
    for line in index.splitlines():
        headword, offset, length = line.split("\t")
        if not headword.startswith("00database"):
            entries.add((number(offset), number(length)))
    return "".join(data[start : start + size].decode("utf-8") for start, size in sorted(entries))


def wordnet_gloss(line: str) -> str | None:
    """A line of WordNet's data files as "dog, domestic dog, Canis familiaris: a member of the genus
    Canis ...; "the dog barked all night"": the synset's words, its definition and examples. None
    for the licence lines at the top of each file."""
    if line.startswith("  ") or " | " not in line:
        return None
    fields, gloss = line.split(" | ", 1)
    cells = fields.split()
    count = int(cells[3], 16)
    words = [re.sub(r"\([a-z]+\)$", "", word).replace("_", " ") for word in cells[4 : 4 + 2 * count : 2]]
    return f"{', '.join(words)}: {gloss.strip()}"


def wordnet(files: list[Path]) -> str:
    """WordNet's glosses, a synset a line."""
    glosses = (wordnet_gloss(line) for path in files for line in read_text(path).splitlines())
    return capped((gloss for gloss in glosses if gloss), sep="\n")


def sword(files: list[Path]) -> str:
    """A SWORD Bible or commentary in the zText or zCom format, each testament in three files: its
    zlib blocks (.bzz), their index (.bzs: offset, size and size unpacked, 4 bytes each) and the
    verses' (.bzv: block, offset in it and size, in 4, 4 and 2 bytes); in version 4 of the format,
    .czz, .czs and .czv, with 4 bytes for a verse's size. The Old Testament's verses then the New's,
    a space between verses, their OSIS markup read like HTML."""
    files = sorted(files, key=lambda path: path.name.startswith("nt"))  # each testament's sorted: s, v, z
    paragraphs = []
    for index_file, verses_file, data_file in zip(files[0::3], files[1::3], files[2::3]):
        blocks, verses, data = index_file.read_bytes(), verses_file.read_bytes(), data_file.read_bytes()
        entry = 10 if verses_file.suffix == ".bzv" else 12
        texts, current, block = [], -1, b""
        for at in range(0, len(verses) - entry + 1, entry):
            number, start = struct.unpack_from("<II", verses, at)
            size = struct.unpack_from("<H" if entry == 10 else "<I", verses, at + 8)[0]
            if size and number != current:
                offset, packed, _ = struct.unpack_from("<III", blocks, number * 12)
                current, block = number, zlib.decompress(data[offset : offset + packed])
            if size:
                texts.append(block[start : start + size].decode("utf-8"))
        paragraphs += html_paragraphs(" ".join(texts))
    return capped(dedupe(paragraphs))


# ---- the sources ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A file of the corpus: the files of each Debian package that it is read from (globs; each
    package's sorted, the packages in order), what kind of writing it is, its licence, and how its
    text is made from those files."""

    name: str  # the file is NAME.txt
    files: dict[str, tuple[str, ...]]
    kind: str
    licence: str
    read: Callable[[list[Path]], str] = html
    exclude: str = ""  # a regular expression: files whose path in the package matches it are left out


# pages that are indexes, search or error pages, or sources, rather than prose
NOT_PROSE = re.compile(r"(^|/)(_[^/]*/|genindex|py-modindex|modindex|(search|bookindex|404)\.html$)")


def pages(*packages: str, under: str = "usr/share/doc/{}/") -> dict[str, tuple[str, ...]]:
    """The HTML pages of each package, under `under` (formatted with the package's name)."""
    return {package: (under.format(package) + "**/*.html",) for package in packages}


RUST_BOOKS = ("book", "edition-guide", "embedded-book", "nomicon", "reference", "rust-by-example")
RUST_BOOKS += ("rustc", "rustdoc", "unstable-book")
OPENSTACK = ("barbican-doc", "cinder-doc", "designate-doc", "glance-doc", "heat-doc", "ironic-doc")
OPENSTACK += ("keystone-doc", "manila-doc", "neutron-doc", "nova-doc", "octavia-doc", "placement-doc")
OPENSTACK += ("swift-doc", "trove-doc")
SCIENTIFIC = ("python-sklearn-doc", "python-pandas-doc", "python-scipy-doc", "python-sympy-doc")
SCIENTIFIC += ("python-astropy-doc", "python-dask-doc")
PYTHON_TOOLS = ("sphinx-doc", "python-pytest-doc", "python-setuptools-doc", "cython-doc", "twisted-doc")
PYTHON_TOOLS += ("python-tornado-doc",)  # and docutils-doc and mypy-doc, whose pages are elsewhere
SWORD = "usr/share/sword/modules/"

SOURCES: tuple[Source, ...] = (
    Source(
        "kjv",
        {
            "bible-kjv": ("usr/bin/bible",),
            "bible-kjv-text": ("usr/lib/bible.data", "usr/lib/bible.data.conc"),
        },
        "scripture: the King James Bible (1611)",
        "public domain",
        kjv,
    ),
    Source(
        "jargon",
        {"jargon-text": ("usr/share/doc/jargon-text/jargon.txt.gz",)},
        "a lexicon with essays: the Jargon File 4.4.7, hackers' slang, history and folklore",
        "public domain",
        whole,
    ),
    Source(
        "devils-dictionary",
        {"dict-devil": ("usr/share/dictd/devil.dict.dz", "usr/share/dictd/devil.index")},
        "satire: Ambrose Bierce's The Devil's Dictionary (1911)",
        "public domain",
        dictd,
    ),
    Source(
        "wordnet",
        {"wordnet-base": tuple(f"usr/share/wordnet/data.{part}" for part in ("noun", "verb", "adj", "adv"))},
        "a dictionary: WordNet 3.0's definitions and example sentences",
        "WordNet 3.0 licence (permissive, BSD-like)",
        wordnet,
    ),
    Source(
        "treasury-of-david",
        {"sword-comm-tdavid": tuple(f"{SWORD}comments/zcom/tdavid/ot.cz{part}" for part in "svz")},
        "commentary and essays: C. H. Spurgeon's The Treasury of David (1869-1885), on the Psalms",
        "public domain",
        sword,
    ),
    Source(
        "web-bible",
        {
            "sword-text-web": tuple(
                f"{SWORD}texts/ztext/engWEB2015eb/{t}.bz{p}" for t in ("ot", "nt") for p in "svz"
            )
        },
        "scripture in modern English, narrative, dialogue, poetry and letters: the World English Bible "
        "(2015), with the deuterocanonical books",
        "public domain",
        sword,
    ),
    Source(
        "rust-books",
        {"rust-doc": tuple(f"usr/share/doc/rust-doc/html/{book}/print.html" for book in RUST_BOOKS)},
        "books: The Rust Programming Language, Rust by Example, the Rustonomicon, the Rust Reference "
        "and five more of Rust 1.63's books (not its API pages)",
        "MIT or Apache-2.0",
    ),
    Source(
        "python-docs",
        pages("python3.11-doc", under="usr/share/doc/python3.11/html/"),
        "documentation: Python 3.11's tutorial, HOWTOs, FAQs and language and library reference",
        "PSF-2.0",
    ),
    Source(
        "django-docs",
        pages("python-django-doc"),
        "documentation: Django 3.2's tutorials, topic guides, how-tos, reference and release notes",
        "BSD-3-Clause",
    ),
    Source(
        "sqlite-docs",
        pages("sqlite3-doc", under="usr/share/doc/sqlite3/"),
        "documentation: SQLite's documentation and release history",
        "public domain",
        exclude=r"(crossref|requirements|keyword_index|sitemap|doclist)\.html$",
    ),
    Source(
        "postgresql-docs",
        pages("postgresql-doc-15"),
        "documentation: the PostgreSQL 15 manual",
        "PostgreSQL Licence (permissive, BSD-like)",
    ),
    Source(
        "erlang-docs",
        pages("erlang-doc"),
        "documentation: Erlang/OTP 25's user's guides and reference manuals (not release notes)",
        "Apache-2.0",
        exclude=r"/(wx|jinterface)-|/notes\.html$",
    ),
    Source(
        "apache-docs",
        pages("apache2-doc", under="usr/share/doc/apache2-doc/manual/en/"),
        "documentation: the Apache HTTP Server 2.4 manual",
        "Apache-2.0",
    ),
    Source(
        "llvm-docs",
        pages("llvm-15-doc") | pages("clang-15-doc", under="usr/share/doc/clang-15/"),
        "documentation: LLVM 15's and Clang 15's manuals, guides and tutorials",
        "Apache-2.0 WITH LLVM-exception",
        exclude=r"/AMDGPU/",
    ),
    Source(
        "openstack-docs",
        pages(*OPENSTACK),
        "documentation: the admin, install, user and contributor guides of 14 OpenStack services (Nova, "
        "Neutron, Cinder, Swift, Keystone, Glance ...)",
        "Apache-2.0",
        exclude=r"/(api|configuration)/",
    ),
    Source(
        "sqlalchemy-docs",
        pages("python-sqlalchemy-doc"),
        "documentation: SQLAlchemy 1.4's tutorials, guides, reference and changelog",
        "MIT",
    ),
    Source(
        "scientific-python-docs",
        pages(*SCIENTIFIC),
        "documentation: the user guides and tutorials of scikit-learn, pandas, SciPy, SymPy, Astropy "
        "and Dask, and SciPy's reference",
        "BSD-3-Clause",
        exclude=r"(pandas|dask)-doc/html/(reference|generated)/|/(api|auto_examples|modules/generated)/",
    ),
    Source(
        "python-tools-docs",
        pages("docutils-doc", under="usr/share/doc/docutils-doc/docs/")
        | pages("mypy-doc", under="usr/share/doc/mypy/")
        | pages(*PYTHON_TOOLS),
        "documentation: Sphinx, Docutils, pytest, mypy, setuptools, Cython, Twisted and Tornado",
        "BSD-2-Clause (Sphinx), public domain (Docutils), MIT (pytest, mypy, setuptools, Twisted), "
        "Apache-2.0 (Cython, Tornado)",
        exclude=r"/api/",
    ),
    Source(
        "cmake-docs",
        pages("cmake-doc", under="usr/share/doc/cmake-data/html/"),
        "documentation: CMake 3.25's manuals and reference",
        "BSD-3-Clause",
    ),
    Source(
        "nodejs-docs",
        pages("nodejs-doc", under="usr/share/doc/nodejs/api/"),
        "documentation: Node.js 18's API documentation",
        "MIT",
        exclude=r"/all\.html$",
    ),
    Source(
        "nim-docs",
        pages("nim-doc", under="usr/share/doc/nim/"),
        "documentation: Nim 1.6's manual, tutorials and library documentation",
        "MIT",
    ),
    Source(
        "swi-prolog-docs",
        pages("swi-prolog-doc", under="usr/share/swi-prolog/doc/"),
        "documentation: the SWI-Prolog 9 manual",
        "BSD-2-Clause",
    ),
    Source(
        "ghc-docs",
        pages("ghc-doc", under="usr/share/doc/ghc-doc/html/users_guide/"),
        "documentation: the Glasgow Haskell Compiler 9.0 User's Guide",
        "BSD-3-Clause",
    ),
)

HELDOUT = Source(
    "heldout",
    pages("python-flask-doc"),
    "documentation: Flask 2.2's tutorial, guides, patterns, API and changes (in no file of the corpus)",
    "BSD-3-Clause",
)

# The sha256 of each file this script writes, made from the versions of the packages in VERSIONS.
EXPECTED: dict[str, str] = {
    "kjv.txt": "5174e72cc2f0d27b4246f0e8f8ce16194830ee3ba57075d8a4976ebc5ccdc5fc",
    "jargon.txt": "40dfb4b98191a670a09a183d5798d50f243d23fdbd1495dcc0aca2ce5895ba97",
    "devils-dictionary.txt": "1a2f468e8d52383945467c975eb97524995bfd976082e9e6cb52f182521a6ba9",
    "wordnet.txt": "24aa46a18b45f7ee91dbb36b1fb9743c5bc97c55484a47388a7b60184f1eef62",
    "treasury-of-david.txt": "6d48cb8b5e6262342ba32edbd3249cdaa07e3552b1a4e38ba2ebb6be93312321",
    "web-bible.txt": "c25aa895e465a15abd9d53382bf84fe161d5a3e609808cf85606389c67db119b",
    "rust-books.txt": "c47ed8e38736fc9d402ee466f5a3306c35994ec249d31130947e516ecffe3c85",
    "python-docs.txt": "a653bfe71929a17370bbb4b0288025d5b8d255245077120b2ba0ad856db13822",
    "django-docs.txt": "ec6dfc6fcffd0a8b4ed0e1652edf73ec94c778ba260e74d4d92ac3915b3d65be",
    "sqlite-docs.txt": "4d59e1cfa2e70d0e01c18a048819e73ae803697cd4af5f70e24fdc04f0cfab07",
    "postgresql-docs.txt": "f1aeb4abb13e085843667bd75fa0ef492cb4c14b8627daf4dc700a7d99e0173a",
    "erlang-docs.txt": "2072426bc9183f30a8b4c9e6296dd3c709c95679c6fd36eeadbc19ca889bfea2",
    "apache-docs.txt": "ee13010e157f8e1a488074f4c84cbeea807d8bf23497d05854d70909415fa236",
    "llvm-docs.txt": "b021f1417893ee149d43165e33b6be99fd01aa86f37f949803d339319706bbb0",
    "openstack-docs.txt": "71fb44d5b786d1513700fd6cf842a07f656d6464764e448dd7c929268d9847d2",
    "sqlalchemy-docs.txt": "5e9669c792bfdc59f42a4fb3299d8d8ed247be533ccc1db1a0474a3ace9996ba",
    "scientific-python-docs.txt": "12c4557ea59f67e368f733c18ce7ba393b8f9a50d6b3a52050b0d0b38a13be43",
    "python-tools-docs.txt": "2f1a5c68277fd0280cdfc79163705c95d9b5efb748eaa4c868ed43d11ddbaf7f",
    "cmake-docs.txt": "5b87e76b3c79d84db7d18b3957b590e0efbd77a73d1e551b26336302d3b03345",
    "nodejs-docs.txt": "b400ae3027d34cff442a13cf5f94dcea1653a20e69518807ec4d62b11251b6ce",
    "nim-docs.txt": "8371e8bf2e27eb72c200b62fe649057049c0510fe652d72483335b855a7b8e7c",
    "swi-prolog-docs.txt": "597d5263f9c546c686f43366d4db41170820e3d8c0fb5bf4067339724e3f725c",
    "ghc-docs.txt": "72a7681633472af236b6d7463c46095357b92b7db6b12378afdf4fca8a958171",
    "english-heldout.txt": "39bbe0b7b3c47f83cb888019111769da7c5afbf323e5d4e42969b62ce953f7c7",
}
VERSIONS: dict[str, str] = {
    "bible-kjv": "4.38",
    "bible-kjv-text": "4.38",
    "jargon-text": "4.4.7-4.1",
    "dict-devil": "1.0-13.1",
    "wordnet-base": "1:3.0-37",
    "sword-comm-tdavid": "2.1-1",
    "sword-text-web": "426.0-1",
    "rust-doc": "1.63.0+dfsg1-2",
    "python3.11-doc": "3.11.2-6+deb12u9",
    "python-django-doc": "3:3.2.25-0+deb12u7",
    "sqlite3-doc": "3.40.1-2+deb12u2",
    "postgresql-doc-15": "15.20-0+deb12u1",
    "erlang-doc": "1:25.2.3+dfsg-1+deb12u4",
    "apache2-doc": "2.4.71-1~deb12u1",
    "llvm-15-doc": "1:15.0.6-4",
    "clang-15-doc": "1:15.0.6-4",
    "barbican-doc": "1:15.0.1-2",
    "cinder-doc": "2:21.3.1-1~deb12u1",
    "designate-doc": "1:15.0.2-0+deb11u1",
    "glance-doc": "2:25.1.0-2+deb12u5",
    "heat-doc": "1:19.0.0-3",
    "ironic-doc": "1:21.4.4-0+deb12u3",
    "keystone-doc": "2:22.0.2-0+deb12u6",
    "manila-doc": "1:15.1.0-2",
    "neutron-doc": "2:21.0.0-7+deb12u1",
    "nova-doc": "2:26.2.2-1~deb12u5",
    "octavia-doc": "11.0.0-2+deb12u1",
    "placement-doc": "8.0.0-2",
    "swift-doc": "2.30.1-0+deb12u3",
    "trove-doc": "1:18.0.0-2",
    "python-sqlalchemy-doc": "1.4.46+ds1-1",
    "python-sklearn-doc": "1.2.1+dfsg-1",
    "python-pandas-doc": "1.5.3+dfsg-2",
    "python-scipy-doc": "1.10.1-2",
    "python-sympy-doc": "1.11.1-1",
    "python-astropy-doc": "5.2.1-2+deb12u1",
    "python-dask-doc": "2022.12.1+dfsg-2",
    "docutils-doc": "0.19+dfsg-6",
    "mypy-doc": "1.0.1-1",
    "sphinx-doc": "5.3.0-4",
    "python-pytest-doc": "7.2.1-2",
    "python-setuptools-doc": "66.1.1-1+deb12u2",
    "cython-doc": "0.29.32-2",
    "twisted-doc": "22.4.0-4+deb12u1",
    "python-tornado-doc": "6.2.0-3+deb12u4",
    "cmake-doc": "3.25.1-1",
    "nodejs-doc": "18.20.4+dfsg-1~deb12u3",
    "nim-doc": "1.6.10-2",
    "swi-prolog-doc": "9.0.4+dfsg-2",
    "ghc-doc": "9.0.2-4",
    "python-flask-doc": "2.2.2-3",
}


# ---- a package's files ---------------------------------------------------------------------------


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """`command`'s result, its output captured as text; a missing program is refused in one line."""
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    except FileNotFoundError:
        raise Refusal(
            f"{command[0]} not found; install Debian's package tools: apt-get install apt dpkg"
        ) from None


def prefix(glob: str) -> str:
    """The path a glob's matches are under: its text before the first wildcard."""
    return re.split(r"[*?\[]", glob, maxsplit=1)[0]


def installed_version(package: str) -> str | None:
    """The version of `package` that dpkg has installed, or None."""
    if shutil.which("dpkg-query") is None:
        return None
    done = run(["dpkg-query", "-W", "-f=${Status}\t${Version}", package])
    status, _, version = done.stdout.partition("\t")
    return version if done.returncode == 0 and status.endswith(" installed") else None


def fetched(package: str, cache: Path) -> Path:
    """`package`'s .deb in `cache`, fetched with `apt-get download` unless it is there."""
    deb = cache / f"{package}.deb"
    if not deb.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as folder:
            done = run(["apt-get", "download", package], cwd=folder)
            debs = sorted(Path(folder).glob("*.deb"))
            if done.returncode != 0 or len(debs) != 1:
                error = next((line for line in done.stderr.splitlines() if line.startswith("E:")), "no .deb")
                raise Refusal(
                    f"apt-get download {package} failed ({error}); run `apt-get update`, or install it "
                    f"with: apt-get install {package}"
                )
            os.replace(debs[0], deb)
    return deb


def unpack(deb: Path, prefixes: tuple[str, ...], folder: Path) -> None:
    """Write the regular files of `deb` that are under `prefixes` into `folder`."""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as dpkg:
        assert dpkg.stdout is not None
        with tarfile.open(fileobj=dpkg.stdout, mode="r|") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if member.isfile() and name.startswith(prefixes) and ".." not in name.split("/"):
                    target = folder / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
                    target.chmod(member.mode & 0o755)  # `bible` runs from here
    if dpkg.returncode != 0:
        raise Refusal(f"dpkg-deb --fsys-tarfile {deb} failed; delete it and run again")


def matches(root: Path, globs: tuple[str, ...], exclude: str) -> list[Path]:
    """The files under `root` that `globs` match, sorted, less indexes and what `exclude` matches."""
    names = {path.relative_to(root).as_posix() for glob in globs for path in root.glob(glob)}
    return [
        root / name
        for name in sorted(names)
        if (root / name).is_file()
        and not NOT_PROSE.search(name)
        and not (exclude and re.search(exclude, name))
    ]


def package_files(source: Source, cache: Path, work: Path) -> tuple[list[Path], dict[str, str]]:
    """The files `source` is read from, in order, and the version of each of its packages: an
    installed package's files where they are there, else those unpacked into `work` from its .deb."""
    files: list[Path] = []
    versions = {}
    for package, globs in source.files.items():
        version = installed_version(package)
        found = matches(Path("/"), globs, source.exclude) if version else []
        if not found:
            deb = fetched(package, cache)
            version = run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()
            unpack(deb, tuple(prefix(glob) for glob in globs), work / package)
            found = matches(work / package, globs, source.exclude)
            if not found:
                raise Refusal(f"{package} {version} has none of {', '.join(globs)}; is this Debian 12?")
        files += [path for path in found if path not in files]
        versions[package] = version
    return files, versions


def changes(name: str, sha256: str, versions: dict[str, str]) -> str:
    """How the file `name` differs from EXPECTED: "" when its sha256 is as expected, else which of
    its packages has another version than in VERSIONS, or that none has (the script changed)."""
    if EXPECTED.get(name) == sha256:
        return ""
    if name not in EXPECTED:
        return f"{name} (sha256 {sha256}) is not in EXPECTED"
    moved = [
        f"{package} {version}, not {VERSIONS.get(package, 'unknown')}"
        for package, version in versions.items()
        if version != VERSIONS.get(package)
    ]
    if moved:
        return f"{name} has sha256 {sha256}, from {'; '.join(moved)}"
    return f"{name} has sha256 {sha256}, from the same package versions: this script reads them otherwise"


# ---- writing -------------------------------------------------------------------------------------


def paragraphs_of(text: str) -> list[str]:
    """The paragraphs of a text this script writes (a blank line between them)."""
    return text.rstrip("\n").split("\n\n")


def without(text: str, digests: set[bytes]) -> str:
    """`text` less the paragraphs whose digest is in `digests`."""
    return "\n\n".join(p for p in paragraphs_of(text) if digest(p) not in digests) + "\n"


def write_atomically(path: Path, text: str) -> str:
    """Write `text` to `path` through `path`.part, renamed into place; returns its sha256."""
    data = text.encode("utf-8")
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)
    return hashlib.sha256(data).hexdigest()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/english_corpus.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR, help="the folder to write into")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the folder of fetched packages")
    parser.add_argument("--list", action="store_true", help="list the sources and their licences")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sources = (*SOURCES, HELDOUT)
    if args.list:
        for source in sources:
            print(f"{source.name}.txt: {source.kind} [{', '.join(source.files)}; {source.licence}]")
        return 0
    started, total, changed = time.monotonic(), 0, []
    corpus: set[bytes] = set()  # a digest of each paragraph of the corpus
    try:
        for tool in ("apt-get", "dpkg-deb"):
            if shutil.which(tool) is None:
                raise Refusal(f"{tool} not found; install Debian's package tools: apt-get install apt dpkg")
        for source in sources:  # every package first: one that is missing stops the script before it writes
            for package in source.files:
                if installed_version(package) is None:
                    fetched(package, args.cache)
        args.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=args.cache if args.cache.is_dir() else None) as work:
            for source in sources:
                heldout = source is HELDOUT
                path = (
                    args.dir.parent / f"{args.dir.name}-heldout.txt"
                    if heldout
                    else args.dir / f"{source.name}.txt"
                )
                files, versions = package_files(source, args.cache, Path(work))
                text = source.read(files)
                for package in source.files:  # what was unpacked for it
                    shutil.rmtree(Path(work) / package, ignore_errors=True)
                if heldout:  # none of the corpus's paragraphs (a library's docstring quoted in both, say)
                    text = without(text, corpus)
                else:
                    corpus.update(map(digest, paragraphs_of(text)))
                    total += len(text.encode("utf-8"))
                sha256 = write_atomically(path, text)
                change = changes(path.name, sha256, versions)
                changed += [change] if change else []
                made_from = ", ".join(f"{package} {version}" for package, version in versions.items())
                state = "sha256 as expected" if not change else "sha256 not as expected"
                print(f"{path}: {path.stat().st_size:,} bytes from {made_from}; {state}", flush=True)
    except Refusal as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(f"{total:,} bytes in {len(SOURCES)} files in {args.dir}, in {time.monotonic() - started:.0f} s")
    if changed:
        print(f"{PROG}: {len(changed)} files differ from EXPECTED:", file=sys.stderr)
        print("\n".join(f"  {change}" for change in changed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
