"""BPE level (reverie.text.bpe): exact round trips of any text, the vocabulary size, the tokenizers JSON
kept with its sha256 and refused when changed, streaming decode of whole characters, a corpus read in
pieces encoded as the whole text, and a tiny run trained, generated from, read back and fine-tuned."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY
from helpers import SHAKESPEARE, run_cli, shakespeare_slice

import reverie
from reverie.errors import ReverieError
from reverie.text import bpe, rundir
from reverie.text.corpus import load_corpus
from reverie.text.evaluation import nats_per_char
from reverie.text.tokenizer import Tokenizer, split_for

ENGLISH = SHAKESPEARE.read_text(encoding="utf-8")[:20_000]
UNICODE = (
    "Café naïve résumé, Ærøskøbing; emoji 😀🎉👩‍👩‍👧 and flags 🇫🇷; 中文字符，日本語のテキスト、한국어.\n"
    "Tabs\tand\r\nCRLF,   runs of spaces , NUL \x00 and \x7f, \u00a0no-break\u2028line sep, ẞ ǅ ﬁ.\n"
)


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    """A small vocabulary learned on English only: other scripts take several tokens a character."""
    return Tokenizer.build([ENGLISH], level="bpe", max_vocab=400)


def hf_ids(tok: Tokenizer, text: str) -> list[int]:
    """What `tokenizers` itself makes of the whole text, in one piece."""
    return tok.pairs._hf.encode(text, add_special_tokens=False).ids


def test_any_text_round_trips_exactly(tok: Tokenizer) -> None:
    for text in (UNICODE, ENGLISH[:3000], "", " ", "\n\n\n", "x" * 5, UNICODE * 3 + ENGLISH[:500]):
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert all(0 <= i < tok.vocab_size for i in ids)
    rng = random.Random(0)
    code_points = [*range(0xD800), *range(0xE000, 0x110000)]  # any but the surrogates: every lead byte
    for _ in range(200):
        text = "".join(chr(rng.choice(code_points)) for _ in range(30))
        assert tok.decode(tok.encode(text)) == text
    every = "".join(chr(c) for c in range(0x100))
    assert tok.decode(tok.encode(every)) == every
    assert tok.encode_array(UNICODE).dtype == np.uint16  # 400 tokens
    assert tok.unknown_tokens(UNICODE) == []


def test_the_byte_alphabet_is_the_tokenizers_one() -> None:
    from tokenizers import pre_tokenizers

    assert sorted(bpe.BYTE_CHARS) == sorted(pre_tokenizers.ByteLevel.alphabet())
    assert bpe.BYTE_CHARS[ord("A")] == "A" and bpe.BYTE_CHARS[ord(" ")] == "Ġ" and bpe.BYTE_CHARS[10] == "Ċ"


def test_english_merges_into_fewer_tokens_than_bytes(tok: Tokenizer) -> None:
    text = ENGLISH[-5000:]
    assert len(tok.encode(text)) < 0.6 * len(text.encode("utf-8"))
    assert tok.tokenize("the king") == [tok.vocab[i] for i in tok.encode("the king")]
    assert "".join(tok.tokenize("the king")) == "the king"
    assert "\n" in tok.vocab and " " in tok.vocab  # an empty prompt's context (reverie.text.generator)


def test_lone_surrogates_decode_as_byte_level_does(tok: Tokenizer) -> None:
    text = "a\udc80b \udcff\udcfe end"  # what --errors surrogateescape gives
    byte = Tokenizer.byte_level()
    assert tok.decode(tok.encode(text)) == byte.decode(byte.encode(text))


def test_vocabulary_size_is_honoured() -> None:
    assert Tokenizer.build([ENGLISH], level="bpe", max_vocab=300).vocab_size == 300
    assert Tokenizer.build([ENGLISH], level="bpe", max_vocab=1000).vocab_size == 1000
    default = Tokenizer.build(["a tiny text, few pairs to merge"], level="bpe")
    assert 256 < default.vocab_size < bpe.DEFAULT_VOCAB  # fewer than 4096 when the text runs out of pairs
    every_byte = Tokenizer.build(["abc"], level="bpe", max_vocab=256)
    assert every_byte.vocab_size == 256 and every_byte.decode(every_byte.encode(UNICODE)) == UNICODE
    with pytest.raises(ReverieError, match="at least 256"):
        Tokenizer.build([ENGLISH], level="bpe", max_vocab=255)
    with pytest.raises(ReverieError, match="empty"):
        Tokenizer.build(["", ""], level="bpe")


def test_a_huge_word_is_learned_from_in_pieces() -> None:
    # one word of 200,000 characters would take minutes to learn merges from (quadratic in its length)
    text = "a" * 200_000 + " b" + "\n" * 50_000 + "c"
    assert [len(s) for s in bpe._to_learn_from("a" * 600 + " b" + " " * 300 + "c")] == [256, 256, 346, 45]
    tok = Tokenizer.build([text], level="bpe")
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode("a" * 200_000)) < 1000


def test_lowercasing(tok: Tokenizer) -> None:
    lower = Tokenizer.build([ENGLISH], level="bpe", lower=True, max_vocab=400)
    assert lower.decode(lower.encode("The KING")) == "the king"
    assert lower != tok


def test_building_is_reproducible_and_chunking_does_not_matter() -> None:
    chunks = [ENGLISH[i : i + 997] for i in range(0, len(ENGLISH), 997)]  # cut through words
    assert Tokenizer.build(chunks, level="bpe", max_vocab=500) == Tokenizer.build(
        [ENGLISH], level="bpe", max_vocab=500
    )


def test_cuts_never_change_the_tokens(tok: Tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bpe, "_CUT_WINDOW", 3)
    alphabet = [*"ab é中1,.'s \n\t\r", "😀", "\u00a0", "\u2028", "\x1c", "  ", "\n\n", "'s", "'ll", " 's"]
    rng = random.Random(0)
    for _ in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        whole = hf_ids(tok, text)
        cuts = [p for p in range(1, len(text)) if bpe.CUT.match(text, p)]
        assert [bpe.last_cut(text, 0, hi) for hi in range(len(text))] == [
            max([p for p in cuts if p <= hi], default=-1) for hi in range(len(text))
        ]
        for p in cuts:
            assert hf_ids(tok, text[:p]) + hf_ids(tok, text[p:]) == whole, (text, p)
        for size in (1, 3, 8):
            parts = list(bpe.pieces(text, size))
            assert "".join(parts) == text and all(parts)
            assert [i for part in parts for i in hf_ids(tok, part)] == whole
        chunks = [text[i : i + 5] for i in range(0, len(text), 5)]
        assert "".join(split_for("bpe", chunks)) == text
        assert [i for part in split_for("bpe", chunks) for i in tok.encode(part)] == whole


def test_encoding_in_pieces_equals_encoding_whole(tok: Tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    text = ENGLISH + UNICODE
    whole = hf_ids(tok, text)
    monkeypatch.setattr(bpe, "PIECE_CHARS", 100)
    monkeypatch.setattr(bpe, "BATCH_PIECES", 3)
    assert len(list(bpe.pieces(text, bpe.PIECE_CHARS))) > 100
    assert tok.encode(text) == whole


def test_streaming_decode_gives_whole_characters(tok: Tokenizer) -> None:
    text = UNICODE + ENGLISH[:400] + "😀中"
    ids = tok.encode(text)
    decoder = tok.stream_decoder()
    pieces = [decoder.feed(i) for i in ids]
    assert "".join(pieces) + decoder.flush() == tok.decode(ids) == text
    assert pieces.count("") > 10  # tokens that end inside a character wait for the rest of it
    assert all("\ufffd" not in piece for piece in pieces)
    for piece in pieces:
        piece.encode("utf-8")  # whole characters: no lone surrogate (a half-decoded byte) either
    cut_off = tok.stream_decoder()
    assert cut_off.feed(tok.encode("😀")[0]) == "" and cut_off.flush() == "\ufffd"


def test_json_round_trip_and_sha256(tok: Tokenizer) -> None:
    saved = json.loads(json.dumps(tok.to_json()))
    assert set(saved) == {"level", "lower", "tokenizers", "sha256"}
    assert saved["sha256"] == bpe.hashlib.sha256(saved["tokenizers"].encode()).hexdigest()
    again = Tokenizer.from_json(saved)
    assert again == tok and again.vocab == tok.vocab
    assert again.encode(UNICODE) == tok.encode(UNICODE)
    json.loads(saved["tokenizers"])  # the tokenizers JSON itself, usable by tokenizers.Tokenizer.from_str


def edited(saved: dict, change) -> dict:
    """`saved` with its tokenizers JSON changed and its sha256 made to match (a file damaged on purpose)."""
    spec = json.loads(saved["tokenizers"])
    change(spec)
    text = json.dumps(spec)
    return {**saved, "tokenizers": text, "sha256": bpe.hashlib.sha256(text.encode()).hexdigest()}


def test_changed_or_damaged_tokenizers_are_refused(tok: Tokenizer) -> None:
    saved = tok.to_json()
    tampered = {**saved, "tokenizers": saved["tokenizers"].replace('"!":0', '"!":1', 1)}
    assert tampered != saved
    with pytest.raises(ReverieError, match="does not match its sha256"):
        Tokenizer.from_json(tampered)
    with pytest.raises(ReverieError, match="malformed"):
        Tokenizer.from_json({"level": "bpe", "tokenizers": saved["tokenizers"]})
    truncated = saved["tokenizers"][:1000]
    garbage = {**saved, "tokenizers": truncated, "sha256": bpe.hashlib.sha256(truncated.encode()).hexdigest()}
    with pytest.raises(ReverieError, match="cannot be read"):
        Tokenizer.from_json(garbage)

    def lowercasing(spec: dict) -> None:
        spec["normalizer"] = {"type": "Lowercase"}

    def without_a_byte(spec: dict) -> None:
        del spec["model"]["vocab"]["!"]

    def wordpiece_split(spec: dict) -> None:
        spec["pre_tokenizer"] = {"type": "Whitespace"}

    for change in (lowercasing, without_a_byte, wordpiece_split):
        with pytest.raises(ReverieError) as refusal:
            Tokenizer.from_json(edited(saved, change))
        assert "\n" not in str(refusal.value) and "retrain" in str(refusal.value)


def test_a_corpus_read_in_chunks_and_memory_mapped_is_the_whole_text(tmp_path: Path) -> None:
    path = tmp_path / "text.txt"
    path.write_text(UNICODE + ENGLISH, encoding="utf-8")
    whole = load_corpus([str(path)], level="bpe", max_vocab=350)
    assert whole.tokenizer.vocab_size == 350
    assert whole.ids.tolist() == hf_ids(whole.tokenizer, UNICODE + ENGLISH)
    chunked = load_corpus([str(path)], level="bpe", max_vocab=350, chunk_chars=501)
    assert chunked.tokenizer == whole.tokenizer and chunked.ids.tolist() == whole.ids.tolist()
    mapped = load_corpus(
        [str(path)], level="bpe", max_vocab=350, memmap_threshold_bytes=1000, chunk_chars=501
    )
    assert isinstance(mapped.ids, np.memmap)
    assert mapped.tokenizer == whole.tokenizer and mapped.ids.tolist() == whole.ids.tolist()
    again = load_corpus([str(path)], tokenizer=whole.tokenizer, memmap_threshold_bytes=1000)  # the cache
    assert again.ids.tolist() == whole.ids.tolist()


def test_nats_per_char_of_each_level(tok: Tokenizer) -> None:
    text = UNICODE + ENGLISH[:2000]
    char = Tokenizer.build([text])
    assert nats_per_char(1.5, char, char.encode(text)) == 1.5
    byte = Tokenizer.byte_level()
    per_byte = len(text.encode("utf-8")) / len(text)
    assert nats_per_char(1.5, byte, byte.encode(text)) == pytest.approx(1.5 * per_byte)
    ids = tok.encode(text)
    assert nats_per_char(1.5, tok, ids) == pytest.approx(1.5 * len(ids) / len(text))


def test_train_generate_and_read_back(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = shakespeare_slice(tmp_path / "s.txt", 30_000)
    out = tmp_path / "run"
    options = {**TINY, "seq_len": 16, "hidden": 48, "lr": 1e-2}
    result = reverie.train(str(corpus), out, level="bpe", max_vocab=512, steps=60, sample_every=30, **options)
    config = rundir.RunConfig.load(out, training=True)
    built = load_corpus([str(corpus)], level="bpe", max_vocab=512).tokenizer
    assert config.tokenizer == built and config.tokenizer.vocab_size == 512
    saved = json.loads((out / rundir.CONFIG).read_text())["tokenizer"]
    assert saved["level"] == "bpe" and saved["sha256"] == config.tokenizer.pairs.sha256
    assert config.model.vocab_size == 512

    rows = rundir.read_metrics(out / rundir.METRICS)
    train_losses = [r["train_loss"] for r in rows if r["train_loss"] is not None]
    val_losses = [r["val_loss"] for r in rows if r["val_loss"] is not None]
    assert train_losses[0] < math.log(512) - 0.5  # the output bias starts at the tokens' frequencies
    assert sum(train_losses[-10:]) / 10 < sum(train_losses[:10]) / 10 - 0.3
    assert val_losses[1] < val_losses[0] < math.log(512) - 1.0 and result.best_val_loss == val_losses[1]

    model = reverie.load(out)
    assert model.tokenizer == built
    text = model.generate("ROMEO: 😀", length=30, temperature=0.8, seed=0)  # a prompt of bytes it never saw
    assert 10 <= len(text) <= 30 * max(len(token) for token in model.tokenizer.vocab)
    assert text == model.generate("ROMEO: 😀", length=30, temperature=0.8, seed=0)
    assert model.generate("", length=10, seed=0)  # an empty prompt starts from the newline token
    code, stdout, err = run_cli(
        ["generate", str(out), "--prompt", "KING", "--length", "20", "--seed", "0"], capsys
    )
    assert code == 0, err
    assert "KING" in stdout

    # fine-tuned on a text with characters its corpus never had: its tokenizer kept, the loss lower
    foreign = tmp_path / "foreign.txt"
    foreign.write_text(
        SHAKESPEARE.read_text(encoding="utf-8")[40_000:50_000].replace("e", "é"), encoding="utf-8"
    )
    tuned = reverie.train(
        str(foreign), tmp_path / "tuned", base=str(out), steps=20, sample_every=10, **options
    )
    assert rundir.RunConfig.load(tmp_path / "tuned").tokenizer == built
    tuned_losses = [r["val_loss"] for r in rundir.read_metrics(tmp_path / "tuned" / rundir.METRICS)]
    assert tuned.best_val_loss < [loss for loss in tuned_losses if loss is not None][0]  # the base's, first
    capsys.readouterr()  # what it printed

    # a tokenizer changed in config.json is refused in one line, generating or resuming
    damaged = Path(shutil.copytree(out, tmp_path / "damaged"))
    data = json.loads((damaged / rundir.CONFIG).read_text())
    data["tokenizer"]["tokenizers"] = data["tokenizer"]["tokenizers"].replace('"e":', '"E":', 1)
    (damaged / rundir.CONFIG).write_text(json.dumps(data))
    for argv in (
        ["generate", str(damaged), "--prompt", "KING", "--length", "5"],
        ["train", str(corpus), "--out", str(damaged), "--resume", "--steps", "70"],
    ):
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert "sha256" in err
