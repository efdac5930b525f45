"""The page's heavy jobs: one slot pool shared by every tab, each job's time limit and cancel flag,
whose job it is, the models the tabs keep loaded, each job's output folder, and its errors as one line.

    jobs = Jobs(concurrency=1, seconds=300)
    with jobs.job(client, "dream") as job, jobs.slot():
        dreamer.octaves(image, stop=job.should_stop)       # ends between steps once stopped

Gradio's queue frees a job's slot the moment the job is cancelled, while a function running in a
worker thread keeps running; `Jobs.slot` is released only when the work itself is done, so a cancelled
dream finishing its step never runs beside the next job. `Job.should_stop` (cancelled, or past its
`seconds`) is asked before every gradient step, between pieces of text, after each training step. The
per-client cap, and cancels reaching these flags, are reverie.web.limits' (in front of Gradio).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import gradio as gr
from PIL import Image

import reverie
from reverie.errors import ReverieError
from reverie.web.settings import WebSettings

HEAVY = "heavy"  # the Gradio concurrency id of every heavy job (generations, fine-tunings, dreams, videos)
CACHE_KEEP_S = 3600  # Gradio's cached result files, and each dream's own folder, are removed after this
JOB_DIR_PREFIX = "reverie-dream-"
INTERNAL_ERROR = (
    "the server failed on this request (its log says why); try again, or report it if it persists"
)
Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


@dataclass(eq=False)
class Job:
    """One heavy job: whose (`client`), what (`kind`, the endpoint's name), since when, and its
    cancel flag."""

    client: str
    kind: str
    seconds: float
    started: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def expired(self) -> bool:
        return time.monotonic() - self.started >= self.seconds

    def should_stop(self) -> bool:
        """True once the job was cancelled or ran past its time: what every job's `stop=` asks."""
        return self.cancelled.is_set() or self.expired()


class Jobs:
    """The heavy jobs running on one server: `concurrency` slots shared by all of them, a time limit
    of `seconds` each, cancel flags by client and kind."""

    def __init__(self, concurrency: int, seconds: float) -> None:
        self.seconds = seconds
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._running: list[Job] = []

    @contextmanager
    def job(self, client: str, kind: str) -> Iterator[Job]:
        """A job of `client`, known (to `cancel`) for the block; its time starts now."""
        job = Job(client, kind, self.seconds)
        with self._lock:
            self._running.append(job)
        try:
            yield job
        finally:
            with self._lock:
                self._running.remove(job)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """One of the shared slots for the block (waits for one to be free)."""
        with self._slots:
            yield

    def cancel(self, client: str, kind: str) -> int:
        """Set the cancel flag of `client`'s running jobs of `kind`; how many there were."""
        with self._lock:
            jobs = [job for job in self._running if job.client == client and job.kind == kind]
        for job in jobs:
            job.cancelled.set()
        return len(jobs)

    def running(self) -> list[Job]:
        with self._lock:
            return list(self._running)


def heavy(settings: WebSettings) -> dict[str, Any]:
    """The event arguments of a heavy job: its Gradio concurrency id and limit, one for all tabs."""
    return {"concurrency_id": HEAVY, "concurrency_limit": settings.concurrency}


def client_of(request: gr.Request | None) -> str:
    """Whose job this is: the client's session (a browser tab, a gradio_client Client)."""
    return getattr(request, "session_hash", None) or "local"


def refusal(message: str) -> gr.Error:
    """A message for the page about the user's input (no traceback in the server's log)."""
    return gr.Error(message, print_exception=False)


def stopped(job: Job, what: str, advice: str) -> gr.Error:
    """Why a stopped `what` (dream, video) ended: the user's cancel, or the job's time limit."""
    if job.cancelled.is_set():
        return refusal(f"the {what} was cancelled")
    return refusal(
        f"the {what} reached this page's time limit of {job.seconds:g} s and was stopped; {advice}"
    )


@contextmanager
def one_line_errors() -> Iterator[None]:
    """A user's mistake (ReverieError) as its own line in the page; any other error as INTERNAL_ERROR,
    its traceback on the server's stderr only (it may name server paths)."""
    try:
        yield
    except gr.Error:
        raise
    except ReverieError as exc:
        raise refusal(str(exc)) from None
    except Exception:  # noqa: BLE001 - anything else is the server's fault: logged, not shown
        traceback.print_exc()
        raise refusal(INTERNAL_ERROR) from None


class Loaded(Generic[Key, Value]):
    """Objects loaded once and kept, the `keep` most recently used: text models by run (reloaded
    when the run saves again), dreamers by model name."""

    def __init__(self, load: Callable[[Key], Value], keep: int = 2) -> None:
        self._load, self._keep = load, keep
        self._lock = threading.Lock()
        self._loaded: OrderedDict[Key, Value] = OrderedDict()

    def get(self, key: Key) -> Value:
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = self._load(key)
                while len(self._loaded) > self._keep:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(key)
            return self._loaded[key]


RunKey = tuple[Path, int]  # a run folder and the time its config.json was last written


class Workspace:
    """What one server's page works with: its settings, the loaded text models (one per run, reloaded
    when the run saves again) and dreamers (one per model), and the heavy jobs running now. Each tab
    adds its endpoints to it (reverie.web.app's Page has them all)."""

    def __init__(
        self,
        settings: WebSettings,
        models: Loaded[RunKey, reverie.TextModel] | None = None,
        dreamers: Loaded[str, reverie.Dreamer] | None = None,
    ) -> None:
        self.settings = settings
        self.models = models or Loaded(lambda key: reverie.load(key[0]))
        self.dreamers = dreamers or Loaded(reverie.load_dreamer)
        self.jobs = Jobs(settings.concurrency, settings.job_seconds)


def new_job_dir() -> Path:
    """A new temporary folder for one dream's images; folders of jobs older than CACHE_KEEP_S
    (Gradio copied their files into its own cache long before) are removed first."""
    for old in Path(tempfile.gettempdir()).glob(f"{JOB_DIR_PREFIX}*"):
        try:
            if time.time() - old.stat().st_mtime > CACHE_KEEP_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:  # removed meanwhile by another server
            pass
    return Path(tempfile.mkdtemp(prefix=JOB_DIR_PREFIX))


def saved(image: Image.Image, path: Path) -> str:
    """`image` written to `path` (a job's own folder); the path, as the page's outputs take it."""
    image.save(path)
    return str(path)
