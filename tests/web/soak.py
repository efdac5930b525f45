"""The page under load: many clients at once mixing every kind of request, good and bad, against a
`reverie serve` process of its own (so its memory can be measured). One copy of the load, used by
tests/web/test_soak.py (which checks it) and benchmarks/soak.py (which reports it).

    with served_in_a_process(runs, port) as server:
        report = soak(server, images, clients=50, seconds=55)

Each client is a gradio_client Client of its own (a session each) running requests one after
another, in a fixed rotation of kinds: a text generation, a tiny dream (efficientnet_lite0, one
octave, two steps, 80x93 pixels), an upload over the size cap, a file that is no image, a dream
sent inline as a data: URL, a generation cancelled soon after it starts, and a dream cancelled the
same way. Every request must end in a result or a clear refusal; `Report.unanswered` lists the
others. Loopback only; it stops by itself: no request starts after `seconds`, none waits longer
than REQUEST_TIMEOUT_S.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .conftest import MAX_PIXELS, MAX_SIZE, MAX_UPLOAD_MB, RUN_NAME, TINY_DREAM

REPO = Path(__file__).resolve().parents[2]
# what counts as no answer: a hang, not a slow machine. 50 clients queue for one job slot, so a request
# waits for up to 50 tiny jobs; on a loaded 2-core machine that passed 20 s (a slower machine is no
# fault of the page), while a request that is never answered passes any bound.
REQUEST_TIMEOUT_S = 90
START_TIMEOUT_S = 60
CANCEL_AFTER_S = 0.3
TEXT = ["ROMEO:", 0.8, 0, 1.0, 0.0, 1.0, ""]  # prompt and sampling rules, the page's order
KINDS = (
    "generate",
    "dream",
    "oversized upload",
    "not an image",
    "data: URL",
    "cancel generate",
    "cancel dream",
)


@dataclass
class Report:
    """What the load did: requests sent, their outcomes by kind, the server's memory, the time."""

    requests: int = 0
    outcomes: Counter = field(default_factory=Counter)  # (kind, outcome) -> count
    unanswered: list[str] = field(default_factory=list)  # a request with no result and no clear error
    rss_start_mb: float = 0.0
    rss_peak_mb: float = 0.0  # the server process's peak resident memory (VmHWM)
    seconds: float = 0.0
    answers_after: bool = False  # the server answered a generation after the load


@contextmanager
def served_in_a_process(runs: Path, port: int, flags: Sequence[str] = ()) -> Iterator[tuple[str, int]]:
    """`reverie serve` on 127.0.0.1:`port` with the page tests' caps (and `flags`), in a process of
    its own: (its URL, its pid). Stopped (Ctrl-C, then killed) at the end of the block."""
    command = [sys.executable, "-m", "reverie", "serve", "--runs", str(runs), "--port", str(port)]
    command += ["--max-size", str(MAX_SIZE), "--max-upload-mb", str(MAX_UPLOAD_MB)]
    command += ["--max-pixels", str(MAX_PIXELS), *flags]
    server = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = _first_line(server, START_TIMEOUT_S)
        match = re.search(r"on (http://\S+) ", line)
        if match is None:
            raise RuntimeError(f"reverie serve did not start: {line!r}")
        yield match.group(1), server.pid
    finally:
        server.send_signal(2)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()


def _first_line(process: subprocess.Popen, timeout_s: float) -> str:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return lines[0] if lines else ""


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    """A process's resident memory (VmRSS) or its peak so far (VmHWM), in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field_name} for process {pid}")


def soak(server: tuple[str, int], images: dict[str, Path], clients: int = 50, seconds: float = 55) -> Report:
    """Run the load against `server` (URL, pid) for `seconds` from `clients` clients at once."""
    from gradio_client import Client

    url, pid = server
    report = Report(rss_start_mb=rss_mb(pid))
    lock = threading.Lock()
    start = time.monotonic()
    stop_at = start + seconds
    inline = _inline_dream(images["small"])

    def client_loop(index: int) -> None:
        try:
            client = Client(url, verbose=False)
        except Exception as exc:  # noqa: BLE001 - the report says what went wrong
            with lock:
                report.unanswered.append(f"client {index} could not connect: {exc!r}")
            return
        turn = index
        while time.monotonic() < stop_at:
            kind = KINDS[turn % len(KINDS)]
            turn += 1
            outcome = _one_request(client, url, kind, images, inline)
            with lock:
                report.requests += 1
                report.outcomes[(kind, outcome)] += 1
                if outcome.startswith("UNANSWERED"):
                    report.unanswered.append(f"{kind}: {outcome}")

    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, stop_at + REQUEST_TIMEOUT_S + 5 - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        report.unanswered.append("some clients were still waiting at the end")
    report.seconds = time.monotonic() - start
    report.rss_peak_mb = rss_mb(pid, "VmHWM")
    after = Client(url, verbose=False).submit(RUN_NAME, *TEXT, 10, 1, 0, api_name="/generate")
    after = after.result(timeout=REQUEST_TIMEOUT_S)
    report.answers_after = isinstance(after, str) and after.startswith("ROMEO:")
    return report


def _inline_dream(image: Path) -> dict:
    """A /call/dream request body with `image` inline as a data: URL."""
    encoded = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    image = {"url": encoded, "path": None, "meta": {"_type": "gradio.FileData"}}
    return {"data": [image, *TINY_DREAM.values()]}


def _one_request(client, url: str, kind: str, images: dict[str, Path], inline: dict) -> str:
    """Send one request of `kind`; its outcome in a few words ("ok", "refused: ...", "cancelled"),
    or "UNANSWERED: ..." when it got neither a result nor a clear error."""
    from gradio_client import handle_file

    dream_args = list(TINY_DREAM.values())
    try:
        if kind == "generate":
            job = client.submit(RUN_NAME, *TEXT, 40, 1, None, api_name="/generate")
            text = job.result(timeout=REQUEST_TIMEOUT_S)
            return "ok" if text.startswith("ROMEO:") else f"UNANSWERED: wrong text {text[:40]!r}"
        if kind == "data: URL":
            response = httpx.post(f"{url}gradio_api/call/dream", json=inline, timeout=REQUEST_TIMEOUT_S)
            return _http_outcome(response)
        if kind == "oversized upload":  # sent as is: gradio_client itself refuses files over the cap
            with images["heavy"].open("rb") as heavy:
                files = {"files": ("heavy.png", heavy, "image/png")}
                response = httpx.post(f"{url}gradio_api/upload", files=files, timeout=REQUEST_TIMEOUT_S)
            return _http_outcome(response)
        if kind.startswith("cancel"):
            if kind == "cancel generate":
                job = client.submit(RUN_NAME, *TEXT, 5000, 1, None, api_name="/generate")
            else:
                job = client.submit(handle_file(str(images["small"])), *dream_args, api_name="/dream")
            time.sleep(CANCEL_AFTER_S)
            job.cancel()
            try:
                job.result(timeout=REQUEST_TIMEOUT_S)
                return "ok (finished before the cancel)"
            except Exception as exc:  # noqa: BLE001 - a cancelled job ends in an error of some kind
                return "cancelled" if _cancelled(exc) else _error_outcome(exc)
        image = {"dream": "small", "not an image": "text"}[kind]
        job = client.submit(handle_file(str(images[image])), *dream_args, api_name="/dream")
        result = job.result(timeout=REQUEST_TIMEOUT_S)
        return "ok" if Path(result[0]).is_file() else "UNANSWERED: no image"
    except Exception as exc:  # noqa: BLE001 - each kind of failure is counted
        return _error_outcome(exc)


def _cancelled(exc: BaseException) -> bool:
    """Whether `exc` is how gradio_client ends a job it cancelled: the server completes it with no
    output, which the client reports as a missing 'data' key, or (a race in the client, when the
    cancel and the end of the stream come together) as "Did not expect 2 tasks to be done"."""
    import concurrent.futures

    text = str(exc)
    return (
        isinstance(exc, concurrent.futures.CancelledError)
        or (isinstance(exc, KeyError) and "Could not find 'data' key" in text)
        or (isinstance(exc, ValueError) and "Did not expect 2 tasks to be done" in text)
    )


def _http_outcome(response: httpx.Response) -> str:
    if response.status_code == 200:
        return "ok"
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text  # Gradio's own refusal of an upload is plain text
    if isinstance(detail, str) and detail:
        return f"refused {response.status_code}: {_short(detail)}"
    return f"UNANSWERED: HTTP {response.status_code} without a message"


def _error_outcome(exc: BaseException) -> str:
    """A clear error in a few words, or UNANSWERED."""
    from gradio_client.exceptions import AppError

    if isinstance(exc, AppError) and str(exc).strip():
        return f"refused: {_short(str(exc))}"
    if isinstance(exc, httpx.HTTPStatusError):
        return _http_outcome(exc.response)
    text = str(exc)
    if "exceed" in text and "maximum allowed size" in text:  # Gradio's own refusal of a large upload
        return "refused 413: the upload is over the size cap"
    if type(exc).__name__ == "QueueError":  # the server's own answer when its queue is full: a refusal
        return f"refused: {_short(text)}"
    if isinstance(exc, TimeoutError) or "timed out" in text.lower():
        return f"UNANSWERED: no answer in {REQUEST_TIMEOUT_S} s"
    return f"UNANSWERED: {type(exc).__name__}: {_short(text)}"


def _short(text: str, words: int = 8) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = re.sub(r"\S*/\S+", "PATH", line)  # server paths differ from run to run
    parts = line.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")
