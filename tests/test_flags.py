"""Flags that mean the same thing are spelled the same in every `reverie` command: the CLI's parser
(reverie.cli.build_parser) walked subcommand by subcommand.

python -m pytest -q tests/test_flags.py
"""

from __future__ import annotations

import argparse
import re

import pytest

from reverie.cli import build_parser
from reverie.device import DEVICES, DTYPE_CHOICES

PROGRESS = ("--progress", "--no-progress", "--quiet")  # --quiet: the same as --no-progress
# Each concept: the dest that marks it, its spellings, and a word its help has in every command.
CONCEPTS = {
    "seed": ("seed", ("--seed",), "seed"),
    "device": ("device", ("--device",), "where to"),
    "dtype": ("dtype", ("--dtype",), "bfloat16"),
    "out": ("out", ("--out",), "write"),
    "progress": ("progress", PROGRESS, "progress bar"),
}
# other spellings of those concepts, which no command may use
STRAYS = {
    "-o",
    "--output",
    "--out-dir",
    "--outdir",
    "--random-seed",
    "--rng-seed",
    "--precision",
    "--cpu",
    "--gpu",
    "--no-progress-bar",
    "--silent",
    "--no-bars",
}
SHOWS_PROGRESS = {"train", "dream", "visualize"}  # the commands that draw progress bars
# a command line of each progress-showing command that parses (its required arguments)
COMMAND_LINES = {
    "train": ["train", "corpus.txt", "--out", "run"],
    "dream": ["dream", "photo.jpg"],
    "visualize": ["visualize", "efficientnet_lite0", "block8"],
}


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser, by name."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if action.option_strings]


def test_every_command_spells_each_shared_concept_the_same() -> None:
    found: dict[str, set[str]] = {concept: set() for concept in CONCEPTS}
    for name, parser in commands().items():
        for concept, (dest, spellings, word) in CONCEPTS.items():
            same = [action for action in actions(parser) if action.dest == dest]
            if not same:
                continue
            found[concept].add(name)
            spelled = {option for action in same for option in action.option_strings}
            assert spelled == set(spellings), (name, concept, spelled)
            for action in same:
                if action.help != argparse.SUPPRESS:
                    assert word in action.help, (name, concept, action.help)
        strays = {option for action in actions(parser) for option in action.option_strings} & STRAYS
        assert not strays, (name, strays)
        assert not [action for action in actions(parser) if action.dest == "quiet"], name
    assert found["progress"] == SHOWS_PROGRESS
    assert {"train", "generate", "dream", "visualize"} <= found["seed"]
    assert {"train", "generate", "dream", "visualize"} <= found["device"]
    assert {"train", "dream", "visualize"} <= found["dtype"]
    assert {"train", "dream", "visualize"} <= found["out"]


def test_a_shared_flag_takes_the_same_values_everywhere() -> None:
    for name, parser in commands().items():
        for action in actions(parser):
            if action.dest == "device":
                assert tuple(action.choices) == tuple(DEVICES) and action.default in (
                    "auto",
                    argparse.SUPPRESS,
                ), name
            if action.dest == "dtype":
                assert tuple(action.choices) == tuple(DTYPE_CHOICES), name
            if action.dest == "seed":
                assert action.type is int and action.metavar == "S", name


def test_the_progress_flags_read_the_same_in_every_help() -> None:
    """One wording of the alias, given once: in --progress's help; --quiet itself is not listed."""
    for name in SHOWS_PROGRESS:
        parser = commands()[name]
        (shown,) = [a for a in actions(parser) if a.dest == "progress" and a.help != argparse.SUPPRESS]
        assert shown.option_strings == ["--progress", "--no-progress"], name
        assert shown.help.endswith("(default: on; --quiet is the same as --no-progress)"), (name, shown.help)
        text = parser.format_help()  # --quiet listed neither in the usage nor as an option of its own
        assert "[--quiet]" not in text and not re.search(r"^  --quiet", text, re.MULTILINE), name


@pytest.mark.parametrize("name", sorted(SHOWS_PROGRESS))
@pytest.mark.parametrize(
    ("flags", "progress"),
    [
        ([], None),
        (["--no-progress"], False),
        (["--quiet"], False),
        (["--progress"], True),
        (["--quiet", "--progress"], True),
    ],
)
def test_no_progress_and_quiet_mean_the_same_in_every_command(name, flags, progress) -> None:
    args = build_parser().parse_args([*COMMAND_LINES[name], *flags])
    assert getattr(args, "progress", None) is progress  # unset: the options' default (on)
