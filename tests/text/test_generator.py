"""reverie.load() and TextModel: seeded, streamed, batched generation and clean refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY
from helpers import shakespeare_slice, stored_file

import reverie
from reverie.errors import ReverieError
from reverie.text.generator import TextModel
from reverie.text.sampling import SamplingOptions
from reverie.text.train import train


def test_load_gives_a_text_model(tiny_run: Path):
    model = reverie.load(tiny_run)
    assert isinstance(model, TextModel) and model.tokenizer.level == "char"
    assert not model.model.training and model.device == torch.device("cpu")


def test_same_seed_same_text(tiny_run: Path):
    model = reverie.load(tiny_run)
    first = model.generate("ROMEO:", length=80, temperature=1.0, seed=3)
    assert len(first) == 80  # char level: one character per token, the prompt not repeated
    assert model.generate("ROMEO:", length=80, temperature=1.0, seed=3) == first
    assert reverie.load(tiny_run).generate("ROMEO:", length=80, temperature=1.0, seed=3) == first
    assert model.generate("ROMEO:", length=80, temperature=1.0, seed=4) != first


def test_stream_pieces_join_to_the_generated_text(tiny_run: Path):
    model = reverie.load(tiny_run)
    pieces = list(model.stream("First", length=30, top_k=5, seed=1))
    assert len(pieces) == 30 and "".join(pieces) == model.generate("First", length=30, top_k=5, seed=1)


def test_temperature_zero_is_greedy(tiny_run: Path):
    model = reverie.load(tiny_run)
    text = model.generate("the ", length=20, temperature=0)
    assert model.generate("the ", length=20, temperature=0, seed=123) == text
    ids = model.tokenizer.encode("the ")
    with torch.no_grad():
        logits, _ = model.model(torch.tensor([ids]))
    assert text[0] == model.tokenizer.vocab[int(logits[0, -1].argmax())]


def test_several_samples_run_as_a_batch(tiny_run: Path):
    model = reverie.load(tiny_run)
    texts = model.generate_batch("A", length=15, num_samples=3, seed=0)
    assert isinstance(texts, list) and len(texts) == 3 and all(len(t) == 15 for t in texts)
    assert len(set(texts)) > 1
    steps = list(model.stream_batch("A", length=15, num_samples=3, seed=0))
    assert ["".join(column) for column in zip(*steps)] == texts
    assert isinstance(model.generate("A", length=15, seed=0), str)  # one sample: a string, always
    assert model.generate_batch("A", length=15, num_samples=1, seed=0) == [
        model.generate("A", length=15, seed=0)
    ]
    with pytest.raises(ReverieError, match="use stream_batch or generate_batch for several"):
        model.stream("A", num_samples=3)


def test_empty_prompt_reads_as_a_new_line(tiny_run: Path):
    model = reverie.load(tiny_run)
    text = model.generate(length=10, seed=0)
    assert len(text) == 10
    newline = model.tokenizer.vocab.index("\n")
    assert model.encode_prompt("") == [newline]
    assert text == "".join(p[0] for p in model.stream_ids([newline], SamplingOptions.of(length=10, seed=0)))


def test_stop_sequences_end_each_sample_at_the_first_occurrence(tiny_run: Path):
    model = reverie.load(tiny_run)
    free = model.generate_batch("ROMEO:", length=300, num_samples=3, seed=2)
    stop = next(ch for ch in "eaot " if all(ch in text for text in free))
    stopped = model.generate_batch("ROMEO:", length=300, num_samples=3, seed=2, stop=[stop])
    assert stopped == [text[: text.index(stop)] for text in free]  # the same samples, cut before the stop
    single = model.generate("ROMEO:", length=300, seed=2)
    streamed = "".join(model.stream("ROMEO:", length=300, seed=2, stop=[stop, "zzz"]))
    assert streamed == single[: single.index(stop)]
    two = single[5:7]  # a stop of two characters, found across two pieces
    assert model.generate("ROMEO:", length=300, seed=2, stop=two) == single[: single.index(two)]


def test_a_speculating_batch_ends_its_samples_at_stops_as_a_plain_batch_does(tiny_run: Path):
    """Each sample of a batch speculates on its own with lookup drafts (reverie.text.speculative):
    greedy, the texts are plain greedy's with and without a stop; sampled, each sample is as long
    as asked, and a stop cuts each one before its own first occurrence, the others going on."""
    model, drafts = reverie.load(tiny_run), "lookup"
    greedy = {"length": 200, "num_samples": 3, "temperature": 0, "repetition_penalty": 1.2}
    plain = model.generate_batch("ROMEO:", **greedy)
    assert model.generate_batch("ROMEO:", **greedy, speculative=drafts) == plain
    stop = next(ch for ch in "eaot " if ch in plain[0])
    cut = model.generate_batch("ROMEO:", **greedy, stop=[stop], speculative=drafts)
    assert cut == [text[: text.index(stop)] for text in plain]
    sampled = {"length": 200, "num_samples": 4, "seed": 5, "speculative": drafts}
    free = model.generate_batch("ROMEO:", **sampled)
    assert all(len(text) == 200 for text in free) and len(set(free)) == 4
    stop = next(ch for ch in "eaot " if all(ch in text for text in free))
    stopped = model.generate_batch("ROMEO:", **sampled, stop=[stop])
    assert stopped == [text[: text.index(stop)] for text in free]
    assert len({text.index(stop) for text in free}) > 1  # the samples stopped at different tokens


def test_user_processors_change_what_is_written(tiny_run: Path):
    model = reverie.load(tiny_run)
    only_e = model.tokenizer.vocab.index("e")

    def always_e(history, logits):
        return torch.full_like(logits, -float("inf")).index_fill(1, torch.tensor([only_e]), 0.0)

    assert model.generate("A", length=7, seed=0, processors=[always_e]) == "eeeeeee"


def test_prompt_characters_not_in_the_vocabulary_are_named(tiny_run: Path):
    model = reverie.load(tiny_run)
    with pytest.raises(ReverieError, match=r"not in the model's vocabulary: '€', 'é'"):
        model.generate("caf€ é", length=5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"length": 0}, "length must be a positive integer"),
        ({"length": -3}, "length must be a positive integer"),
        ({"num_samples": 0}, "--num-samples must be a positive integer \\(at most 1024\\)"),
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 0.0}, "--top-p"),
        ({"top_p": 1.5}, "--top-p"),
        ({"stop": [""]}, "stop sequences must be non-empty strings"),
        ({"colour": "red"}, "unknown generation option 'colour'"),
    ],
)
def test_bad_generation_options(tiny_run: Path, kwargs: dict, message: str):
    with pytest.raises(ReverieError, match=message):
        reverie.load(tiny_run).generate_batch("A", **{"length": 5, **kwargs})


def test_best_and_latest_checkpoints(tiny_run: Path):
    config = json.loads((tiny_run / "config.json").read_text())
    best, latest = reverie.load(tiny_run), reverie.load(tiny_run, checkpoint="latest")
    same = all(
        torch.equal(a, b)
        for a, b in zip(best.model.state_dict().values(), latest.model.state_dict().values())
    )
    assert same == (config["state"]["best_step"] == config["state"]["step"])


def copy_run(tiny_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def test_refuses_a_directory_without_a_checkpoint(tmp_path: Path):
    with pytest.raises(ReverieError, match="holds no checkpoint"):
        reverie.load(tmp_path)
    with pytest.raises(ReverieError, match="does not exist"):
        reverie.load(tmp_path / "missing")


def test_refuses_truncated_and_corrupted_weights(tiny_run: Path, tmp_path: Path):
    run = copy_run(tiny_run, tmp_path)
    best = stored_file(run, "best")
    data = best.read_bytes()
    best.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReverieError, match="truncated, corrupted"):
        reverie.load(run)
    flipped = bytearray(data)
    flipped[len(data) - 10] ^= 0xFF  # a flipped bit in a weight still parses: the checksum catches it
    best.write_bytes(bytes(flipped))
    with pytest.raises(ReverieError, match="truncated, corrupted"):
        reverie.load(run)


def test_refuses_another_format_version_and_a_broken_config(tiny_run: Path, tmp_path: Path):
    run = copy_run(tiny_run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(ReverieError, match="format version 99"):
        reverie.load(run)
    (run / "config.json").write_text(json.dumps(config)[:100])
    with pytest.raises(ReverieError, match="corrupted"):
        reverie.load(run)


def test_word_level_model(tmp_path: Path):
    corpus = shakespeare_slice(tmp_path / "s.txt", 20_000)
    train(str(corpus), tmp_path / "words", level="word", steps=3, **{**TINY, "seq_len": 16})
    model = reverie.load(tmp_path / "words")
    assert model.tokenizer.level == "word"
    text = model.generate("First Citizen", length=12, seed=0)
    assert text.startswith(" ") or text[:1] in ",.;:!?'\n"  # a new word follows the prompt naturally
    with pytest.raises(ReverieError, match="words not in the model's vocabulary: 'zyzzyva'"):
        model.generate("First zyzzyva", length=3)


def test_a_run_without_validation_loads_its_latest_weights(tmp_path: Path):
    corpus = shakespeare_slice(tmp_path / "s.txt", 4_000)
    result = train(str(corpus), tmp_path / "run", steps=2, val_fraction=0.0, **TINY)
    assert (
        result.val_loss is None
        and "best" not in json.loads((tmp_path / "run" / "config.json").read_text())["files"]
    )
    assert len(reverie.load(tmp_path / "run").generate("A", length=4, seed=0)) == 4


def test_a_run_whose_training_sections_this_version_cannot_read_still_generates(
    tiny_run: Path, tmp_path: Path
):
    run = copy_run(tiny_run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["options"]["a_future_option"] = 1  # what a later version might write
    (run / "config.json").write_text(json.dumps(config))
    assert len(reverie.load(run).generate("A", length=5, seed=0)) == 5
    with pytest.raises(ReverieError, match="'options' section .* does not fit this version"):
        train(str(run / "missing.txt"), run, resume=True)


def test_a_long_prompt_for_many_samples_is_read_once_in_chunks(tiny_run: Path, monkeypatch):
    """A prompt of 300 K characters for 8 samples: the model never sees more than one chunk of it at
    a time, for one sample, and computes the output layer for its last position only."""
    from reverie.text.language_model import PREFILL_CHUNK

    model = reverie.load(tiny_run)
    seen, heads = [], []
    features, logits = type(model.model).features, type(model.model).logits
    monkeypatch.setattr(
        type(model.model), "features", lambda self, t, s=None: seen.append(t.shape) or features(self, t, s)
    )
    monkeypatch.setattr(type(model.model), "logits", lambda self, h: heads.append(h.shape) or logits(self, h))
    prompt = ("ROMEO: " * 50_000)[:300_000]
    texts = model.generate_batch(prompt, num_samples=8, length=5, seed=0)
    assert len(texts) == 8 and all(len(text) == 5 for text in texts)
    assert max(shape[1] for shape in seen) == PREFILL_CHUNK and {shape[0] for shape in seen} == {1}
    assert sum(shape[1] for shape in seen) == 300_000
    assert heads == [(1, model.model.config.hidden)]  # one position; the steps after use the stepper
