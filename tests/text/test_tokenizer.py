"""Tokenizer: char and word level round trips, <unk>, lowercasing, streaming decode, id dtype, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import NIETZSCHE as NIETZSCHE_FILE
from helpers import SHAKESPEARE as SHAKESPEARE_FILE

from reverie.errors import ReverieError
from reverie.text.tokenizer import UNK, Tokenizer, smallest_unsigned_dtype, split_at_whitespace

SHAKESPEARE = SHAKESPEARE_FILE.read_text(encoding="utf-8")
NIETZSCHE = NIETZSCHE_FILE.read_text(encoding="utf-8")

# Written with the spacing the word-level detokenizer produces, so it must come back unchanged.
PROSE = (
    "It's a truth--isn't it? \"Yes,\" he said; 'tis (really) the dogs' bone: 3.14 and 1,000...\n"
    "New line!\n\n\"'Quoted' inside,\" she said [twice]."
)


def test_char_round_trip_and_sorted_vocab() -> None:
    text = SHAKESPEARE[:20_000]
    tok = Tokenizer.build([text])
    assert tok.vocab == sorted(set(text))
    assert tok.unk is None
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert tok.decode(ids) == text


def test_char_vocab_sizes_match_reference() -> None:
    # the excerpts' distinct characters (tests/data/README.md); the whole files have 65, 84 and 57
    assert Tokenizer.build([SHAKESPEARE]).vocab_size == 61
    assert Tokenizer.build([NIETZSCHE]).vocab_size == 77
    lowered = Tokenizer.build([NIETZSCHE], lower=True)
    assert lowered.vocab_size == 52
    assert lowered.decode(lowered.encode("The Will")) == "the will"


def test_word_tokens_and_natural_detokenization() -> None:
    tok = Tokenizer.build([PROSE], level="word")
    tokens = tok.tokenize(PROSE)
    assert tokens[:12] == ["It's", "a", "truth", "--", "isn't", "it", "?", "``", "Yes", ",", '"', "he"]
    assert ["3.14", "and", "1,000", "...", "\n", "New"] == tokens[
        tokens.index("3.14") : tokens.index("New") + 1
    ]
    assert tokens.count("\n") == 3
    assert tok.decode(tok.encode(PROSE)) == PROSE


def test_word_spacing_is_normalized() -> None:
    tok = Tokenizer.build(["hello , world ( yes ) ! \n next"], level="word")
    assert tok.decode(tok.encode("  hello ,   world ( yes )  !\n  next")) == "hello, world (yes)!\nnext"


def test_word_unk_keeps_most_frequent() -> None:
    tok = Tokenizer.build(["b a a c b a d"], level="word", max_vocab=3)
    assert tok.vocab == [UNK, "a", "b"]
    assert tok.encode("a c b zzz") == [1, 0, 2, 0]
    assert tok.decode([1, 0, 2]) == "a <unk> b"
    assert tok.unknown_tokens("a c b zzz c") == ["c", "zzz"]


def test_word_lower() -> None:
    tok = Tokenizer.build(["The cat. THE DOG."], level="word", lower=True)
    assert tok.vocab == [UNK, ".", "the", "cat", "dog"]
    assert tok.decode(tok.encode("The Dog.")) == "the dog."
    assert tok.unknown_tokens("THE Bird") == ["bird"]


def test_char_unknown_tokens_and_refusal() -> None:
    tok = Tokenizer.build(["abz"])
    assert tok.unknown_tokens("abxzé") == ["x", "é"]
    for text, unknown in (("abx", "'x'"), ("abé", "'é'")):  # below and above the highest known code point
        with pytest.raises(ReverieError, match=unknown):
            tok.encode(text)
    assert tok.encode("zab") == [2, 0, 1]


@pytest.mark.parametrize("level", ["char", "word"])
def test_streaming_decode_equals_whole_decode(level: str) -> None:
    text = NIETZSCHE[:5000] + PROSE
    tok = Tokenizer.build([text], level=level)
    ids = tok.encode(text)
    whole = tok.decode(ids)
    pieces, previous = [], None
    for start in range(0, len(ids), 7):
        pieces.append(tok.decode(ids[start : start + 7], previous=previous))
        previous = ids[start + 6] if start + 7 <= len(ids) else None
    assert "".join(pieces) == whole
    one_by_one = [tok.decode([i], previous=p) for p, i in zip([None, *ids[:-1]], ids)]
    assert "".join(one_by_one) == whole


def test_building_from_chunks_equals_building_whole() -> None:
    text = NIETZSCHE[:50_000]
    chunks = [text[i : i + 1001] for i in range(0, len(text), 1001)]  # cut through words
    assert "".join(split_at_whitespace(chunks)) == text
    assert all(p[-1] in " \n" for p in list(split_at_whitespace(chunks))[:-1])
    assert Tokenizer.build(chunks, level="word") == Tokenizer.build([text], level="word")
    assert Tokenizer.build(chunks) == Tokenizer.build([text])


def test_id_dtype_is_smallest_unsigned() -> None:
    assert smallest_unsigned_dtype(255) == np.uint8
    assert smallest_unsigned_dtype(256) == np.uint16
    assert smallest_unsigned_dtype(65_535) == np.uint16
    assert smallest_unsigned_dtype(65_536) == np.uint32
    char = Tokenizer.build([SHAKESPEARE])
    assert char.id_dtype == np.uint8
    assert char.encode_array(SHAKESPEARE[:100]).dtype == np.uint8
    words = Tokenizer.build([" ".join(f"w{i}" for i in range(300))], level="word")
    assert words.vocab_size == 301
    assert words.id_dtype == np.uint16


@pytest.mark.parametrize("level", ["char", "word"])
def test_json_round_trip(level: str) -> None:
    tok = Tokenizer.build([PROSE], level=level, lower=True, max_vocab=20)
    again = Tokenizer.from_json(json.loads(json.dumps(tok.to_json())))
    assert again == tok
    assert again.encode(PROSE) == tok.encode(PROSE)
    assert again.decode(again.encode(PROSE)) == tok.decode(tok.encode(PROSE))


def test_malformed_json_and_bad_arguments_are_refused() -> None:
    with pytest.raises(ReverieError):
        Tokenizer.from_json({"level": "char"})
    with pytest.raises(ReverieError):
        Tokenizer.from_json({"level": "word", "vocab": ["a", "b"]})  # no <unk>
    with pytest.raises(ReverieError, match="level"):
        Tokenizer.build(["abc"], level="subword")
    with pytest.raises(ReverieError, match="max_vocab"):
        Tokenizer.build(["abc"], level="word", max_vocab=1)
    with pytest.raises(ReverieError, match="empty"):
        Tokenizer.build([""])
