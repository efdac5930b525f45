"""Fuzzing the text `reverie train` reads: a corpus (invalid UTF-8, NUL bytes, one huge line, lone
surrogates, byte order marks) at every level, and the sidecar of a cached token file, which a later run
trusts (its tokenizer, count and dtype) or re-encodes.

    REVERIE_FUZZ_EXAMPLES=2000 python -m pytest -q tests/fuzz/test_text_files.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from .harness import FUZZ, Worker, write_case
from .strategies import dumps, mutated_bytes, mutated_json, mutated_section, nested_json

ODD_BYTES = [
    b"\x00",
    b"\xff",
    b"\xc0\x80",  # an overlong NUL
    b"\xed\xa0\x80",  # a lone surrogate, as UTF-8 would spell it
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xe2\x82",  # a character cut short
    b"\xef\xbb\xbf",  # a byte order mark
    b"\r",
    b"\n",
    "é’—…".encode(),
]
pieces = st.one_of(
    st.sampled_from(ODD_BYTES),
    st.text(max_size=20).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=20),
)
one_huge_line = st.builds(
    lambda char, count: char * count,
    st.sampled_from([b"a", b"\x00", b"-", "é".encode()]),
    st.sampled_from([1 << 16, (1 << 20) + 1]),
)
corpora = st.one_of(st.lists(pieces, max_size=40).map(b"".join), one_huge_line)


@FUZZ
@given(corpus=corpora)
def test_a_corpus(worker: Worker, case_dir: Path, corpus: bytes) -> None:
    worker.check("corpus", write_case(case_dir / "corpus.txt", corpus))


TOKENIZER = {"level": "char", "lower": False, "vocab": ["\n", " ", "a", "b", "c"]}
SIDECAR = {"tokenizer": TOKENIZER, "n_tokens": 16, "dtype": "uint8"}


@FUZZ
@given(data=st.data())
def test_a_cached_token_file(worker: Worker, case_dir: Path, data: st.DataObject) -> None:
    sidecar = data.draw(
        st.one_of(
            mutated_section(SIDECAR).map(dumps),
            mutated_section(TOKENIZER).map(lambda tokenizer: dumps({**SIDECAR, "tokenizer": tokenizer})),
            mutated_json(SIDECAR).map(dumps),
            mutated_bytes(dumps(SIDECAR)),
            nested_json,
        ),
        label="sidecar",
    )
    ids = data.draw(st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=40)), label="ids")
    write_case(case_dir / "tokens.bin", ids)
    worker.check("token_cache", write_case(case_dir / "tokens.json", sidecar))


def test_the_sidecar_of_a_real_token_file_is_taken(worker: Worker, case_dir: Path) -> None:
    """The well-formed case the fuzzing starts from is read (so the refusals above are of the lies)."""
    write_case(case_dir / "tokens.bin", np.arange(16, dtype=np.uint8).clip(0, 4).tobytes())
    reply = worker.check("token_cache", write_case(case_dir / "tokens.json", json.dumps(SIDECAR).encode()))
    assert reply == {"status": "ok"}
