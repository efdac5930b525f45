"""hub.fetch against a local HTTP server: checksum match (cached, fetched once), mismatch, server down."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reverie import hub
from reverie.errors import ReverieError

PAYLOAD = b"supposing that truth is a woman--what then?\n" * 1000


class Server:
    """Serves PAYLOAD at /corpus.txt on 127.0.0.1 and counts the requests it gets."""

    def __init__(self) -> None:
        self.requests = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                if self.path not in ("/corpus.txt", "/slow/corpus.txt"):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(PAYLOAD)))
                self.end_headers()
                if self.path == "/corpus.txt":
                    self.wfile.write(PAYLOAD)
                    return
                for start in range(0, len(PAYLOAD), 4096):  # in pieces, so two downloads overlap
                    self.wfile.write(PAYLOAD[start : start + 4096])
                    self.wfile.flush()
                    time.sleep(0.01)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.close()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REVERIE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert hub.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("REVERIE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == tmp_path / "xdg" / "reverie"


def test_checksum_match_lands_in_cache_and_is_fetched_once(server: Server, cache: Path) -> None:
    remote = hub.Remote(f"{server.url}/corpus.txt", hashlib.sha256(PAYLOAD).hexdigest(), "corpus.txt")
    path = hub.fetch(remote)
    assert path == cache / "corpus.txt"
    assert path.read_bytes() == PAYLOAD
    assert server.requests == 1
    assert hub.fetch(remote) == path
    assert server.requests == 1
    assert sorted(p.name for p in cache.iterdir()) == ["corpus.txt"]


def test_checksum_prefix_is_accepted(server: Server, cache: Path) -> None:
    remote = hub.Remote(f"{server.url}/corpus.txt", hashlib.sha256(PAYLOAD).hexdigest()[:12].upper(), "c.txt")
    assert hub.fetch(remote, cache / "sub").read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_nothing_behind(server: Server, cache: Path) -> None:
    remote = hub.Remote(f"{server.url}/corpus.txt", "0" * 64, "corpus.txt")
    with pytest.raises(ReverieError, match="checksum mismatch") as error:
        hub.fetch(remote)
    assert remote.url in str(error.value) and "\n" not in str(error.value)
    assert list(cache.iterdir()) == []


def test_missing_file_on_server_is_refused(server: Server, cache: Path) -> None:
    remote = hub.Remote(f"{server.url}/gone.txt", "0" * 64, "gone.txt")
    with pytest.raises(ReverieError, match="404"):
        hub.fetch(remote)
    assert list(cache.iterdir()) == []


def test_server_down_names_the_url(cache: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    remote = hub.Remote(f"http://127.0.0.1:{port}/corpus.txt", "0" * 64, "corpus.txt")
    with pytest.raises(ReverieError) as error:
        hub.fetch(remote, offline_hint="pass a local file instead")
    message = str(error.value)
    assert remote.url in message and "pass a local file instead" in message and "\n" not in message
    assert list(cache.iterdir()) == []


def test_a_cached_file_is_checked_on_every_use_and_fetched_again_on_mismatch(
    server: Server, cache: Path, capsys: pytest.CaptureFixture
) -> None:
    remote = hub.Remote(f"{server.url}/corpus.txt", hashlib.sha256(PAYLOAD).hexdigest(), "corpus.txt")
    path = hub.fetch(remote)
    path.write_bytes(PAYLOAD[:-1] + b"!")  # one byte changed in the cache
    assert hub.fetch(remote).read_bytes() == PAYLOAD
    assert server.requests == 2
    assert "does not match its sha256" in capsys.readouterr().err
    assert hub.fetch(remote) == path and server.requests == 2  # intact again: no download


def test_a_damaged_cached_file_offline_is_refused_not_used(cache: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    remote = hub.Remote(
        f"http://127.0.0.1:{port}/corpus.txt", hashlib.sha256(PAYLOAD).hexdigest(), "corpus.txt"
    )
    cache.mkdir(parents=True)
    (cache / "corpus.txt").write_bytes(PAYLOAD[: len(PAYLOAD) // 2])  # an interrupted copy
    with pytest.raises(
        ReverieError, match="could not download .* replace the damaged .* sha256 does not match"
    ):
        hub.fetch(remote)


def test_two_first_downloads_at_once_in_one_process_do_not_share_a_partial_file(server: Server, cache: Path):
    remote = hub.Remote(f"{server.url}/slow/corpus.txt", hashlib.sha256(PAYLOAD).hexdigest(), "corpus.txt")
    results: list[Path | BaseException] = []

    def fetch() -> None:
        try:
            results.append(hub.fetch(remote))
        except BaseException as exc:  # noqa: BLE001 (the test reports it)
            results.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [cache / "corpus.txt"] * 2, results
    assert (cache / "corpus.txt").read_bytes() == PAYLOAD
    assert [p.name for p in cache.iterdir()] == ["corpus.txt"]  # no partial file left
