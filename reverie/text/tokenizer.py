"""Character-, word-, byte- and BPE-level tokenizers: text <-> token ids, with a JSON form for checkpoints.

    tok = Tokenizer.build(chunks, level="word", lower=True, max_vocab=10_000)
    ids = tok.encode("It's a truth--isn't it? \"Yes,\" he said.")
    tok.decode(ids)                 # 'it's a truth--isn't it? "yes," he said.'
    Tokenizer.from_json(tok.to_json()) == tok

Char level: one token per character, vocabulary sorted by code point, no unknown token.
Byte level: one token per byte of the text's UTF-8 encoding, a fixed vocabulary of 256, so it covers
any text (the shipped models' level, so they can be fine-tuned on text with characters they never saw);
its vocabulary shows bytes 0-127 as their ASCII characters and the others as "<0xNN>". A character of
several bytes takes several tokens, and decoding waits for all of them (`stream_decoder`).
BPE level: a byte-level BPE learned from the training text with HuggingFace's `tokenizers`
(reverie.text.bpe): the 256 bytes plus merged byte sequences up to `max_vocab` tokens (default
4096), so any text again, in about a third as many tokens as bytes on English; a token may end in
the middle of a character, and decoding waits for the rest as at byte level. Its vocabulary is the
`tokenizers` JSON, kept in the checkpoint with its sha256, checked when it is read.
Word level: words (with inner apostrophes and hyphens), numbers, punctuation and newlines are
tokens; spaces are dropped and put back by `decode` so that text reads naturally (no space before
`, . ; : ! ? ) ] }` or a closing quote, none after an opening bracket or quote or a newline).
Straight quotes are ambiguous, so tokenizing marks opening ones as "``" (double) and "`" (single),
the Penn Treebank convention; `decode` turns them back into quotes. Tokens rarer than the
`max_vocab - 1` most frequent become "<unk>".

The vocabulary is built by streaming counts over chunks of text, so a corpus never needs to be in
memory at once; `split_at_whitespace` re-cuts arbitrary chunks so that no word is cut in two.
"""

from __future__ import annotations

import codecs
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from reverie.errors import ReverieError, require
from reverie.text import bpe

LEVELS = ("char", "word", "byte", "bpe")
UNK = "<unk>"
BYTE_VOCAB = tuple(chr(b) if b < 128 else f"<0x{b:02X}>" for b in range(256))

# Order matters: the first alternative that matches at a position wins.
_WORD_TOKEN = re.compile(
    r"\n"
    r"|\d+(?:[.,:]\d+)+"  # 3.14, 1,000, 10:30
    r"|\w+(?:['’\-]\w+)*"  # words, with inner apostrophes and hyphens: don't, o'er, well-known
    r"|``|\.+|-+|!+|\?+"  # opening-double-quote mark, runs such as ... -- !!
    r"|[^\w\s]"  # any other punctuation or symbol, one character each
)
# A straight quote is opening when preceded by whitespace/start/an opening bracket and followed by a
# non-space; it is marked before splitting so that decode knows which side it attaches to.
_OPENING_DOUBLE = re.compile(r'(?<![^\s(\[{`])"(?=\S)')
_OPENING_SINGLE = re.compile(r"(?<![^\s(\[{`])'(?=\S)")
_DISPLAY = {"``": '"', "`": "'"}

_NO_SPACE_AFTER = frozenset({"\n", "(", "[", "{", "``", "`", "“", "‘", "¿", "¡"})
_NO_SPACE_BEFORE_FIRST_CHAR = frozenset(",.;:!?)]}%\"'”’…")
_JOINERS = frozenset({"—", "/"})  # plus dash runs of length >= 2, see _is_joiner

_UNSIGNED_DTYPES = (np.uint8, np.uint16, np.uint32, np.uint64)
# Chunks are cut at a space or newline; a run longer than this with neither is cut anyway.
_MAX_CARRY_CHARS = 1 << 24


def split_at_whitespace(chunks: Iterable[str]) -> Iterator[str]:
    """Re-cut a stream of text chunks so that each piece ends at a space or newline.

    Concatenating the pieces gives back the input exactly; tokenizing piece by piece then gives
    the same tokens as tokenizing the whole text (no word is split across two pieces).
    """
    return _recut(chunks, lambda text: max(text.rfind(" "), text.rfind("\n")) + 1)


def split_for(level: str, chunks: Iterable[str]) -> Iterator[str]:
    """Re-cut a stream of text chunks into pieces that `level` tokenizes as it would the whole text:
    at whitespace (`split_at_whitespace`), or for bpe where its tokens allow (reverie.text.bpe.CUT)."""
    if level == "bpe":
        return _recut(chunks, lambda text: max(bpe.last_cut(text, 0, len(text) - 1), 0))
    return split_at_whitespace(chunks)


def _recut(chunks: Iterable[str], cut_of: Callable[[str], int]) -> Iterator[str]:
    """Pieces of `chunks` that end where `cut_of(text)` says the text can be cut (0: nowhere); a
    stretch longer than _MAX_CARRY_CHARS with nowhere to cut is cut anyway."""
    carry = ""
    for chunk in chunks:
        text = carry + chunk if carry else chunk
        cut = cut_of(text)
        if cut == 0:
            if len(text) > _MAX_CARRY_CHARS:
                yield text
                text = ""
            carry = text
            continue
        yield text[:cut]
        carry = text[cut:]
    if carry:
        yield carry


def smallest_unsigned_dtype(max_value: int) -> np.dtype:
    """The narrowest numpy unsigned integer dtype that can hold `max_value`."""
    for dtype in _UNSIGNED_DTYPES:
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ReverieError(f"a vocabulary of {max_value + 1} tokens is too large")


def _is_joiner(token: str) -> bool:
    return token in _JOINERS or (len(token) >= 2 and token.strip("-") == "")


def _space_between(previous: str | None, token: str) -> bool:
    """Whether detokenized word-level text has a space between `previous` and `token`."""
    if previous is None or previous in _NO_SPACE_AFTER or token == "\n":
        return False
    if token[0] in _NO_SPACE_BEFORE_FIRST_CHAR:
        return False
    return not (_is_joiner(token) or _is_joiner(previous))


class Tokenizer:
    """Maps text to token ids and back, at character, word, byte or bpe level (`pairs`: a bpe
    level's vocabulary, whose display form `vocab` then is)."""

    def __init__(
        self, level: str, vocab: Sequence[str], lower: bool = False, pairs: bpe.BytePairs | None = None
    ) -> None:
        require(level in LEVELS, f"unknown level {level!r}; use one of: {', '.join(LEVELS)}")
        require((level == "bpe") == (pairs is not None), "a bpe tokenizer, and only a bpe one, has merges")
        vocab = list(vocab)
        require(len(vocab) > 0, "the tokenizer vocabulary is empty")
        require(
            all(isinstance(t, str) and t for t in vocab),
            "tokenizer vocabulary entries must be non-empty strings",
        )
        require(len(set(vocab)) == len(vocab), "the tokenizer vocabulary has duplicate entries")
        if level == "char":
            require(all(len(t) == 1 for t in vocab), "a char-level vocabulary must hold single characters")
            require(vocab == sorted(vocab), "a char-level vocabulary must be sorted")
        elif level == "byte":
            require(tuple(vocab) == BYTE_VOCAB, "a byte-level vocabulary must be the 256 bytes in order")
        elif level == "bpe":
            require(vocab == pairs.vocab, "a bpe vocabulary must be its merges' tokens")
        else:
            require(UNK in vocab, f"a word-level vocabulary must contain {UNK!r}")
        self.level = level
        self.vocab = vocab
        self.lower = bool(lower)
        self.pairs = pairs
        self.unk: str | None = UNK if level == "word" else None
        self._ids = {token: i for i, token in enumerate(vocab)}
        self._unk_id = self._ids.get(UNK, -1) if level == "word" else -1
        # Char level encodes with a lookup table indexed by code point (-1: not in the vocabulary).
        self._char_table: np.ndarray | None = None
        if level == "char":
            codepoints = np.array([ord(t) for t in vocab], dtype=np.int64)
            self._char_table = np.full(int(codepoints.max()) + 1, -1, dtype=np.int32)
            self._char_table[codepoints] = np.arange(len(vocab), dtype=np.int32)

    # ---- building -------------------------------------------------------------------------------

    @classmethod
    def build(
        cls, texts: Iterable[str], level: str = "char", lower: bool = False, max_vocab: int | None = None
    ) -> Tokenizer:
        """Build a vocabulary from a stream of text chunks.

        Char level: every character seen, sorted (`max_vocab` does not apply: there is no unknown
        character). Byte level: the 256 bytes, whatever the text. Word level: the `max_vocab - 1`
        most frequent tokens (ties broken by the token) plus "<unk>" first; all tokens when
        `max_vocab` is None. BPE level: the bytes and merges learned from the text, `max_vocab`
        tokens in all (4096 when None; fewer when the text has too few pairs to merge); the
        chunks are cut as `split_for` does.
        """
        require(level in LEVELS, f"unknown level {level!r}; use one of: {', '.join(LEVELS)}")
        if level == "word" and max_vocab is not None:
            require(max_vocab >= 2, f"max_vocab must be at least 2 (one word and {UNK}), got {max_vocab}")
        if level == "byte":
            return cls.byte_level(lower)
        if level == "bpe":
            lowered = (chunk.lower() for chunk in texts) if lower else texts
            pairs = bpe.BytePairs.train(split_for("bpe", lowered), max_vocab or bpe.DEFAULT_VOCAB)
            return cls("bpe", pairs.vocab, lower, pairs)
        if level == "char":
            seen: set[str] = set()
            for piece in split_at_whitespace(texts):
                seen.update(piece.lower() if lower else piece)
            require(len(seen) > 0, "the corpus is empty; pass a file with some text")
            return cls("char", sorted(seen), lower)
        counts: Counter[str] = Counter()
        for piece in split_at_whitespace(texts):
            counts.update(_word_tokens(piece, lower))
        counts.pop(UNK, None)
        require(len(counts) > 0, "the corpus has no words; pass a file with some text")
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        if max_vocab is not None:
            ranked = ranked[: max_vocab - 1]
        return cls("word", [UNK] + [token for token, _ in ranked], lower)

    @classmethod
    def byte_level(cls, lower: bool = False) -> Tokenizer:
        """The byte-level tokenizer: any text, 256 tokens."""
        return cls("byte", BYTE_VOCAB, lower)

    # ---- properties -----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def id_dtype(self) -> np.dtype:
        """The smallest numpy unsigned dtype that holds every id."""
        return smallest_unsigned_dtype(self.vocab_size - 1)

    # ---- text -> ids ----------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """The token strings of `text` (after lowercasing if the tokenizer lowercases)."""
        if self.level == "char":
            return list(text.lower() if self.lower else text)
        if self.level == "byte":
            return [self.vocab[b] for b in _utf8(text, self.lower)]
        if self.level == "bpe":
            return [self.vocab[i] for i in self.encode_array(text).tolist()]
        return _word_tokens(text, self.lower)

    def unknown_tokens(self, text: str) -> list[str]:
        """Distinct tokens of `text` that are not in the vocabulary, in order of first appearance
        (none at byte and bpe level)."""
        if self.level in ("byte", "bpe"):
            return []
        tokens = self.tokenize(text)
        return [t for t in dict.fromkeys(tokens) if t not in self._ids]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`. Word level maps unknown words to <unk>; char level refuses unknown
        characters (check with `unknown_tokens` first to report them nicely)."""
        return self.encode_array(text).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        """Token ids of `text` as a 1-D array of `id_dtype` (fast path used for whole corpora)."""
        if self.level == "word":
            tokens = _word_tokens(text, self.lower)
            ids = map(self._ids.get, tokens, itertools.repeat(self._unk_id))
            return np.fromiter(ids, dtype=self.id_dtype, count=len(tokens))
        if self.level == "byte":
            return np.frombuffer(_utf8(text, self.lower), dtype=np.uint8).copy()
        if self.pairs is not None:
            return self.pairs.encode(text.lower() if self.lower else text, self.id_dtype)
        if self.lower:
            text = text.lower()
        # utf-32 gives one code point per character; surrogatepass keeps lone surrogates encodable.
        codepoints = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        table = self._char_table
        if len(codepoints) and int(codepoints.max()) >= len(table):
            ids = np.full(len(codepoints), -1, dtype=np.int32)
        else:
            ids = table[codepoints]
        if len(ids) and int(ids.min()) < 0:
            unknown = self.unknown_tokens(text)
            shown = ", ".join(repr(c) for c in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise ReverieError(f"characters not in the vocabulary: {shown}")
        return ids.astype(self.id_dtype)

    # ---- ids -> text ----------------------------------------------------------------------------

    def decode(self, ids: Sequence[int] | Any, previous: int | None = None) -> str:
        """Text of `ids`. `previous` is the id emitted just before `ids[0]`, so that decoding a
        stream piece by piece joins exactly like decoding it whole (at byte level, where a character
        may be cut between pieces, decode a stream with `stream_decoder`; so at bpe level). Bytes
        that are not valid UTF-8 become U+FFFD."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        vocab = self.vocab
        if self.level == "byte":
            return bytes(ids).decode("utf-8", "replace")
        if self.pairs is not None:
            return self.pairs.decode(ids)
        if self.level == "char":
            return "".join([vocab[i] for i in ids])
        parts: list[str] = []
        last = None if previous is None else vocab[int(previous)]
        for i in ids:
            token = vocab[i]
            if _space_between(last, token):
                parts.append(" ")
            parts.append(_DISPLAY.get(token, token))
            last = token
        return "".join(parts)

    def stream_decoder(self, previous: int | None = None) -> StreamDecoder:
        """Decodes a stream of ids one at a time, each piece the text it completes: joined, the
        pieces are `decode` of the whole stream. `previous`: the id the stream continues."""
        return StreamDecoder(self, previous)

    # ---- JSON -----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The tokenizer as JSON: its vocabulary, or at bpe level the `tokenizers` JSON (as one
        string) and its sha256, with no vocabulary beside it."""
        if self.pairs is not None:
            return {"level": self.level, "lower": self.lower, **self.pairs.to_json()}
        return {"level": self.level, "lower": self.lower, "vocab": list(self.vocab)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tokenizer:
        """Rebuild a tokenizer saved with `to_json`; a malformed one, or a bpe one whose JSON does
        not match its sha256, is refused in one line."""
        if isinstance(data, dict) and data.get("level") == "bpe":
            pairs = bpe.BytePairs.from_json(data)
            return cls("bpe", pairs.vocab, bool(data.get("lower", False)), pairs)
        if not isinstance(data, dict) or not isinstance(data.get("vocab"), list) or "level" not in data:
            raise ReverieError(
                "the saved tokenizer is malformed (needs 'level' and 'vocab'); retrain the model"
            )
        return cls(str(data["level"]), data["vocab"], bool(data.get("lower", False)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and (self.level, self.lower, self.vocab, self.pairs) == (
            other.level,
            other.lower,
            other.vocab,
            other.pairs,
        )

    def __repr__(self) -> str:
        return f"Tokenizer(level={self.level!r}, vocab_size={self.vocab_size}, lower={self.lower})"


class StreamDecoder:
    """Text of ids fed one at a time (Tokenizer.stream_decoder): word level spaces each token after
    the one before, byte and bpe level hold the bytes of a character until it is complete."""

    def __init__(self, tokenizer: Tokenizer, previous: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.previous = previous
        in_bytes = tokenizer.level in ("byte", "bpe")
        self._bytes = codecs.getincrementaldecoder("utf-8")("replace") if in_bytes else None
        self._token_bytes = tokenizer.pairs.token_bytes if tokenizer.pairs is not None else None

    def feed(self, token: int) -> str:
        """The text that `token` completes ("" while a character's bytes are incomplete)."""
        if self._token_bytes is not None:
            return self._bytes.decode(self._token_bytes[token])
        if self._bytes is not None:
            return self._bytes.decode(bytes((token,)))
        text = self.tokenizer.decode([token], previous=self.previous)
        self.previous = token
        return text

    def flush(self) -> str:
        """What is left at the end: U+FFFD for a character whose bytes never completed."""
        return self._bytes.decode(b"", final=True) if self._bytes is not None else ""


def _utf8(text: str, lower: bool) -> bytes:
    """The UTF-8 bytes of `text` (lone surrogates kept as their three bytes, as Python writes them)."""
    return (text.lower() if lower else text).encode("utf-8", "surrogatepass")


def _word_tokens(text: str, lower: bool) -> list[str]:
    if lower:
        text = text.lower()
    if '"' in text:
        text = _OPENING_DOUBLE.sub("``", text)
    if "'" in text:
        text = _OPENING_SINGLE.sub("`", text)
    return _WORD_TOKEN.findall(text)
