"""Byte-level BPE: a subword vocabulary trained with HuggingFace's `tokenizers` on the training text.

    bpe = BytePairs.train(chunks, vocab_size=4096)     # streams the text, 64 K characters at a time
    ids = bpe.encode("héllo 😀 中文")                   # np.ndarray of token ids
    bpe.decode(ids)                                     # 'héllo 😀 中文', exactly
    BytePairs.from_json(bpe.to_json()) == bpe           # the tokenizers JSON and its sha256

Byte level, as GPT-2's: the text's UTF-8 bytes are the alphabet (all 256 are tokens, whatever the
training text held), so any text encodes and decodes back exactly, and merges of frequent byte
sequences make the rest of the vocabulary. Text is first split into words by GPT-2's pattern (a word
takes the space before it); merges never cross a split. reverie decodes by itself from each token's
bytes (`token_bytes`), so that a stream of tokens can be decoded as it comes, a character whose bytes
span two tokens waiting for the second (reverie.text.tokenizer.StreamDecoder).

Text is cut into pieces only where the cut cannot change the tokens (`CUT`: before a space or after a
newline, with no other whitespace on either side), so a corpus read in chunks is encoded exactly as
the whole text would be, in pieces of at most `PIECE_CHARS` characters (bounded memory, and
`tokenizers` encodes a batch of pieces on several threads). Lone surrogates (which only
`--errors surrogateescape` gives) have no UTF-8 of their own: they are encoded as the bytes Python
writes for them with "surrogatepass", like reverie's byte level, and decode as U+FFFD.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from reverie.errors import ReverieError, first_line, require

if TYPE_CHECKING:
    import tokenizers

DEFAULT_VOCAB = 4096
MIN_VOCAB = 256  # the bytes
PIECE_CHARS = 1 << 16  # what `tokenizers` is given at a time
BATCH_PIECES = 16  # pieces encoded together (on several threads)
# Where text can be cut without changing its tokens: before a space, or after a newline, that has no
# other whitespace on either side. GPT-2's pattern ends a word there in the whole text and in the two
# pieces alike (Python's \s holds every character the pattern's \s does, so \S is on the safe side).
CUT = re.compile(r"(?<=\S)(?= \S)|(?<=\S\n)(?=\S)")
_CUT_WINDOW = 4096  # the last cut is looked for in windows of this many characters, from the end
_SURROGATES = re.compile("[\ud800-\udfff]+")
# Learning merges takes time quadratic in a word's length (a file of one character a million times is
# one word), so the text it learns from is cut after this many characters of no whitespace or of only
# whitespace: a word of text is far shorter, and encoding is not cut (it is not quadratic).
MAX_WORD_CHARS = 256
_LONG_RUN = re.compile(rf"\S{{{MAX_WORD_CHARS}}}|\s{{{MAX_WORD_CHARS}}}")


def _byte_alphabet() -> list[str]:
    """GPT-2's printable stand-in for each byte (the characters of a byte-level token's string)."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    stand_in, extra = {}, 0
    for b in range(256):
        if b in kept:
            stand_in[b] = chr(b)
        else:
            stand_in[b] = chr(256 + extra)
            extra += 1
    return [stand_in[b] for b in range(256)]


BYTE_CHARS = _byte_alphabet()
_BYTE_OF = {c: b for b, c in enumerate(BYTE_CHARS)}


def last_cut(text: str, lo: int, hi: int) -> int:
    """The last position p, lo < p <= hi, where `text` may be cut without changing its tokens; -1 if none."""
    end = hi
    while end > lo:
        start = max(lo + 1, end - _CUT_WINDOW)
        found = -1
        for match in CUT.finditer(text, start, min(len(text), end + 2)):
            if match.start() <= end:
                found = match.start()
        if found >= 0:
            return found
        end = start - 1
    return -1


def pieces(text: str, size: int = PIECE_CHARS) -> Iterator[str]:
    """`text` cut where its tokens allow into pieces of at most `size` characters where it can be (a
    stretch with no place to cut is one longer piece); joined, they are `text`."""
    start = 0
    while len(text) - start > size:
        cut = last_cut(text, start, start + size)
        if cut < 0:
            match = CUT.search(text, start + size)
            if match is None:
                break
            cut = match.start()
        yield text[start:cut]
        start = cut
    if start < len(text):
        yield text[start:]


def _to_learn_from(text: str) -> Iterator[str]:
    """The stretches of `text` that merges are learned from: none with a lone surrogate (which
    `tokenizers` does not accept) or a word longer than MAX_WORD_CHARS."""
    for stretch in _SURROGATES.split(text):
        start = 0
        for match in _LONG_RUN.finditer(stretch):
            yield stretch[start : match.end()]
            start = match.end()
        if start < len(stretch):
            yield stretch[start:]


def _sha256(spec: str) -> str:
    return hashlib.sha256(spec.encode("utf-8")).hexdigest()


class BytePairs:
    """A byte-level BPE vocabulary: the `tokenizers` JSON (`spec`), its sha256, and what reverie
    reads of it: the byte string of each token, and a display form of each (`vocab`)."""

    def __init__(self, spec: str) -> None:
        """From the JSON that `tokenizers` writes; anything but a byte-level BPE that encodes every
        text back exactly is refused in one line."""
        from tokenizers import Tokenizer as HFTokenizer

        require(isinstance(spec, str), "the saved bpe tokenizer is not a tokenizers JSON string; retrain")
        try:
            data = json.loads(spec)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            self._hf: tokenizers.Tokenizer = HFTokenizer.from_str(spec)
        except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception for a JSON it cannot read
            raise ReverieError(
                f"the saved bpe tokenizer cannot be read ({first_line(exc)[:200]}); retrain"
            ) from None
        model, pre = data.get("model"), data.get("pre_tokenizer")
        model, pre = model if isinstance(model, dict) else {}, pre if isinstance(pre, dict) else {}
        vocab = model.get("vocab")
        require(
            model.get("type") == "BPE"
            and isinstance(vocab, dict)
            and pre.get("type") == "ByteLevel"
            and pre.get("use_regex") is True
            and not pre.get("add_prefix_space")
            and data.get("normalizer") is None
            and not data.get("added_tokens")
            and model.get("dropout") is None
            and not model.get("continuing_subword_prefix")
            and not model.get("end_of_word_suffix"),
            "the saved tokenizer is not a plain byte-level BPE (a GPT-2 split, no normalizer, no added "
            "tokens); retrain",
        )
        by_id = sorted((i, token) for token, i in vocab.items() if isinstance(i, int))
        require(
            [i for i, _ in by_id] == list(range(len(vocab)))
            and all(isinstance(t, str) and t and all(c in _BYTE_OF for c in t) for _, t in by_id)
            and set(BYTE_CHARS) <= set(vocab),
            "the saved bpe vocabulary is not every byte plus byte sequences numbered 0, 1, 2 ...; retrain",
        )
        self.spec = spec
        self.sha256 = _sha256(spec)
        self.token_bytes = [bytes(_BYTE_OF[c] for c in token) for _, token in by_id]
        # each token's text; bytes that are not whole UTF-8 characters as lone surrogates
        # (surrogateescape), so that two tokens never look the same
        self.vocab = [b.decode("utf-8", "surrogateescape") for b in self.token_bytes]
        self._byte_ids = np.array([vocab[c] for c in BYTE_CHARS], dtype=np.int64)

    # ---- building ----

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB) -> BytePairs:
        """Learn merges from a stream of text chunks up to `vocab_size` tokens (fewer when the text
        has too few pairs to merge). The text is streamed to `tokenizers` in pieces of at most
        PIECE_CHARS characters (and words of at most MAX_WORD_CHARS); it keeps a count of each
        distinct word."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        require(
            MIN_VOCAB <= vocab_size,
            f"a bpe vocabulary needs at least {MIN_VOCAB} tokens (the bytes), got {vocab_size}",
        )
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=[],
            show_progress=False,
        )
        seen = [False]

        def stream() -> Iterator[str]:
            for text in texts:
                for piece in pieces(text):
                    for stretch in _to_learn_from(piece):
                        seen[0] = True
                        yield stretch

        hf.train_from_iterator(stream(), trainer)
        require(seen[0], "the corpus is empty; pass a file with some text")
        return cls(hf.to_str())

    # ---- text <-> ids ----

    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes)

    def encode(self, text: str, dtype: np.dtype | type = np.uint32) -> np.ndarray:
        """Token ids of `text`, as a 1-D array of `dtype`."""
        arrays: list[np.ndarray] = []
        batch: list[str] = []

        def flush() -> None:
            batch[:] = [piece for piece in batch if piece]
            if batch:
                for encoding in self._hf.encode_batch(batch, add_special_tokens=False):
                    arrays.append(np.array(encoding.ids, dtype=dtype))
                batch.clear()

        for piece in pieces(text):
            if _SURROGATES.search(piece):  # encoded around: each lone surrogate as its three byte tokens
                flush()
                position = 0
                for match in _SURROGATES.finditer(piece):
                    batch.append(piece[position : match.start()])
                    flush()
                    raw = match.group().encode("utf-8", "surrogatepass")
                    arrays.append(self._byte_ids[np.frombuffer(raw, dtype=np.uint8)].astype(dtype))
                    position = match.end()
                piece = piece[position:]
            batch.append(piece)
            if len(batch) == BATCH_PIECES:
                flush()
        flush()
        return np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; bytes that are not valid UTF-8 (a character cut off) become U+FFFD."""
        return b"".join([self.token_bytes[i] for i in ids]).decode("utf-8", "replace")

    # ---- JSON ----

    def to_json(self) -> dict[str, Any]:
        return {"tokenizers": self.spec, "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BytePairs:
        """Rebuild a vocabulary saved with `to_json`; refused in one line unless its JSON matches its
        sha256."""
        spec, digest = data.get("tokenizers"), data.get("sha256")
        require(
            isinstance(spec, str) and isinstance(digest, str),
            "the saved bpe tokenizer is malformed (needs 'tokenizers' and 'sha256'); retrain the model",
        )
        require(
            _sha256(spec) == digest,
            "the saved bpe tokenizer does not match its sha256: it is damaged or was edited; retrain the "
            "model or restore its config.json",
        )
        return cls(spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BytePairs) and self.spec == other.spec

    def __hash__(self) -> int:
        return hash(self.sha256)
