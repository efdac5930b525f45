"""`reverie train` and `reverie generate` as a user runs them, and every bad input the issue lists:
exit code 2, one line on stderr, no traceback, and nothing already in the run directory changed."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from helpers import run_cli, shakespeare_slice, snapshot, stored_file

from reverie.hub import Remote
from reverie.text import corpus as corpus_module

TINY_FLAGS = [
    "--hidden",
    "32",
    "--layers",
    "1",
    "--embed",
    "16",
    "--seq-len",
    "32",
    "--batch-size",
    "16",
    "--dtype",
    "float32",
    "--device",
    "cpu",
    "--warmup-steps",
    "5",
    "--no-progress",
]


run = run_cli


def refused(argv: list[str], capsys: pytest.CaptureFixture, *needles: str) -> str:
    code, _out, err = run(argv, capsys)
    assert code == 2, (argv, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    return shakespeare_slice(tmp_path / "s.txt", 8_000)


def test_train_then_generate(tmp_path: Path, text_file: Path, capsys: pytest.CaptureFixture):
    out = tmp_path / "run"
    code, stdout, err = run(
        [
            "train",
            str(text_file),
            "--out",
            str(out),
            "--steps",
            "3",
            "--sample-length",
            "10",
            "--sample-temperatures",
            "0.5",
            *TINY_FLAGS,
        ],
        capsys,
    )
    assert code == 0, err
    assert "--- temperature 0.5" in stdout and "validation loss" in err and f"run saved in {out}" in err
    argv = [
        "generate",
        str(out),
        "--prompt",
        "First",
        "--length",
        "20",
        "--temperature",
        "0",
        "0.5",
        "--seed",
        "7",
    ]
    code, first, err = run(argv, capsys)
    assert code == 0, err
    blocks = first.split("--- temperature ")
    assert blocks[0] == "" and blocks[1].startswith("0\nFirst") and blocks[2].startswith("0.5\nFirst")
    assert len(blocks[2]) == len("0.5\nFirst") + 20 + 1
    assert run(argv, capsys)[1] == first  # same seed, same text


def test_generate_several_samples_and_prompt_file(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("First Citizen:\n", encoding="utf-8")
    code, out, err = run(
        [
            "generate",
            str(tiny_run),
            "--prompt-file",
            str(prompt),
            "--length",
            "12",
            "--num-samples",
            "2",
            "--top-p",
            "0.9",
            "--seed",
            "0",
        ],
        capsys,
    )
    assert code == 0, err
    assert out.count("--- temperature 1, sample ") == 2 and out.count("First Citizen:\n") == 2


def test_generate_stops_at_a_stop_sequence(tiny_run: Path, capsys: pytest.CaptureFixture):
    base = ["generate", str(tiny_run), "--prompt", "A", "--length", "200", "--seed", "1"]
    code, free, err = run(base, capsys)
    assert code == 0, err
    text = free[len("A") : -1]  # the continuation, without the prompt and the final newline
    stop = text[10:12]
    neutral = ["--min-p", "0", "--repetition-penalty", "1"]  # every rule is a flag; these change nothing
    code, cut, err = run([*base, "--stop", stop, "--stop", "zzz", *neutral], capsys)
    assert code == 0, err
    assert cut == "A" + text[: text.index(stop)] + "\n"
    code, line, err = run([*base, "--stop", "\\n"], capsys)  # typed as backslash-n: a new line
    assert code == 0, err
    assert line == "A" + text.split("\n")[0] + "\n"


def test_bad_corpora(tmp_path: Path, capsys: pytest.CaptureFixture):
    out = str(tmp_path / "run")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    short = tmp_path / "short.txt"
    short.write_text("too short for a window\n")
    binary = tmp_path / "latin1.txt"
    binary.write_bytes(b"caf\xe9 au lait\n" * 20)
    refused(["train", str(tmp_path / "missing.txt"), "--out", out], capsys, "missing.txt")
    refused(["train", str(empty), "--out", out], capsys, "empty")
    refused(["train", str(short), "--out", out], capsys, "too short", "--seq-len")
    refused(
        ["train", str(binary), "--out", out], capsys, "latin1.txt", "byte 3", "--encoding", "--errors replace"
    )
    refused(["train", "no-such-corpus", "--out", out], capsys, "no-such-corpus", "shakespeare")
    same = tmp_path / "same.txt"
    same.write_text("a" * 5000)
    refused(["train", str(same), "--out", out], capsys, "only one distinct character ('a')")
    assert not Path(out).exists()


def test_named_corpus_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/tinyshakespeare.txt"
    monkeypatch.setenv("REVERIE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(
        corpus_module.NAMED_CORPORA, "shakespeare", Remote(url, "0" * 64, "tinyshakespeare.txt")
    )
    refused(["train", "shakespeare", "--out", str(tmp_path / "run")], capsys, url, "local file")


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--model", "gpt2"], "--model"),
        (["--level", "subword"], "--level"),
        (["--epochs", "0"], "--epochs must be a positive integer"),
        (["--epochs", "-2"], "--epochs must be a positive integer"),
        (["--minutes", "0"], "--minutes must be positive"),
        (["--minutes", "-1"], "--minutes must be positive"),
        (["--steps", "0"], "--steps must be a positive integer"),
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--batch-size", "-8"], "--batch-size must be a positive integer"),
        (["--seq-len", "0"], "--seq-len must be a positive integer"),
        (["--sample-length", "0"], "--sample-length must be a positive integer"),
        (["--sample-temperatures", "-1"], "--sample-temperatures must be zero"),
        (["--val-fraction", "1"], "--val-fraction"),
        (["--encoding", "klingon"], "unknown encoding"),
        (["--seed", "-1"], "--seed must be a whole number in [0, 2**63 - 1], got -1"),
        (["--encoding", "base64"], "'base64' is not a text encoding"),
        (["--hidden", "100000"], "--hidden must be a positive integer (at most 16384), got 100000"),
        (["--hidden", "16384", "--layers", "64"], "more than reverie's limit of 1,000,000,000"),
        (["--model", "conv", "--layers", "40"], "more than reverie's limit of 65,536"),
        (["--batch-size", "60000", "--seq-len", "60000"], "a step's logits would take"),
    ],
)
def test_bad_train_options(
    flags: list[str], needle: str, text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    refused(["train", str(text_file), "--out", str(tmp_path / "run"), *flags], capsys, needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--length", "0"], "length must be a positive integer"),
        (["--length", "-5"], "length must be a positive integer"),
        (["--temperature", "-0.5"], "temperature must be 0 (greedy) or positive"),
        (["--temperature", "0.5", "-1"], "temperature must be 0 (greedy) or positive"),
        (["--top-p", "0"], "--top-p must be in (0, 1]"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
        (["--top-k", "0"], "--top-k"),
        (["--num-samples", "0"], "--num-samples"),
        (["--stop", ""], "stop sequences must be non-empty strings"),
        (["--seed", str(2**64)], "--seed must be a whole number in [0, 2**63 - 1]"),
        (["--length", "10000000000"], "--length must be a positive integer (at most 1000000000)"),
        (["--num-samples", "100000"], "--num-samples must be a positive integer (at most 1024)"),
        (["--prompt", "caf\u00e9 \u20ac"], "not in the model's vocabulary: '\u00e9', '\u20ac'"),
    ],
)
def test_bad_generate_options(flags: list[str], needle: str, run_copy: Path, capsys: pytest.CaptureFixture):
    before = snapshot(run_copy)
    err = refused(["generate", str(run_copy), *flags], capsys, needle)
    assert capsys.readouterr().out == "" and "--- temperature" not in err  # nothing printed before refusing
    assert snapshot(run_copy) == before


def test_generate_without_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture):
    refused(["generate", str(tmp_path)], capsys, "holds no checkpoint")
    refused(["generate", str(tmp_path / "missing")], capsys, "does not exist")
    refused(["generate", str(tmp_path), "--prompt-file", str(tmp_path / "nope.txt")], capsys, "nope.txt")


@pytest.mark.parametrize(
    "damage, needle",
    [
        ("truncate", "truncated, corrupted"),
        ("corrupt", "truncated, corrupted"),
        ("version", "format version 7"),
        ("garbage-config", "corrupted"),
        ("no-weights", "no checkpoint at"),
        ("huge-model", "more than reverie's limit"),
        ("nested", "nested too deeply"),
    ],
)
def test_damaged_checkpoints(damage: str, needle: str, run_copy: Path, capsys: pytest.CaptureFixture):
    weights, config = stored_file(run_copy, "best"), run_copy / "config.json"
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[:1000])
    elif damage == "corrupt":
        weights.write_bytes(data[:500] + bytes(b ^ 0x5A for b in data[500:600]) + data[600:])
    elif damage == "version":
        config.write_text(json.dumps({**json.loads(config.read_text()), "format_version": 7}))
    elif damage == "garbage-config":
        config.write_text("{not json")
    elif damage == "huge-model":  # a crafted or mistyped config: refused before anything is built
        data = json.loads(config.read_text())
        data["model"]["hidden"], data["model"]["layers"] = 16384, 64
        config.write_text(json.dumps(data))
    elif damage == "nested":
        config.write_text('{"format": "reverie", "model": ' + "[" * 100_000 + "]" * 100_000 + "}")
    else:
        weights.unlink()
    before = snapshot(run_copy)
    refused(["generate", str(run_copy), "--prompt", "A"], capsys, needle)
    refused(["train", str(run_copy / "missing.txt"), "--out", str(run_copy), "--resume"], capsys)
    assert snapshot(run_copy) == before


def test_resume_refusals(tmp_path: Path, text_file: Path, capsys: pytest.CaptureFixture):
    out = tmp_path / "run"
    assert (
        run(
            [
                "train",
                str(text_file),
                "--out",
                str(out),
                "--steps",
                "2",
                "--sample-temperatures",
                *TINY_FLAGS,
            ],
            capsys,
        )[0]
        == 0
    )
    before = snapshot(out)
    other = shakespeare_slice(tmp_path / "other.txt", 9_000)
    refused(["train", str(other), "--out", str(out), "--resume"], capsys, "different corpus")
    refused(
        ["train", str(text_file), "--out", str(out), "--resume", "--hidden", "64"],
        capsys,
        "different model:",
        "--hidden 64",
    )
    refused(
        ["train", str(text_file), "--out", str(out), "--resume", "--model", "gru"],
        capsys,
        "different model:",
    )
    refused(["train", str(text_file), "--out", str(out), "--resume"], capsys, "already reached its budget")
    refused(["train", str(text_file), "--out", str(out)], capsys, "already holds a run", "--resume")
    assert snapshot(out) == before
