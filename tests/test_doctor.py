"""`reverie doctor` prints what a bug report needs, measured and read on this machine."""

from __future__ import annotations

import torch
from helpers import run_cli


def test_doctor_reports_versions_devices_speed_choices_and_weights(capsys):
    code, out, err = run_cli(["doctor"], capsys)
    assert code == 0, err
    assert out.startswith(f"reverie 0.1.0, torch {torch.__version__}, Python ")
    for needle in (
        "cores for this process",
        "torch threads: ",
        "measured on cpu, float32: matmul 2048x2048 ",
        "measured on cpu, bfloat16: matmul 2048x2048 ",
        "3x3 convolution 64 channels channels-last",
        "text lstm 2x448 embed 64 vocab 65 batch 32x32 stream: ",  # what auto picks for the default, and why
        "cache: ",
        "weights efficientnet_lite0: installed with reverie",
        "weights efficientnet_lite2: ",  # installed (the backbones extra) or what to install
        "the browser page (reverie serve): gradio ",
    ):
        assert needle in out, needle
    choice_line = next(line for line in out.splitlines() if "lstm 2x448" in line)
    assert (
        ("float32 (" in choice_line or "bfloat16 (" in choice_line)
        and "speed" in choice_line
        or "fastest" in choice_line
    )


def test_doctor_without_measuring_says_what_was_not_measured_yet(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("REVERIE_CACHE", str(tmp_path / "fresh"))
    code, out, _ = run_cli(["doctor", "--no-measure"], capsys)
    assert code == 0 and "measured on cpu" not in out
    assert "dtype auto: nothing measured here yet" in out  # the session's own cache is empty
