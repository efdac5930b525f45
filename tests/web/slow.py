"""Slow and abandoned clients against a `reverie serve` process (tests/web/soak.py's
served_in_a_process): connections that send their request a byte a second, uploads that stop
halfway, and clients that start a job and vanish. Used by tests/web/test_slow_clients.py.

    with SlowConnections(url, count=200) as slow:      # held open, dripping, in one thread
        ...                                             # the page must still serve everyone else
    print(slow.held, slow.dropped)

    vanish_from_generations(url, RUN_NAME, count=10)   # start long jobs, then hang up
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import httpx

DRIP_EVERY_S = 1.0  # a slow connection sends one byte this often
UPLOAD_BYTES = 200_000  # what a stopped upload says it will send; it sends half, then nothing
SOCKET_TIMEOUT_S = 5.0


class SlowConnections:
    """`count` connections to the server at `url`, opened at once and held for the block: two in
    three send an endless request header a byte a second (slowloris), one in three an upload that
    declares UPLOAD_BYTES and stops after half. `held`: connections still open at the end;
    `dropped`: those the server closed (a server may drop a stalled client: that is fine, as long
    as it serves the others)."""

    def __init__(self, url: str, count: int) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.count = count
        self.held = 0
        self.dropped = 0
        self._sockets: list[tuple[socket.socket, bool]] = []  # (socket, drips)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)

    def __enter__(self) -> SlowConnections:  # noqa: PYI034 - a test helper, never subclassed
        host = self.address[0]
        for index in range(self.count):
            connection = socket.create_connection(self.address, timeout=SOCKET_TIMEOUT_S)
            if index % 3 == 2:  # an upload that stops halfway
                boundary = "reverie-stopped-upload"
                head = (
                    f"POST /gradio_api/upload HTTP/1.1\r\nHost: {host}\r\n"
                    f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                    f"Content-Length: {UPLOAD_BYTES}\r\n\r\n"
                    f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="half.png"\r\n'
                    "Content-Type: image/png\r\n\r\n"
                ).encode()
                connection.sendall(head + b"\0" * (UPLOAD_BYTES // 2 - len(head)))
                self._sockets.append((connection, False))
            else:
                connection.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n".encode())
                self._sockets.append((connection, True))
        self._thread.start()
        return self

    def _drip(self) -> None:
        while not self._stop.wait(DRIP_EVERY_S):
            for connection, drips in self._sockets:
                if drips and connection.fileno() != -1:
                    try:
                        connection.send(b"X" if connection.fileno() % 7 else b"-")  # a header never ending
                    except OSError:
                        connection.close()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for connection, _ in self._sockets:
            if connection.fileno() == -1 or _closed_by_peer(connection):
                self.dropped += 1
            else:
                self.held += 1
            connection.close()


def _closed_by_peer(connection: socket.socket) -> bool:
    """Whether the server has closed `connection` (it reads as end of file, or fails)."""
    connection.setblocking(False)
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False  # open, nothing to read
    except OSError:
        return True


def vanish_from_generations(url: str, run: str, text: list, count: int, length: int) -> list[str]:
    """Start `count` generations of `length` characters through the page's REST API and hang up on
    each as soon as it streams its first text: clients that start a job and vanish. Returns the
    first event each sent before the hang-up."""
    events = []
    for _ in range(count):
        body = {"data": [run, *text, length, 1, None]}
        response = httpx.post(f"{url}gradio_api/call/generate", json=body, timeout=30)
        response.raise_for_status()
        event = response.json()["event_id"]
        with httpx.stream("GET", f"{url}gradio_api/call/generate/{event}", timeout=30) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    events.append(line)
                    break  # the job is running and streaming its text: hang up
    return events


def timed_generation(url: str, run: str, text: list, length: int, timeout_s: float) -> float:
    """Seconds a fresh client waits for a `length`-character generation to finish."""
    from gradio_client import Client

    started = time.monotonic()
    result = Client(url, verbose=False).submit(run, *text, length, 1, 0, api_name="/generate")
    answer = result.result(timeout=timeout_s)
    assert isinstance(answer, str) and len(answer) > 0
    return time.monotonic() - started
