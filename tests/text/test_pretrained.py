"""Shipped models and fine-tuning: a tiny model built with scripts/pretrain.py loads by name through
reverie.load and the CLI, its files are checked, and `--from` fine-tunes it (or a run directory).

    python -m pytest -q tests/text/test_pretrained.py
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from helpers import NIETZSCHE, SHAKESPEARE, pretrain_script, run_cli, stored_file

import reverie
from reverie.errors import ReverieError
from reverie.text import pretrained, rundir
from reverie.text.batches import evaluate
from reverie.text.corpus import load_corpus, split_ids
from reverie.text.generator import restore_weights
from reverie.text.tokenizer import Tokenizer

# Fine-tuning runs: a few steps of the tiny model, evaluated every 10 steps.
QUICK = {"device": "cpu", "dtype": "float32", "progress": False, "sample_temperatures": (), "batch_size": 16}
# Characters that the Shakespeare excerpt the tiny model saw has none of.
FOREIGN = "éàçœüßñøåäö—«»"


@pytest.fixture()
def damaged(built_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the built models whose shipped weights have one byte changed."""
    copy = Path(shutil.copytree(built_models, tmp_path / "models"))
    weights = stored_file(copy / "shakespeare")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    monkeypatch.setenv(pretrained.MODELS_ENV, str(copy))
    return copy


def foreign_text(path: Path) -> Path:
    """12 KB of Nietzsche with accented letters and quotes the tiny model never saw, written to `path`."""
    text = NIETZSCHE.read_text(encoding="utf-8")[:12_000]
    for plain, accented in zip("aeiouc", "àéîõüç"):
        text = text.replace(f" {plain}", f" {accented}")
    path.write_text(text + FOREIGN, encoding="utf-8")
    return path


# ---- the shipped model ---------------------------------------------------------------------------


def test_pretrain_records_how_to_rebuild_it_and_stays_small(shipped_models: Path) -> None:
    folder = shipped_models / "shakespeare"
    config = json.loads((folder / rundir.CONFIG).read_text())
    info = config["pretrained"]
    corpus = Path(info["corpus"]["sources"][0])
    assert info["corpus"]["sha256"] == hashlib.sha256(corpus.read_bytes()).hexdigest()
    assert info["command"].startswith("python scripts/pretrain.py shakespeare --corpus ")
    assert "--steps 40" in info["command"]
    assert (info["seed"], info["steps"], info["dtype"]) == (0, 40, "float32")
    assert info["tokens_seen"] == 40 * 16 * 32 and info["trained_s"] > 0  # the run's, across resumes
    assert 0 < info["val_loss"] == pytest.approx(info["val_loss_float32"])
    assert info["tokens_per_char"] == 1.0  # bytes per character of ASCII text
    assert config["tokenizer"]["level"] == "byte" and config["state"] is None
    assert sorted(entry.name for entry in folder.iterdir()) == [
        rundir.CONFIG,
        stored_file(folder).name,
    ]  # one weights file, no optimizer state
    assert sum(entry.stat().st_size for entry in folder.iterdir()) <= pretrained.MAX_SHIPPED_BYTES


def test_a_shipped_model_loads_by_name_and_reads_any_text(shipped_models: Path, tmp_path: Path) -> None:
    model = reverie.load("shakespeare")
    assert model.run_dir == shipped_models / "shakespeare" and model.tokenizer.level == "byte"
    text = model.generate("ROMEO: " + FOREIGN, length=50, seed=0)  # no character is refused
    assert text == model.generate("ROMEO: " + FOREIGN, length=50, seed=0)
    assert 0 < len(text) <= 50  # 50 bytes: at most 50 characters
    (tmp_path / "shakespeare").mkdir()  # a path that exists comes first
    with pytest.raises(ReverieError, match="holds no checkpoint"):
        reverie.load(tmp_path / "shakespeare")


def test_the_cli_generates_from_a_shipped_model_and_lists_them(shipped_models: Path, capsys) -> None:
    code, out, err = run_cli(["generate", "shakespeare", "--prompt", "ROMEO:", "--length", "30"], capsys)
    assert code == 0, err
    assert out.startswith("ROMEO:")
    code, out, _ = run_cli(["models"], capsys)
    assert code == 0
    lines = out.splitlines()
    row = next(line for line in lines if line.strip().startswith("shakespeare"))
    assert "MB" in row and "float32 weights" in row and "40 steps" in row
    info = pretrained.provenance(shipped_models / "shakespeare")
    assert row.endswith(f"validation loss {info['val_loss'] * info['tokens_per_char']:.3f} nats/char")
    assert "not built (python scripts/pretrain.py nietzsche)" in out
    assert "licence: public domain" in out and "tiny-shakespeare" in out


def test_weights_over_the_cap_are_stored_in_bfloat16_and_still_generate(
    shipped_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = shipped_models.parent / "work"
    float32_bytes = stored_file(work).stat().st_size
    # float32 with room for its config is over the cap, bfloat16 is not
    monkeypatch.setattr(pretrained, "MAX_SHIPPED_BYTES", float32_bytes + 64_000 - 1)
    model = reverie.load("shakespeare")
    config = rundir.RunConfig.load(work, training=True)
    val = split_ids(load_corpus([str(shipped_models.parent / "shakespeare.txt")], level="byte").ids, 0.1)[1]

    def measure(weights):
        restore_weights(model.model, weights, work)
        return evaluate(model.model, val, config.options, model.device)

    section = pretrained.export(work, tmp_path / "small" / "shakespeare", {"command": "test"}, measure)
    assert section["dtype"] == "bfloat16"
    assert section["val_loss"] == pytest.approx(section["val_loss_float32"], abs=0.01)  # measured as stored
    monkeypatch.setenv(pretrained.MODELS_ENV, str(tmp_path / "small"))
    assert len(reverie.load("shakespeare").generate("ROMEO:", length=20, seed=0)) > 0


def test_a_damaged_shipped_file_is_refused_in_one_line(damaged: Path, capsys) -> None:
    with pytest.raises(ReverieError, match="shipped model 'shakespeare' is damaged.*sha256"):
        reverie.load("shakespeare")
    code, _, err = run_cli(["generate", "shakespeare", "--prompt", "A"], capsys)
    assert code == 2 and "damaged" in err and len(err.strip().splitlines()) == 1


def test_unknown_and_unbuilt_names_are_refused_naming_the_shipped_ones(shipped_models: Path) -> None:
    with pytest.raises(ReverieError, match="does not exist .*shipped model: shakespeare"):
        reverie.load("no-such-model")
    with pytest.raises(ReverieError, match="'nietzsche' is not built.*scripts/pretrain.py nietzsche"):
        reverie.load("nietzsche")


# ---- fine-tuning -----------------------------------------------------------------------------------


def test_fine_tuning_a_shipped_model_lowers_the_loss_on_text_with_new_characters(
    shipped_models: Path, tmp_path: Path
) -> None:
    text = foreign_text(tmp_path / "mine.txt")
    seen = set(SHAKESPEARE.read_text(encoding="utf-8")[:20_000])
    assert set(FOREIGN) - seen == set(FOREIGN)
    result = reverie.train(
        str(text), tmp_path / "run", base="shakespeare", steps=60, sample_every=20, **QUICK
    )
    rows = [row for row in rundir.read_metrics(tmp_path / "run" / rundir.METRICS) if row["val_loss"]]
    assert rows[0]["step"] == 0  # the base, evaluated on the tail of this text before any step
    assert result.best_val_loss < rows[0]["val_loss"] - 0.05
    config = rundir.RunConfig.load(tmp_path / "run", training=True)
    base = rundir.RunConfig.load(shipped_models / "shakespeare")
    assert config.tokenizer == base.tokenizer and config.model == base.model
    assert (config.options.base, config.options.lr, config.options.patience) == ("shakespeare", 2e-3, 3)
    assert config.options.layer_lr == 0.5  # fine-tuning's defaults (FINETUNE_DEFAULTS)
    model = reverie.load(tmp_path / "run")
    assert model.generate("Ç", length=30, seed=0) == model.generate("Ç", length=30, seed=0)


def test_fine_tuning_stops_early_and_keeps_the_best_weights(shipped_models: Path, tmp_path: Path) -> None:
    """A learning rate far too high makes every evaluation after the base's worse: with --patience 1
    the run stops at the first one, and its best weights are still the base's."""
    text = foreign_text(tmp_path / "mine.txt")
    result = reverie.train(
        str(text),
        tmp_path / "run",
        base="shakespeare",
        lr=1.0,
        warmup_steps=1,
        patience=1,
        steps=200,
        sample_every=5,
        **QUICK,
    )
    assert result.stop_reason == "patience" and result.step == 5
    config = rundir.RunConfig.load(tmp_path / "run", training=True)
    assert config.state.best_step == 0
    base = rundir.RunConfig.load(shipped_models / "shakespeare")
    best = config.load_tensors(tmp_path / "run", rundir.BEST)
    shipped = base.load_tensors(shipped_models / "shakespeare", rundir.BEST)
    assert all((best[key] == shipped[key]).all() for key in shipped)


def test_fine_tuning_a_run_directory_keeps_its_tokenizer(tiny_run: Path, tmp_path: Path, capsys) -> None:
    text = tmp_path / "more.txt"
    text.write_text(SHAKESPEARE.read_text(encoding="utf-8")[30_000:40_000], encoding="utf-8")
    reverie.train(str(text), tmp_path / "run", base=str(tiny_run), steps=10, sample_every=10, **QUICK)
    config = rundir.RunConfig.load(tmp_path / "run", training=True)
    base = rundir.RunConfig.load(tiny_run, training=True)
    assert config.tokenizer == base.tokenizer and config.tokenizer.level == "char"
    assert config.model == base.model and config.options.seq_len == base.options.seq_len
    # a char-level base reads only its characters; the shape is the base's
    foreign = foreign_text(tmp_path / "foreign.txt")
    out = str(tmp_path / "other")
    capsys.readouterr()  # what training printed
    code, _, err = run_cli(["train", str(foreign), "--from", str(tiny_run), "--out", out], capsys)
    assert code == 2 and "fine-tune from a shipped model" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(
        ["train", str(text), "--from", str(tiny_run), "--out", out, "--hidden", "64"], capsys
    )
    assert code == 2 and "--hidden 64 but it has 32" in err
    with pytest.raises(ReverieError, match=r"^unknown training option 'hiddn'"):  # the API, misspelled
        reverie.train(str(text), out, base=str(tiny_run), hiddn=64)


def test_an_unknown_or_damaged_base_is_refused_in_one_line(damaged: Path, tmp_path: Path, capsys) -> None:
    text = foreign_text(tmp_path / "mine.txt")
    argv = ["train", str(text), "--out", str(tmp_path / "run"), "--steps", "5"]
    code, _, err = run_cli([*argv, "--from", "no-such-model"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--from no-such-model: no run directory or shipped model" in err and "shakespeare" in err
    code, _, err = run_cli([*argv, "--from", "shakespeare"], capsys)
    assert code == 2 and "damaged" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_fine_tuned_run_resumes_without_its_base(shipped_models: Path, tmp_path: Path, monkeypatch) -> None:
    text = foreign_text(tmp_path / "mine.txt")
    reverie.train(str(text), tmp_path / "run", base="shakespeare", steps=10, sample_every=10, **QUICK)
    monkeypatch.setenv(pretrained.MODELS_ENV, str(tmp_path / "nothing"))  # the base is gone
    result = reverie.train(str(text), tmp_path / "run", resume=True, steps=20)
    assert result.step == 20


# ---- the byte-level tokenizer ------------------------------------------------------------------------


def test_byte_level_covers_any_text_and_decodes_a_stream_as_a_whole() -> None:
    tok = Tokenizer.build(["anything"], level="byte")
    text = "Ça va? 日本語, emoji 🎉, a tab\t and a NUL \0."
    ids = tok.encode(text)
    assert (
        len(ids) == len(text.encode("utf-8")) and tok.decode(ids) == text and tok.unknown_tokens(text) == []
    )
    decoder = tok.stream_decoder()
    pieces = [decoder.feed(i) for i in ids]
    assert "".join(pieces) + decoder.flush() == text
    assert pieces[:2] == ["", "Ç"]  # a character shows once its bytes are complete
    cut = tok.stream_decoder()
    assert cut.feed(ids[0]) == "" and cut.flush() == "\ufffd"  # a character left incomplete
    assert Tokenizer.from_json(json.loads(json.dumps(tok.to_json()))) == tok and tok.vocab_size == 256
    with pytest.raises(ReverieError, match="256 bytes"):
        Tokenizer("byte", ["a", "b"])


def test_every_model_in_the_package_passes_its_checksums_and_the_size_cap(monkeypatch) -> None:
    """The models committed in reverie/models (none until scripts/pretrain.py has been run for them)."""
    monkeypatch.delenv(pretrained.MODELS_ENV)
    assert pretrained.models_dir() == pretrained.PACKAGE_MODELS
    for name in pretrained.built_names():
        config = pretrained.verify(name)
        folder = pretrained.folder_of(name)
        recipe = pretrained.RECIPES[name].options
        assert config.tokenizer.level == recipe["level"] and pretrained.provenance(folder)["corpus"]["sha256"]
        assert config.tokenizer.level in ("byte", "bpe")  # any text fits
        assert sum(entry.stat().st_size for entry in folder.iterdir()) <= pretrained.MAX_SHIPPED_BYTES


# ---- the english corpus ------------------------------------------------------------------------------


def test_english_without_its_corpus_says_how_to_write_it(tmp_path: Path, monkeypatch, capsys) -> None:
    from helpers import pretrain_script

    monkeypatch.chdir(tmp_path)  # no corpora/english here
    code = pretrain_script().main(["english", "--into", str(tmp_path / "models"), "--steps", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    recipe = pretrained.RECIPES["english"]
    assert recipe.corpus[0] in err and f"`{recipe.prepare}`" in err and "english_corpus" in recipe.prepare
    assert not (tmp_path / "models").exists()


def test_export_only_ships_a_run_as_it_stands(built_models: Path, tmp_path: Path, capsys) -> None:
    pretrain = pretrain_script()
    work = built_models.parent / "work"  # build_tiny_shipped's run
    argv = ["shakespeare", "--corpus", str(built_models.parent / "shakespeare.txt"), "--work", str(work)]
    assert pretrain.main([*argv, "--into", str(tmp_path / "again"), "--export-only"]) == 0
    again = json.loads((tmp_path / "again" / "shakespeare" / rundir.CONFIG).read_text())["pretrained"]
    shipped = json.loads((built_models / "shakespeare" / rundir.CONFIG).read_text())["pretrained"]
    assert "--export-only" not in again["command"] and again["steps"] == shipped["steps"] == 40
    assert again["steps_planned"] == 40
    assert again["val_loss"] == shipped["val_loss"]  # the same best weights, measured the same way
    assert (
        stored_file(tmp_path / "again" / "shakespeare").read_bytes()
        == stored_file(built_models / "shakespeare").read_bytes()
    )
    capsys.readouterr()
    empty = ["shakespeare", "--work", str(tmp_path / "none"), "--into", str(tmp_path / "x"), "--export-only"]
    assert pretrain.main(empty) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no run; train it first" in err and not (tmp_path / "x").exists()
