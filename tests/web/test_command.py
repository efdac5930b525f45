"""`reverie serve`: prints the URL it serves, refuses bad settings in one line, and costs the other
subcommands nothing (gradio is imported only when `serve` runs)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from reverie.cli import main

from .conftest import free_port

REPO = Path(__file__).resolve().parents[2]


def test_building_the_command_line_does_not_import_gradio() -> None:
    code = "import sys; from reverie.cli import build_parser; build_parser(); print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_serve_prints_its_url_and_serves_the_page_until_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "reverie", "serve", "--runs", str(tmp_path), "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()
        url = f"http://127.0.0.1:{port}/"
        assert line == f"Serving the reverie page on {url} (Ctrl-C stops)\n"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and b"reverie" in response.read()
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
        server.wait()
        server.stdout.close()
        server.stderr.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port must be a positive integer (at most 65535), got 70000"),
        (["--max-size", "0"], "--max-size must be a positive integer, got 0"),
        (["--max-upload-mb", "-1"], "--max-upload-mb must be positive, got -1.0"),
        (["--concurrency", "0"], "--concurrency must be a positive integer, got 0"),
        (["--job-seconds", "0"], "--job-seconds must be positive, got 0.0"),
        (["--jobs-per-client", "0"], "--jobs-per-client must be a positive integer, got 0"),
        (["--max-prompt-chars", "-5"], "--max-prompt-chars must be a positive integer, got -5"),
        (["--port", "many"], "argument --port: invalid int value: 'many'"),
    ],
)
def test_serve_refuses_bad_settings_in_one_line(args, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_serve_refuses_a_runs_path_that_is_a_file(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs.txt"
    runs.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--runs", str(runs)])
    assert exit_info.value.code == 2
    assert f"--runs {runs} is a file" in capsys.readouterr().err


def test_serve_refuses_a_port_in_use(capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "--port", str(port)])
    assert exit_info.value.code == 2
    assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err
