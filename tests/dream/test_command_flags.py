"""`reverie dream` and `reverie visualize` take --no-progress as `reverie train` does, and --quiet
as before, the same: no progress bar on stderr; without either, the bars are drawn.

python -m pytest -q tests/dream/test_command_flags.py
"""

from __future__ import annotations

import pytest
from helpers import run_cli


@pytest.mark.parametrize(("flags", "bars"), [([], True), (["--no-progress"], False), (["--quiet"], False)])
def test_dream_and_visualize_draw_bars_unless_no_progress_or_quiet(
    tiny_model, photo, tmp_path, capsys, flags, bars
) -> None:
    dream = ["dream", str(photo), str(tmp_path / "out.png"), "--model", tiny_model, "--octaves", "1"]
    code, out, err = run_cli([*dream, "--iterations", "2", *flags], capsys)
    assert code == 0 and out.strip() == str(tmp_path / "out.png"), err
    assert ("100%" in err) is bars, err
    sheet = tmp_path / "sheet.png"
    visualize = ["visualize", tiny_model, "b:0", "--size", "16", "--steps", "2", "--out", str(sheet)]
    code, out, err = run_cli([*visualize, *flags], capsys)
    assert code == 0 and out.strip() == str(sheet), err
    assert ("100%" in err) is bars, err
