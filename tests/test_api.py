"""The package's API: every name it lists resolves, help(reverie) shows them, and importing it is cheap."""

from __future__ import annotations

import pydoc
import subprocess
import sys

import reverie


def test_every_listed_name_resolves_to_what_it_says():
    for name in reverie.__all__:
        assert getattr(reverie, name) is not None, name
    assert reverie.objectives.layer("x").layers == ("x",)
    assert isinstance(reverie.transforms.Jitter(2), reverie.transforms.Transform)
    assert set(reverie.__all__) <= set(dir(reverie))


def test_help_lists_the_api():
    text = pydoc.render_doc(reverie, renderer=pydoc.plaintext)
    for name in ("load_dreamer", "generate", "objectives", "transforms", "TextModel", "train", "dream"):
        assert name in text, name


def test_importing_reverie_does_not_import_torch():
    code = "import sys, reverie; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
