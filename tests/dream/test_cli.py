"""`reverie dream` and `reverie layers` end to end: files written, and every bad input refused with
exit code 2, one line on stderr, no traceback, the input file untouched."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli
from PIL import Image

from reverie.deepdream import images

from .conftest import smooth_image

FAST = ["--model", "tiny", "--octaves", "2", "--iterations", "2", "--quiet"]


def test_dream_writes_the_default_output(tiny_model, photo, capsys):
    code, out, err = run_cli(["dream", str(photo), *FAST], capsys)
    assert code == 0, err
    written = photo.with_name("photo-dream.png")
    assert out.strip() == str(written)
    assert Image.open(written).size == Image.open(photo).size
    assert np.abs(np.asarray(Image.open(written), dtype=int) - np.asarray(Image.open(photo))).mean() > 0.5


def test_save_octaves_and_format_from_extension(tiny_model, photo, tmp_path, capsys):
    output = tmp_path / "out.jpg"
    code, out, err = run_cli(
        ["dream", str(photo), str(output), *FAST, "--save-octaves", "--layers", "b:1,c:0.5"], capsys
    )
    assert code == 0, err
    assert Image.open(output).format == "JPEG"
    octave1, octave2 = tmp_path / "out-octave1.jpg", tmp_path / "out-octave2.jpg"
    assert Image.open(octave1).size == (51, 40) and Image.open(octave2).size == (72, 56)
    assert out.split() == [str(output), str(octave1), str(octave2)]


def test_zoom_frames_write_pngs_and_a_gif(tiny_model, photo, tmp_path, capsys):
    code, _out, err = run_cli(
        ["dream", str(photo), str(tmp_path / "z.png"), *FAST, "--zoom-frames", "3", "--zoom", "0.1"], capsys
    )
    assert code == 0, err
    gif = Image.open(tmp_path / "z.gif")
    assert gif.n_frames == 3 and gif.size == (72, 56)
    frames = [np.asarray(Image.open(tmp_path / f"z-{i:04d}.png"), dtype=int) for i in (1, 2, 3)]
    assert np.abs(frames[0] - frames[1]).mean() > 1.0


def test_zero_iterations_and_generated_flags(tiny_model, photo, tmp_path, capsys):
    """0 iterations runs the octaves with no steps (the API's rule, the command's too); every dream
    option has its flag, generated from DreamOptions."""
    output = tmp_path / "same.png"
    code, _out, err = run_cli(["dream", str(photo), str(output), *FAST, "--iterations", "0"], capsys)
    assert code == 0, err
    assert np.abs(np.asarray(Image.open(output), dtype=int) - np.asarray(Image.open(photo))).max() <= 1
    code, out, _ = run_cli(["dream", "--help"], capsys)
    assert code == 0
    for name in ("--tile-margin", "--no-clip", "--keep-colors", "--reduction", "--border", "--seed"):
        assert name in out
    assert "(default: 5)" in out and "objective" not in out  # API-only options have no flag
    argv = ["dream", str(photo), str(tmp_path / "b.png"), *FAST, "--preset", "book", "--clip"]
    argv += ["--border", "1"]
    code, _out, err = run_cli(argv, capsys)
    assert code == 0, err


def test_layers_lists_names_channels_and_strides(tiny_model, capsys):
    code, out, _ = run_cli(["layers", "tiny"], capsys)
    assert code == 0
    rows = [line.split() for line in out.strip().splitlines()]
    assert rows[0] == ["layer", "aliases", "channels", "stride"]
    assert rows[1:] == [
        ["conv1", "a", "8", "2"],
        ["conv2", "b", "16", "4"],
        ["conv3", "c", "16", "4"],
        ["conv4", "d", "24", "8"],
    ]


def test_a_dropped_octave_is_one_warning_line(tiny_model, tmp_path, capsys):
    small = tmp_path / "small.png"
    Image.fromarray(smooth_image(12, 14)).save(small)
    code, _, err = run_cli(["dream", str(small), *FAST, "--layers", "d", "--octaves", "3"], capsys)
    assert code == 0
    assert err.count("\n") == 1 and err.startswith("reverie: warning: dropping octave")


def _bad_files(tmp_path):
    text = tmp_path / "text.png"
    text.write_text("not pixels")
    cut = tmp_path / "cut.jpg"
    Image.fromarray(smooth_image(64, 64)).save(cut)
    cut.write_bytes(cut.read_bytes()[:600])
    small = tmp_path / "small.png"
    Image.fromarray(smooth_image(8, 8)).save(small)
    bad_weights = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, bad_weights)
    return {"text": text, "cut": cut, "small": small, "weights": bad_weights}


BAD = [
    (["{missing}"], "does not exist"),
    (["{text}"], "not an image"),
    (["{cut}"], "truncated or corrupt"),
    (["{photo}", "--max-size", "0"], "--max-size must be a positive integer, got 0"),
    (["{small}", "--layers", "d"], "needs at least 9 pixels"),
    (["{photo}", "--model", "nope"], "argument --model: invalid choice: 'nope'"),
    (["{photo}", "--layers", "conv9"], "unknown layer 'conv9' for tiny; valid layers: conv1, conv2"),
    (["{photo}", "--channels", "c:3,16"], "channel 16 is out of range for layer c: it has channels 0..15"),
    (["{photo}", "--iterations", "-3"], "--iterations must be zero or a positive integer, got -3"),
    (["{photo}", "--octaves", "0"], "--octaves must be a positive integer, got 0"),
    (["{photo}", "--step", "0"], "--step must be positive"),
    (["{photo}", "--step", "-0.1"], "--step must be positive"),
    (["{photo}", "--tile", "0"], "--tile must be an integer of at least 64, got 0"),
    (["{photo}", "--tile", "1"], "--tile must be an integer of at least 64, got 1"),
    (["{photo}", "--layers", "b:nan"], "the weight of layer b must be a finite number, got nan"),
    (["{photo}", "--layers", "b:inf,c:1"], "the weight of layer b must be a finite number, got inf"),
    (["{photo}", "--layers", "b:0,c:0"], "every layer weight is 0, so there is nothing to dream"),
    (["{photo}", "--octave-scale", "1"], "--octave-scale must be above 1"),
    (["{photo}", "--octave-scale", "0.7"], "--octave-scale must be above 1"),
    (["{photo}", "--seed", "-5"], "--seed must be a whole number"),
    (["{photo}", "--jitter", "-1"], "--jitter must be zero or a positive integer, got -1"),
    (["{photo}", "{tmp}/missing/out.png"], "output folder .* does not exist"),
    (["{photo}", "{photo}"], "is the input image"),
    (["{photo}", "{tmp}/out.bmpx"], "unknown image format"),
    (["{photo}", "--preset", "dali"], "invalid choice: 'dali'"),
    (["{photo}", "--iterations", "two"], "invalid int value"),
    (["{photo}", "--zoom-frames", "0"], "--zoom-frames must be a positive integer, got 0"),
    (["{photo}", "--zoom-frames", "2", "--zoom", "1.5"], r"--zoom must be in \(0, 1\), got 1.5"),
    (["{photo}", "--guide", "{missing}"], "does not exist"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2(tiny_model, photo, tmp_path, capsys, args, message):
    paths = {**_bad_files(tmp_path), "photo": photo, "missing": tmp_path / "missing.jpg", "tmp": tmp_path}
    argv = ["dream", *(a.format(**paths) for a in args)]
    if "--model" not in argv:
        argv += ["--model", "tiny"]
    before = photo.read_bytes()
    code, _out, err = run_cli([*argv, "--quiet"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(message, err), err
    assert photo.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".png" and "dream" in p.name) == []


def test_pixel_cap_and_wrong_weights(photo, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    code, _, err = run_cli(["dream", str(photo), "--model", "efficientnet_lite0"], capsys)
    assert code == 2 and "over the cap" in err and "--max-size" in err and err.count("\n") == 1
    monkeypatch.undo()
    bad = _bad_files(tmp_path)["weights"]
    code, _, err = run_cli(
        ["dream", str(photo), "--model", "efficientnet_lite0", "--weights", str(bad), "--quiet"], capsys
    )
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err


def test_layers_refuses_an_unknown_model(capsys):
    code, _, err = run_cli(["layers", "alexnet"], capsys)
    assert code == 2 and "unknown model 'alexnet'" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "option, message",
    [("--layers=mixed99", "unknown layer 'mixed99'"), ("--channels=mixed4:768", "channels 0..767")],
)
def test_unknown_layer_or_channel_is_refused_before_weights_are_fetched(
    photo, tmp_path, capsys, monkeypatch, option, message
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras"))
    code, _, err = run_cli(["dream", str(photo), "--model", "inception_v3", option, "--quiet"], capsys)
    assert code == 2 and message in err and "download" not in err and err.count("\n") == 1, err
    assert not (tmp_path / "no-weights").exists()


@pytest.mark.parametrize(
    "extra, fails_on",
    [([], "out"), (["--save-octaves"], "out-octave2"), (["--zoom-frames", "2"], ".gif")],
    ids=["image", "octaves", "zoom gif"],
)
def test_a_write_that_fails_half_way_leaves_no_half_image(
    tiny_model, photo, tmp_path, capsys, monkeypatch, extra, fails_on
):
    """Every file of `reverie dream IN OUT` is written beside its name and renamed when whole: a write
    cut short (a full disk, a kill) leaves the previous file, never half of the new one."""
    output = tmp_path / "out.png"
    old = {name: tmp_path / name for name in ("out.png", "out-octave2.png", "out.gif")}
    for path in old.values():
        Image.new("RGB", (4, 4), (1, 2, 3)).save(path)
    before = {name: path.read_bytes() for name, path in old.items()}
    save = Image.Image.save

    def cut_short(image, path, *args, **kwargs):
        if fails_on not in Path(path).name:
            return save(image, path, *args, **kwargs)
        Path(path).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", cut_short)
    code, _out, err = run_cli(["dream", str(photo), str(output), *FAST, *extra], capsys)
    assert code == 2 and err.count("\n") == 1 and f"no space left in {tmp_path}" in err, err
    failed = next(name for name in old if name.startswith(fails_on) or name.endswith(fails_on))
    assert old[failed].read_bytes() == before[failed]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial file left
