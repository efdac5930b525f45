"""The browser page: a Gradio app with Text, Fine-tune, Dream and Video tabs, over reverie's public API.

    reverie serve --runs runs/ --port 7860

    from reverie.web.app import launch
    app, url = launch(WebSettings(runs=Path("runs")))      # serving in the background; app.close() stops

Text: pick a run trained into RUNS_DIR or a shipped model (reverie.text.pretrained), write a prompt,
choose the sampling rules, and the text streams into the page (`reverie.load(run).stream_batch(...)`);
Stop ends it. Dream: upload a photo or take the sample, pick the model, layers and weights, and
`dreamer.octaves(...)` (one `reverie.load_dreamer` per model, kept loaded) runs with a progress bar
per octave; Cancel stops it between two steps. The Dream tab's other mode, Visualize channels, draws
`reverie.visualize_channels(dreamer, layer, channels).sheet` (channels typed as for `reverie
visualize`, '0-7' or '3,12,97'; size, steps and channel count capped by the settings), the labelled
grid the command line writes, with a progress bar per channel. Fine-tune: upload a text file
(`max_text_mb`), pick a base (a shipped model or a run), minutes and a name, and
`reverie.train(text, RUNS_DIR/NAME, base=...)` runs in a thread while the page redraws the loss
curve and the latest sample each second; Finish now (or the time limit) ends it after the step in
flight, saved, and the run joins the Text tab's models. Video: upload a clip (at most
`max_video_frames` frames, shrunk to `max_video_size`), pick the dream options and flow, blend or
independent, and `reverie.dream_video` writes an mp4 (a GIF stays a GIF) with a progress bar over
the frames. All of them run through Gradio's queue and share its `concurrency` slots (the others
see their place in line); each job stops at `job_seconds`, and a client may have `jobs_per_client`
of them waiting or running (reverie.web.limits, which also caps what a request may carry). Every
number and choice a handler takes is checked on the server against the bounds its widget shows
(reverie.web.inputs) before a job starts, whatever a client posts past the widgets. Bad input of any
kind becomes a one-line message in the page (gr.Error), never a crash; an internal error shows a
generic line, its details only in the server's log.

Nothing here knows how a model works; the page only turns widgets into API arguments. It also
works with no internet: telemetry is off and the theme uses the system's fonts (no CDN).
"""

from __future__ import annotations

import os
import shutil

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported: no telemetry calls

import re
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

import gradio as gr
from PIL import Image, UnidentifiedImageError
from starlette.middleware import Middleware

import reverie
from reverie.deepdream import objectives
from reverie.deepdream.command import visualize_command, visualize_output
from reverie.deepdream.octaves import DreamStopped
from reverie.deepdream.options import PRESETS, DreamOptions
from reverie.deepdream.video import VideoOptions
from reverie.deepdream.visualize import VisualizeOptions, parse_indices
from reverie.errors import ReverieError
from reverie.text import pretrained, rundir
from reverie.text.options import TrainOptions
from reverie.text.sampling import SamplingOptions
from reverie.text.stops import unescape
from reverie.web.inputs import Bound, one_of
from reverie.web.limits import DATA_URL_REFUSED, HEAVY, Guard, Job, Jobs, RequestGuard, is_data_url
from reverie.web.settings import WebSettings

DEFAULT_MODEL = "efficientnet_lite0"  # its weights ship with the package, so the page works offline
NO_PRESET = "(none)"
QUEUE_SIZE = 100  # waiting jobs beyond this are told the queue is full
# Gradio gives each dream its own tracker in place of this default; tqdm bars (one per octave) drive it.
DREAM_PROGRESS = gr.Progress(track_tqdm=True)
MAX_LENGTH = 100_000  # tokens per generation the page allows
MAX_SAMPLES = 8
MAX_TEMPERATURE = 2.0
# the dream widgets' upper ends (their lower ends and defaults come from DreamOptions)
MAX_OCTAVES, MAX_ITERATIONS, MAX_STEP, MAX_JITTER = 8, 50, 0.1, 64
# Every number a handler takes: the widget's ends and the server's check of what was posted (one
# definition of each bound: the option's own, at most the page's cap).
TEMPERATURE = Bound.of(SamplingOptions, "temperature", "temperature", high=MAX_TEMPERATURE)
TOP_K = Bound.of(SamplingOptions, "top_k", "top-k")
TOP_P = Bound.of(SamplingOptions, "top_p", "top-p")
MIN_P = Bound.of(SamplingOptions, "min_p", "min-p")
PENALTY = Bound.of(SamplingOptions, "repetition_penalty", "repetition penalty")
LENGTH = Bound.of(SamplingOptions, "length", "length", high=MAX_LENGTH)
SAMPLES = Bound.of(SamplingOptions, "num_samples", "samples", high=MAX_SAMPLES)
SEED = Bound.of(SamplingOptions, "seed", "seed")
OCTAVES = Bound.of(DreamOptions, "octaves", "octaves", high=MAX_OCTAVES)
ITERATIONS = Bound.of(DreamOptions, "iterations", "iterations", high=MAX_ITERATIONS)
STEP = Bound.of(DreamOptions, "step", "step", high=MAX_STEP)
JITTER = Bound.of(DreamOptions, "jitter", "jitter", high=MAX_JITTER)
TILE = Bound.of(DreamOptions, "tile", "tile")
BLEND = Bound.of(VideoOptions, "blend", "blend")
STREAM_INTERVAL_S = 0.05  # the text box is refreshed at most this often while a generation streams
CACHE_KEEP_S = 3600  # Gradio's cached result files, and each dream's own folder, are removed after this
JOB_DIR_PREFIX = "reverie-dream-"
INTERNAL_ERROR = (
    "the server failed on this request (its log says why); try again, or report it if it persists"
)
# Shown when there is no run yet: Python's own library is a corpus that needs no download.
TRAIN_HINT = "reverie train python-stdlib --out {runs}/python-stdlib --minutes 5"
SHIPPED = "shipped:"  # a shipped model's value in the model list: SHIPPED + its name
FINETUNE_POLL_S = 1.0  # the Fine-tune tab's curve and samples are refreshed this often
FINETUNE_SAMPLING = {"sample_temperatures": (0.5,), "sample_length": 200}  # each evaluation's sample
UPLOADS = ".uploads"  # the runs folder's subfolder keeping each fine-tuning run's text (for --resume)
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
VIDEO_TYPES = [".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif"]
MOTIONS = {  # the Video tab's choice: label -> the VideoOptions switch it sets
    "flow (follow the motion)": "flow",
    "blend with the previous frame": "blend",
    "independent (flickers)": "independent",
}
DREAM_MODES = ("Dream an image", "Visualize channels")  # the Dream tab's two modes
# the Visualize mode's starting values (size and steps never over the page's caps)
VISUALIZE_LAYER, VISUALIZE_CHANNELS, VISUALIZE_SIZE, VISUALIZE_STEPS = "block8", "0-7", 96, 64
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
SYSTEM_MONO_FONTS = ["ui-monospace", "Consolas", "monospace"]
Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


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


# ---- text ------------------------------------------------------------------------------------------


def find_runs(runs: Path) -> list[str]:
    """Names of the trained runs in `runs` (its subfolders holding a run; "." if `runs` is one itself)."""
    if not runs.is_dir():
        return []
    found = sorted(p.name for p in runs.iterdir() if rundir.has_run(p))
    return ["."] + found if rundir.has_run(runs) else found


def text_choices(runs: Path) -> list[tuple[str, str]]:
    """The Text tab's models, as (label, value): the runs in `runs` (value: the folder's name), then
    the shipped models (value: SHIPPED + name)."""
    shipped = [(f"{name} (shipped)", SHIPPED + name) for name in pretrained.built_names()]
    return [(name, name) for name in find_runs(runs)] + shipped


def model_folder(runs: Path, choice: str | None) -> Path:
    """The folder of a Text tab choice (a run in `runs` or a shipped model), refused in one line
    when it is neither."""
    values = [value for _, value in text_choices(runs)]
    if choice not in values:
        if not values:
            raise refusal(f"no trained run in {runs} yet; train one with: {train_command(runs)}")
        raise refusal(f"no run named {choice!r} in {runs}; pick one of: {', '.join(values)}")
    if choice.startswith(SHIPPED) and choice not in find_runs(runs):
        with one_line_errors():
            return pretrained.locate(choice[len(SHIPPED) :])  # its files checked against their sha256
    return runs / choice


def train_command(runs: Path) -> str:
    """The command that trains a run into `runs` (offline: the corpus is Python's own library)."""
    return TRAIN_HINT.format(runs=str(runs).rstrip("/") or ".")


def no_run_message(runs: Path) -> str:
    """What the Text tab says when there is no run to pick (Markdown)."""
    return (
        f"**No trained run in `{runs}` yet.** Train one (about five minutes on a CPU), then press Refresh:"
        f"\n\n```\n{train_command(runs)}\n```"
    )


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


def run_key(run_dir: Path) -> RunKey:
    """What a loaded text model is kept under: the folder and its last save (config.json is written last)."""
    try:
        stamp = (run_dir / rundir.CONFIG).stat().st_mtime_ns
    except OSError:
        stamp = 0  # reverie.load says what is missing
    return run_dir.resolve(), stamp


def format_samples(prompt: str, texts: Sequence[str]) -> str:
    """The prompt and its continuation; several samples one after another under a heading each."""
    if len(texts) == 1:
        return prompt + texts[0]
    return "\n\n".join(f"--- sample {i + 1} ---\n{prompt}{text}" for i, text in enumerate(texts))


def stop_sequences(box: str | None) -> list[str]:
    """The stop box's lines as stop sequences, typed as on the command line (`\\n` is a new line)."""
    return [unescape(line) for line in (box or "").split("\n") if line]


def _extend(parts: list[list[str]], stream: Iterator[list[str]], seconds: float, job: Job) -> bool:
    """Add at least one step of `stream` to `parts`, and more for `seconds` or until `job` should
    stop; False once the stream has ended."""
    until = time.monotonic() + seconds
    for step in stream:
        for sample, piece in zip(parts, step):
            sample.append(piece)
        if time.monotonic() >= until or job.should_stop():
            return True
    return False


# ---- dream ---------------------------------------------------------------------------------------


def sample_photo() -> str:
    """The built-in sample photo: matplotlib's grace_hopper.jpg (512x600), installed with matplotlib."""
    from matplotlib import cbook

    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def layer_choices(model: str) -> list[tuple[str, str]]:
    """(label, name) of each layer of `model`, shallow to deep, with channels and stride in the label."""
    try:
        layers = reverie.list_layers(model)
    except ReverieError as exc:
        raise refusal(str(exc)) from None
    return [(f"{info.name} ({info.channels} ch, stride {info.stride})", info.name) for info in layers]


def weight_rows(layers: Sequence[str] | None, table: Any) -> list[list[Any]]:
    """The weights table for the chosen `layers`: weights already typed in `table` are kept, new ones 1."""
    typed = layer_weights(list(layers or []), table)
    return [[layer, typed.get(layer, 1.0)] for layer in layers or []]


def layer_weights(layers: Sequence[str], table: Any) -> dict[str, float]:
    """{layer: weight} for the chosen `layers`; a layer missing from `table` (or blank there) weighs 1."""
    rows = table.get("data", []) if isinstance(table, dict) else (table or [])
    typed: dict[str, Any] = {}
    for row in rows if isinstance(rows, (list, tuple)) else []:
        if isinstance(row, (list, tuple)) and len(row) >= 2 and row[0] in layers and row[1] not in (None, ""):
            typed[row[0]] = row[1]
    weights = {}
    for layer in layers:
        try:
            weights[layer] = float(typed.get(layer, 1.0))
        except (TypeError, ValueError):
            raise refusal(f"the weight of {layer} must be a number, got {typed[layer]!r}") from None
    return weights


def check_upload(path: str, settings: WebSettings) -> None:
    """Refuse an upload over the size cap, or over the pixel cap, from its header (nothing decoded).

    A file that is not an image passes here: the API's loader says so in its own words.
    """
    size = os.path.getsize(path)
    if size > settings.max_upload_bytes:
        raise refusal(
            f"the upload is {size / 2**20:.1f} MB, over this page's cap of {settings.max_upload_mb:g} MB; "
            "send a smaller file"
        )
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        raise refusal(pixels_refused(settings)) from None
    except (UnidentifiedImageError, OSError):
        return
    if width * height > settings.max_pixels:
        raise refusal(pixels_refused(settings, width, height))


def pixels_refused(settings: WebSettings, width: int | None = None, height: int | None = None) -> str:
    """The page's refusal of an image over its pixel cap (its size where it is known)."""
    size = f"{width}x{height} = {width * height / 1e6:.3g} megapixels" if width and height else "too large"
    cap = f"{settings.max_pixels / 1e6:.3g} megapixels"
    return f"the image is {size}, over this page's cap of {cap}; shrink it first"


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


def _saved(image: Image.Image, path: Path) -> str:
    image.save(path)
    return str(path)


def refuse_non_images(component: gr.Image, settings: WebSettings) -> gr.Image:
    """`component` with an upload that is no image at all, or one over Pillow's decompression-bomb
    limit, refused in one line in the page (gr.Image's own error names the server's temporary
    paths), and an image sent inline as a data: URL refused before Gradio decodes it (the request
    guard refuses those already; this holds wherever the page is served). Wrapped on the instance:
    a gr.Image subclass would make Gradio write a .pyi stub next to this file."""
    preprocess = component.preprocess

    def checked(payload: Any) -> Any:
        if is_data_url(str(getattr(payload, "url", None) or "")):
            raise refusal(DATA_URL_REFUSED)
        try:
            return preprocess(payload)
        except Image.DecompressionBombError:
            raise refusal(pixels_refused(settings)) from None
        except (UnidentifiedImageError, OSError):
            name = getattr(payload, "orig_name", None) or "the upload"
            raise refusal(f"{name} is not an image (PNG, JPEG, WebP, ...)") from None

    component.preprocess = checked  # type: ignore[method-assign]
    return component


def shown_image(label: str, elem_id: str, kind: str) -> gr.Image:
    """A result the page shows: a read-only PNG (`kind`: Gradio's "pil" or "filepath"), 420 px high,
    with download and fullscreen buttons."""
    return gr.Image(
        type=kind,
        format="png",
        label=label,
        interactive=False,
        height=420,
        buttons=["download", "fullscreen"],
        elem_id=elem_id,
    )


def dream_model(model: Any, preset: Any) -> tuple[str, str]:
    """(the model a dream runs: a preset's own once one is picked, the preset or NO_PRESET), each
    refused in one line when it is not one of the page's choices."""
    model = one_of("model", model, reverie.available_models())
    preset = one_of("preset", preset or NO_PRESET, [NO_PRESET, *PRESETS])
    if preset != NO_PRESET:
        model = PRESETS[preset].get("model", model)
    return model, preset


def layer_names(layers: Any) -> list[str]:
    """The chosen layers' names (the API says which the model lacks); anything but names is refused."""
    chosen = list(layers or [])
    if not all(isinstance(layer, str) for layer in chosen):
        raise ReverieError("layers are given by their names, e.g. block2")
    return chosen


def channel_text(indices: Sequence[int]) -> str:
    """[0, 1, 2, 3, 7] -> '0-3,7': channels written as the command line takes them."""
    spans: list[list[int]] = []
    for index in indices:
        if spans and index == spans[-1][1] + 1:
            spans[-1][1] = index
        else:
            spans.append([index, index])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


class Page:
    """What one server's page works with: its settings, the loaded text models (one per run, reloaded
    when the run saves again) and dreamers (one per model), and the heavy jobs running now. Its
    `generate`, `dream`, `visualize`, `finetune` and `dream_clip` are the page's endpoints."""

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
        # the bounds that come from the settings: the Visualize mode's tiles, the Fine-tune minutes
        self.visualize_size = Bound.of(VisualizeOptions, "size", "size", high=settings.max_visualize_size)
        self.visualize_steps = Bound.of(VisualizeOptions, "steps", "steps", high=settings.max_visualize_steps)
        self.minutes = Bound.of(TrainOptions, "minutes", "minutes", high=settings.job_seconds / 60)

    def generate(
        self,
        run: str | None,
        prompt: str,
        temperature: float,
        top_k: float | None,
        top_p: float,
        min_p: float,
        repetition_penalty: float | None,
        stop: str | None,
        length: float,
        num_samples: float,
        seed: float | None,
        request: gr.Request | None = None,
    ) -> Iterator[str]:
        """Stream the generated text (prompt included), refreshed every STREAM_INTERVAL_S at most.

        A job of the client's (`request`): the text is made in one of the shared slots, a piece at a
        time, and a generation that reaches the time limit ends with the text so far and a warning."""
        settings, jobs = self.settings, self.jobs
        folder = model_folder(settings.runs, run)
        prompt = prompt or ""
        if len(prompt) > settings.max_prompt_chars:
            raise refusal(
                f"the prompt is {len(prompt):,} characters, over this page's cap of "
                f"{settings.max_prompt_chars:,}; shorten it"
            )
        with one_line_errors():
            sampling = {
                "length": LENGTH.check(length),
                "temperature": TEMPERATURE.check(temperature),
                "top_k": TOP_K.check_or_none(top_k, off=0),  # 0 or empty: off
                "top_p": TOP_P.check_or_none(top_p),  # the other rules' neutral values are off already
                "min_p": MIN_P.check_or_none(min_p),
                "repetition_penalty": PENALTY.check_or_none(repetition_penalty),
                "num_samples": SAMPLES.check(num_samples),
                "seed": SEED.check_or_none(seed),
            }
        parts: list[list[str]] = [[] for _ in range(sampling["num_samples"])]  # joined only when shown
        with jobs.job(client_of(request), "generate") as job, one_line_errors():
            with jobs.slot():
                model = self.models.get(run_key(folder))
                stream = model.stream_batch(prompt, stop=stop_sequences(stop), **sampling)
            try:
                interval, more = 0.0, True  # the first piece shows at once
                while more and not job.should_stop():
                    with jobs.slot():
                        more = _extend(parts, stream, interval, job)
                    interval = STREAM_INTERVAL_S
                    if more:
                        yield format_samples(prompt, ["".join(sample) for sample in parts])
            finally:
                stream.close()
            if job.expired() and more:
                gr.Warning(
                    f"the generation reached this page's time limit of {settings.job_seconds:g} s; "
                    "this is the text so far"
                )
        yield format_samples(prompt, ["".join(sample) for sample in parts])

    def dream(
        self,
        image: str | None,
        model: str,
        layers: Sequence[str] | None,
        weights: Any,
        octaves: float,
        iterations: float,
        step: float,
        jitter: float,
        tile: float | None,
        preset: str | None,
        request: gr.Request | None = None,
        progress: gr.Progress = DREAM_PROGRESS,
    ) -> tuple[str, list[tuple[str, str]], str]:
        """The dreamed image, the image after each octave (captioned), and a one-line summary.

        A job of the client's (`request`): it dreams in one of the shared slots and stops between
        gradient steps once it is cancelled or reaches the time limit.

        Images go back as PNG files of this job's own, not PIL images: Gradio caches a PIL image under
        its content hash by rewriting the file in place, so two jobs with the same result would truncate
        the file while a client downloads it; files are copied into its cache atomically."""
        settings, jobs = self.settings, self.jobs
        with one_line_errors():  # every field checked, whichever the preset leaves unused
            model, preset = dream_model(model, preset)
            chosen = layer_names(layers)
            own = {
                # None: the model's own; the API's rule for weights (finite, not all 0) checked now
                "layers": objectives.layer_weights(layer_weights(chosen, weights)) if chosen else None,
                "octaves": OCTAVES.check(octaves),
                "iterations": ITERATIONS.check(iterations),
                "step": STEP.check(step),
                "jitter": JITTER.check(jitter),
                "tile": TILE.check_or_none(tile, off=0),  # 0 or empty: whole image at once
            }
        options: dict[str, Any] = {"preset": preset} if preset != NO_PRESET else own
        if not image:
            raise refusal("upload an image or pick the sample photo first")
        check_upload(image, settings)
        progress(0, desc="loading the model")
        with jobs.job(client_of(request), "dream") as job, one_line_errors():
            try:
                with jobs.slot():
                    dreamer = self.dreamers.get(model)
                    result = dreamer.octaves(
                        image, max_size=settings.max_size, stop=job.should_stop, **options
                    )
            except DreamStopped:
                raise stopped(job, "dream", "use fewer octaves or iterations, or a smaller image") from None
        job_dir = new_job_dir()
        gallery = [
            (
                _saved(octave, job_dir / f"octave{i + 1}.png"),
                f"octave {i + 1}: {octave.width}x{octave.height}",
            )
            for i, octave in enumerate(result.octaves)
        ]
        losses = [loss for octave in result.losses for loss in octave]
        summary = f"{result.image.width}x{result.image.height}, {len(result.octaves)} octave(s)"
        if "octaves" in options and len(result.octaves) < options["octaves"]:
            summary += " (the smaller ones were below the model's minimum size)"
        if losses:
            summary += f", loss {losses[0]:.4g} → {losses[-1]:.4g}"
        return _saved(result.image, job_dir / "dream.png"), gallery, summary

    def visualize(
        self,
        model: str,
        layer: str | None,
        channels: str | None,
        size: float,
        steps: float,
        request: gr.Request | None = None,
        progress: gr.Progress = DREAM_PROGRESS,
    ) -> tuple[str, str]:
        """The Dream tab's Visualize mode: `reverie.visualize_channels(dreamer, layer, channels, size=,
        steps=).sheet`, the labelled grid `reverie visualize MODEL LAYER --channels ... --grid` writes,
        as a PNG file, and a summary line naming that command. `channels` is text such as '0-7' or
        '3,12,97', read by the command line's own parser; size, steps and the number of channels are
        capped by the settings.

        A job of the client's, in one of the shared slots, with a progress bar per channel; cancelled
        or at the time limit it stops between two optimization steps and only the message is shown."""
        settings, jobs = self.settings, self.jobs
        if not layer or not isinstance(layer, str):
            raise refusal("pick a layer to visualize")
        if not isinstance(channels, str) or not channels.strip():
            raise refusal("type the channels to visualize, e.g. 0-7 or 3,12,97")
        with one_line_errors():
            model = one_of("model", model, reverie.available_models())
            indices = parse_indices(channels, most=settings.max_visualize_channels)
            size = self.visualize_size.check(size)
            steps = self.visualize_steps.check(steps)
        progress(0, desc="loading the model")
        with jobs.job(client_of(request), "visualize") as job, one_line_errors():
            try:
                with jobs.slot():
                    rendered = reverie.visualize_channels(
                        self.dreamers.get(model), layer, indices, size=size, steps=steps, stop=job.should_stop
                    )
            except DreamStopped:
                raise stopped(
                    job, "visualization", "use fewer channels, fewer steps or a smaller size"
                ) from None
        image = rendered.sheet
        path = _saved(image, new_job_dir() / visualize_output(model, layer).name)  # the command line's name
        command = visualize_command(model, layer, channel_text(indices), size=size, steps=steps)
        summary = (
            f"{len(indices)} channel(s) of {layer}, {size} px, {steps} steps: a {image.width}x{image.height} "
            f"sheet, as `{command}` draws it"
        )
        return path, summary

    def finetune(
        self,
        upload: str | None,
        base: str | None,
        minutes: float,
        name: str | None,
        request: gr.Request | None = None,
    ) -> Iterator[tuple[str | None, str, str]]:
        """Fine-tune `base` (a Text tab choice: a run or a shipped model) on the uploaded text for
        `minutes` into the runs folder as `name` (default: the file's name); yields (the loss curve's
        PNG, the latest samples, a status line) every FINETUNE_POLL_S, then the run's summary.

        A job of the client's: it trains in one of the shared slots, and once cancelled or at the
        time limit it stops after the step in flight, saves, and the run is kept (usable, resumable)."""
        settings, jobs = self.settings, self.jobs
        if not upload:
            raise refusal("upload a text file to fine-tune on first")
        shown = Path(upload).name
        check_size(upload, settings.max_text_bytes, shown)
        text = read_text_upload(upload, shown)
        folder = model_folder(settings.runs, base)
        with one_line_errors():
            minutes = self.minutes.check(minutes)  # at most the page's time limit
        run = run_name_for(settings.runs, name, upload)
        out = settings.runs / run
        corpus = settings.runs / UPLOADS / f"{run}.txt"
        corpus.parent.mkdir(parents=True, exist_ok=True)
        corpus.write_text(text, encoding="utf-8")
        job_dir = new_job_dir()
        with jobs.job(client_of(request), "finetune") as job, one_line_errors():
            training = FineTuning()

            def on_step(step: int, loss: float) -> None:
                training.steps.append((step, loss))
                if job.should_stop():
                    raise KeyboardInterrupt  # the trainer saves and returns, as at Ctrl-C

            def work() -> Any:
                with jobs.slot():
                    training.waiting = False
                    if job.should_stop():
                        return None
                    return reverie.train(
                        str(corpus),
                        out,
                        base=str(folder),
                        minutes=minutes,
                        on_step=on_step,
                        progress=False,
                        **FINETUNE_SAMPLING,
                    )

            thread = training.start(work)
            shots = 0
            try:
                while thread.is_alive():
                    thread.join(FINETUNE_POLL_S)
                    shots += 1
                    yield self._finetune_view(training, out, job_dir, shots)
            finally:
                if thread.is_alive():  # the client went away: stop at the next step and wait
                    job.cancelled.set()
                    thread.join()
            if training.error is not None and not rundir.has_run(out):
                corpus.unlink(missing_ok=True)  # no run to resume: its text is not kept
            if isinstance(training.error, ReverieError):  # named as the menu names it, not by its path
                shown_base = base[len(SHIPPED) :] if base and base.startswith(SHIPPED) else str(base)
                message = str(training.error).replace(str(folder), shown_base).replace(str(corpus), shown)
                raise ReverieError(message) from None
            if training.error is not None:
                raise training.error
            result = training.result
        if result is None:
            raise refusal("the fine-tuning was cancelled before it started")
        curve, samples, _ = self._finetune_view(training, out, job_dir, shots + 1)
        reason = {"interrupted": "stopped (cancelled or at the time limit)", "patience": "stopped early"}
        best = f", best {result.best_val_loss:.4f}" if result.best_val_loss is not None else ""
        status = (
            f"{run}: {result.step} steps, {reason.get(result.stop_reason, 'done')}; validation loss "
            f"{result.val_loss:.4f} nats/token{best}. It is in the Text tab's models now."
            if result.val_loss is not None
            else f"{run}: {result.step} steps. It is in the Text tab's models now."
        )
        yield curve, samples, status

    def _finetune_view(
        self, training: FineTuning, out: Path, job_dir: Path, shot: int
    ) -> tuple[str | None, str, str]:
        """(the loss curve as a new PNG, the latest samples, a status line) of a fine-tuning now."""
        if training.waiting:
            return None, "", "waiting for a free slot"
        rows = loss_rows(training.steps, out)
        curve = None
        if rows:
            curve = str(job_dir / f"loss{shot}.png")  # a new file each time: Gradio caches by path
            draw_curve(rows, Path(curve), out.name)
        status = "evaluating the base model"
        if training.steps:
            step, loss = training.steps[-1]
            status = f"step {step}, training loss {loss:.4f} nats/token"
        return curve, latest_samples(out), status

    def dream_clip(
        self,
        clip: str | None,
        model: str,
        layers: Sequence[str] | None,
        preset: str | None,
        motion: str,
        blend: float,
        octaves: float,
        iterations: float,
        request: gr.Request | None = None,
        progress: gr.Progress = DREAM_PROGRESS,
    ) -> tuple[str, str]:
        """Dream every frame of the uploaded clip (`reverie.dream_video`, frames shrunk to
        max_video_size) into an H.264 mp4 (a GIF stays a GIF); returns (its path, a summary line).

        A job of the client's, in one of the shared slots; cancelled or at the time limit it stops
        between gradient steps and nothing is returned but the message."""
        settings, jobs = self.settings, self.jobs
        with one_line_errors():  # every field checked, whichever the preset or the motion leaves unused
            model, preset = dream_model(model, preset)
            chosen = layer_names(layers)
            switch = MOTIONS[one_of("motion", motion, MOTIONS)]
            blend = BLEND.check(blend)
            own = {"octaves": OCTAVES.check(octaves), "iterations": ITERATIONS.check(iterations)}
        options: dict[str, Any] = {switch: blend if switch == "blend" else True}
        if preset != NO_PRESET:
            options["preset"] = preset
        else:
            options.update(own)
            if chosen:
                options["layers"] = {layer: 1.0 for layer in chosen}
        if not clip:
            raise refusal("upload a video clip first")
        check_size(clip, settings.max_upload_bytes, Path(clip).name)  # its name only: not the server's path
        shown = Path(clip).name
        with one_line_errors(), named_as(clip, shown):
            from reverie.deepdream.videoio import probe

            info = probe(clip)  # not a video, no frames: refused here in the API's words
        if info.frames > settings.max_video_frames:
            raise refusal(
                f"the clip has {info.frames} frames, over this page's cap of {settings.max_video_frames}; "
                "trim it first"
            )
        job_dir = new_job_dir()
        output = job_dir / ("dream.gif" if Path(clip).suffix.lower() == ".gif" else "dream.mp4")
        progress((0, info.frames), desc="loading the model", unit="frames")

        def on_frame(index: int, png: Path) -> None:
            progress((index + 1, info.frames), desc="dreaming frames", unit="frames")

        with jobs.job(client_of(request), "dream_video") as job, one_line_errors(), named_as(clip, shown):
            try:
                with jobs.slot():
                    result = reverie.dream_video(
                        clip,
                        output,
                        self.dreamers.get(model),
                        progress=False,
                        on_frame=on_frame,
                        max_pixels=settings.max_pixels,
                        max_size=settings.max_video_size,
                        stop=job.should_stop,
                        **options,
                    )
            except DreamStopped:
                shutil.rmtree(job_dir, ignore_errors=True)
                raise stopped(job, "video", "use a shorter clip, fewer octaves or iterations") from None
        width, height = result.size
        summary = f"{info.frames} frames at {width}x{height}, {float(info.fps):g} frames/s, {switch}"
        if result.note:
            summary += f" ({result.note})"
        return str(result.output), summary


# ---- fine-tune and video ------------------------------------------------------------------------


def check_size(path: str, cap: int, what: str = "the upload") -> None:
    """Refuse a file over `cap` bytes in one line."""
    size = os.path.getsize(path)
    if size > cap:
        raise refusal(
            f"{what} is {size / 2**20:.2f} MB, over this page's cap of {cap / 2**20:.3g} MB; "
            "send a smaller file"
        )


@contextmanager
def named_as(path: str | Path, shown: str) -> Iterator[None]:
    """A ReverieError that names the server's `path` (an upload's temporary file) names `shown`."""
    try:
        yield
    except ReverieError as exc:
        raise ReverieError(str(exc).replace(str(path), shown)) from None


def run_name_for(runs: Path, name: str | None, upload: str) -> str:
    """The new run's folder name in `runs`: `name`, or the uploaded file's stem; refused in one line
    when it is not a plain name or a run (or anything else) already has it."""
    name = (
        (name or "").strip() or re.sub(r"[^A-Za-z0-9._-]+", "-", Path(upload).stem).strip("-.") or "finetuned"
    )
    if not RUN_NAME.fullmatch(name) or name in (".", UPLOADS):
        raise refusal(
            f"the run name {name!r} is not a plain name (letters, digits, '.', '_' and '-', at most 64)"
        )
    if (runs / name).exists():
        raise refusal(f"{runs} already holds {name!r}; choose another run name")
    return name


def read_text_upload(path: str, name: str) -> str:
    """The uploaded text (UTF-8), refused in one line when it is not text."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise refusal(f"{name} is not UTF-8 text; upload a plain text file") from None
    if "\x00" in text or not text.strip():
        raise refusal(f"{name} is not a text file with something in it; upload a plain text file")
    return text


def latest_samples(run_dir: Path) -> str:
    """The last evaluation's block of the run's samples.txt ("" before the first)."""
    try:
        text = (run_dir / rundir.SAMPLES).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    blocks = text.split("=== step ")
    return ("=== step " + blocks[-1]).strip() if len(blocks) > 1 else ""


def loss_rows(steps: Sequence[tuple[int, float]], run_dir: Path) -> list[dict[str, Any]]:
    """The curve's points: each step's training loss, and each evaluation's from metrics.csv."""
    rows: list[dict[str, Any]] = [{"step": step, "train_loss": loss} for step, loss in steps]
    try:
        metrics = rundir.read_metrics(run_dir / rundir.METRICS)
    except (OSError, ValueError, ReverieError):  # being replaced: the next poll reads it
        metrics = []
    rows += [row for row in metrics if row.get("val_loss") is not None]
    return sorted(rows, key=lambda row: row["step"])


def draw_curve(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """The Fine-tune tab's loss curve as a PNG: each step's training loss and each evaluation's
    validation loss. Drawn on a Figure of its own, not through pyplot, whose global state the
    training thread's own loss.png (reverie.text.plots) uses at the same time."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=80)
    axes = figure.add_subplot()
    train = [(row["step"], row["train_loss"]) for row in rows if row.get("train_loss") is not None]
    val = [(row["step"], row["val_loss"]) for row in rows if row.get("val_loss") is not None]
    if train:
        axes.plot(*zip(*train), color="tab:blue", linewidth=0.8, label="training")
    if val:
        axes.plot(*zip(*val), "o-", color="tab:orange", label="validation")
    axes.set(xlabel="step", ylabel="loss (nats per token)", title=title)
    axes.grid(alpha=0.3)
    if train or val:
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, format="png")


class FineTuning:
    """One fine-tuning job's training, in a thread of its own: the losses so far, and its end."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, float]] = []
        self.result: Any = None
        self.error: BaseException | None = None
        self.waiting = True  # for a free slot

    def start(self, work: Callable[[], Any]) -> threading.Thread:
        def run() -> None:
            try:
                self.result = work()
            except BaseException as exc:  # noqa: BLE001 - handed to the page's thread, shown there
                self.error = exc

        thread = threading.Thread(target=run, name="reverie-finetune", daemon=True)
        thread.start()
        return thread


def client_of(request: gr.Request | None) -> str:
    """Whose job this is: the client's session (a browser tab, a gradio_client Client)."""
    return getattr(request, "session_hash", None) or "local"


# ---- the page --------------------------------------------------------------------------------------


def build_app(settings: WebSettings) -> gr.Blocks:
    """The page, with its queue set up; `launch` starts serving it. `app.reverie_page` is its Page
    (the loaded models, the running jobs)."""
    settings.validate()
    page = Page(settings)
    sampling = SamplingOptions()  # the text widgets start at the API's defaults
    defaults = reverie.DreamOptions()  # the dream widgets start at the API's defaults

    runs = text_choices(settings.runs)

    with gr.Blocks(
        title="reverie", analytics_enabled=False, delete_cache=(CACHE_KEEP_S, CACHE_KEEP_S)
    ) as app:
        gr.Markdown(
            "# reverie\nGenerate text with a trained language model, fine-tune one on your text, "
            "or DeepDream a photo or a clip."
        )
        with gr.Tab("Text", id="text"), gr.Row():
            with gr.Column(scale=1):
                with gr.Row():
                    run = gr.Dropdown(
                        runs,
                        value=runs[0][1] if runs else None,
                        label=f"Model (a run in {settings.runs}, or shipped)",
                        allow_custom_value=True,  # runs trained after start-up; generate_text checks
                        scale=4,
                    )
                    refresh = gr.Button("Refresh", scale=0, size="sm", min_width=90)
                hint = gr.Markdown(no_run_message(settings.runs), visible=not runs)
                prompt = gr.Textbox(
                    label="Prompt",
                    lines=3,
                    placeholder="the text to continue",
                    max_length=settings.max_prompt_chars,
                )
                temperature = gr.Slider(
                    *TEMPERATURE.range(0.05),
                    value=sampling.temperature,
                    step=0.05,
                    label="Temperature (0: greedy)",
                )
                with gr.Row():
                    top_k = gr.Number(sampling.top_k or 0, label="Top-k (0: off)", precision=0, minimum=0)
                    top_p = gr.Slider(
                        *TOP_P.range(0.01),
                        value=sampling.top_p or 1.0,
                        step=0.01,
                        label="Top-p (1: off)",
                    )
                with gr.Row():
                    min_p = gr.Slider(
                        *MIN_P.range(0.01),
                        value=sampling.min_p or 0.0,
                        step=0.01,
                        label="Min-p (0: off)",
                    )
                    repetition_penalty = gr.Number(
                        sampling.repetition_penalty or 1.0,
                        minimum=PENALTY.range(0.01)[0],
                        label="Repetition penalty (1: off)",
                    )
                with gr.Row():
                    minimum, maximum = LENGTH.range()
                    length = gr.Number(
                        sampling.length,
                        minimum=minimum,
                        maximum=maximum,
                        precision=0,
                        label="Length (tokens)",
                    )
                    num_samples = gr.Slider(
                        *SAMPLES.range(), value=sampling.num_samples, step=1, label="Samples"
                    )
                stop_at = gr.Textbox(
                    label="Stop at (one per line; \\n is a new line)", lines=1, placeholder="e.g. \\n\\n"
                )
                seed = gr.Number(
                    sampling.seed,
                    minimum=SEED.low,
                    maximum=SEED.high,
                    label="Seed (empty: a new one each time)",
                    precision=0,
                )
            with gr.Column(scale=2):
                text = gr.Textbox(
                    label="Text",
                    elem_id="text-output",
                    lines=18,
                    max_lines=40,
                    interactive=False,
                    buttons=["copy"],
                )
                with gr.Row():
                    generate = gr.Button("Generate", variant="primary")
                    stop = gr.Button("Stop", variant="stop")

        with gr.Tab("Dream", id="dream"):
            mode = gr.Radio(list(DREAM_MODES), value=DREAM_MODES[0], label="Mode", elem_id="dream-mode")
            with gr.Column(visible=True) as dream_mode:
                with gr.Row():
                    source = gr.Image(
                        type="filepath",
                        image_mode=None,  # keep the upload as it came: the API loads (and shrinks) it
                        sources=["upload", "clipboard"],
                        label=f"Input (shrunk to {settings.max_size} px before dreaming)",
                        height=420,
                        elem_id="dream-input",
                    )
                    refuse_non_images(source, settings)
                    result = shown_image("Dream", "dream-output", "pil")
                gr.Examples(
                    [[sample_photo()]],
                    inputs=[source],
                    label="Sample photo",
                    elem_id="sample-photo",
                    cache_examples=False,
                )
                with gr.Row():
                    with gr.Column():
                        model = gr.Dropdown(reverie.available_models(), value=DEFAULT_MODEL, label="Model")
                        layers = gr.Dropdown(
                            layer_choices(DEFAULT_MODEL),
                            value=[],
                            multiselect=True,
                            allow_custom_value=True,  # choices follow the model; the API checks the names
                            label="Layers (none: the model's own choice)",
                        )
                        weights = gr.Dataframe(
                            headers=["layer", "weight"],
                            datatype=["str", "number"],
                            column_count=2,
                            static_columns=[0],
                            type="array",
                            label="Layer weights",
                            value=[],
                        )
                    with gr.Column():
                        with gr.Row():
                            octaves = gr.Slider(
                                *OCTAVES.range(), value=defaults.octaves, step=1, label="Octaves"
                            )
                            iterations = gr.Slider(
                                *ITERATIONS.range(),
                                value=defaults.iterations,
                                step=1,
                                label="Iterations",
                            )
                        with gr.Row():
                            step = gr.Slider(
                                *STEP.range(0.001), value=defaults.step, step=0.001, label="Step"
                            )
                            jitter = gr.Slider(
                                *JITTER.range(),
                                value=defaults.jitter,
                                step=1,
                                label="Jitter (pixels)",
                            )
                        tile = gr.Number(
                            defaults.tile or 0,
                            label=f"Tile (pixels, {TILE.low:g} or more; 0: whole image at once)",
                            precision=0,
                            minimum=0,
                        )
                        preset = gr.Dropdown(
                            [NO_PRESET, *PRESETS],
                            value=NO_PRESET,
                            label="Preset (sets the model, layers and everything above)",
                        )
                        with gr.Row():
                            dream = gr.Button("Dream", variant="primary")
                            cancel = gr.Button("Cancel", variant="stop")
                        summary = gr.Markdown()
                octave_gallery = gr.Gallery(label="Octaves, smallest first", columns=6, height=200)
            with gr.Column(visible=False, elem_id="visualize-mode") as visualize_mode, gr.Row():
                with gr.Column():
                    vis_model = gr.Dropdown(
                        reverie.available_models(), value=DEFAULT_MODEL, label="Model to visualize"
                    )
                    vis_layer = gr.Dropdown(
                        layer_choices(DEFAULT_MODEL),
                        value=VISUALIZE_LAYER,
                        allow_custom_value=True,  # choices follow the model; the API checks the name
                        label="Layer",
                    )
                    vis_channels = gr.Textbox(
                        VISUALIZE_CHANNELS,
                        label=f"Channels (e.g. 0-7 or 3,12,97; at most {settings.max_visualize_channels})",
                        max_length=200,
                    )
                    with gr.Row():
                        vis_size = gr.Slider(
                            *page.visualize_size.range(),
                            value=min(VISUALIZE_SIZE, settings.max_visualize_size),
                            step=1,
                            label="Size (pixels per tile)",
                        )
                        vis_steps = gr.Slider(
                            *page.visualize_steps.range(),
                            value=min(VISUALIZE_STEPS, settings.max_visualize_steps),
                            step=1,
                            label="Steps",
                        )
                    with gr.Row():
                        vis_start = gr.Button("Visualize", variant="primary")
                        vis_cancel = gr.Button("Stop visualizing", variant="stop")
                    vis_summary = gr.Markdown()
                sheet = shown_image(
                    "Channels, each tile labelled LAYER:CHANNEL", "visualize-output", "filepath"
                )

        with gr.Tab("Fine-tune", id="finetune"), gr.Row():
            with gr.Column(scale=1):
                corpus = gr.File(
                    file_types=[".txt", ".md", ".csv", ".py", ".json", ".html", ".xml"],
                    type="filepath",
                    label=f"Your text (a UTF-8 file, at most {settings.max_text_bytes / 2**20:.3g} MB)",
                    elem_id="finetune-text",
                )
                bases = runs
                shipped_english = SHIPPED + "english"
                base = gr.Dropdown(
                    bases,
                    value=shipped_english
                    if shipped_english in [v for _, v in bases]
                    else (bases[0][1] if bases else None),
                    label="Start from (a shipped model or one of your runs)",
                    allow_custom_value=True,
                )
                ft_minutes = gr.Number(
                    min(2.0, settings.job_seconds / 60),
                    minimum=page.minutes.range()[0],
                    maximum=page.minutes.range()[1],
                    label=f"Minutes (at most {settings.job_seconds / 60:g}, this page's time limit)",
                )
                ft_name = gr.Textbox(label="Run name (empty: the file's name)", max_length=64)
                with gr.Row():
                    ft_start = gr.Button("Fine-tune", variant="primary")
                    ft_cancel = gr.Button("Finish now", variant="stop")
                ft_status = gr.Markdown()
            with gr.Column(scale=2):
                ft_curve = gr.Image(type="filepath", label="Loss (nats/token)", interactive=False, height=320)
                ft_samples = gr.Textbox(
                    label="Latest sample (temperature 0.5)", lines=10, max_lines=20, interactive=False
                )

        with gr.Tab("Video", id="video"):
            with gr.Row():
                clip = gr.File(
                    file_types=VIDEO_TYPES,
                    type="filepath",
                    label=(
                        f"Clip (mp4, mov, mkv, webm, avi or GIF; at most {settings.max_video_frames} frames, "
                        f"shrunk to {settings.max_video_size} px)"
                    ),
                    elem_id="video-input",
                )
                dreamed = gr.Video(label="Dreamed clip", interactive=False, elem_id="video-output")
            with gr.Row():
                with gr.Column():
                    v_model = gr.Dropdown(
                        reverie.available_models(), value=DEFAULT_MODEL, label="Model for the frames"
                    )
                    v_layers = gr.Dropdown(
                        layer_choices(DEFAULT_MODEL),
                        value=[],
                        multiselect=True,
                        allow_custom_value=True,
                        label="Layers for the frames (none: the model's own choice)",
                    )
                    v_preset = gr.Dropdown(
                        [NO_PRESET, *PRESETS], value=NO_PRESET, label="Preset (sets the model and layers)"
                    )
                with gr.Column():
                    motion = gr.Radio(list(MOTIONS), value=next(iter(MOTIONS)), label="From frame to frame")
                    v_blend = gr.Slider(*BLEND.range(), value=0.5, step=0.05, label="Blend (with 'blend')")
                    with gr.Row():
                        v_octaves = gr.Slider(*OCTAVES.range(), value=2, step=1, label="Octaves per frame")
                        v_iterations = gr.Slider(
                            *ITERATIONS.range(), value=5, step=1, label="Iterations per frame"
                        )
                    with gr.Row():
                        v_start = gr.Button("Dream the clip", variant="primary")
                        v_cancel = gr.Button("Abort", variant="stop")
                    v_summary = gr.Markdown()

        def refresh_runs(current: str | None) -> tuple[Any, Any]:
            found = text_choices(settings.runs)
            values = [value for _, value in found]
            value = current if current in values else (values[0] if values else None)
            return gr.update(choices=found, value=value), gr.update(visible=not found)

        refresh.click(refresh_runs, inputs=run, outputs=[run, hint], api_name=False)
        app.load(refresh_runs, inputs=run, outputs=[run, hint], api_name=False)
        app.load(lambda chosen: refresh_runs(chosen)[0], inputs=base, outputs=base, api_name=False)

        heavy = {"concurrency_id": HEAVY, "concurrency_limit": settings.concurrency}
        generation = generate.click(
            page.generate,
            inputs=[
                run,
                prompt,
                *[temperature, top_k, top_p, min_p, repetition_penalty, stop_at],
                *[length, num_samples, seed],
            ],
            outputs=text,
            api_name="generate",
            **heavy,
        )
        stop.click(None, cancels=[generation], api_name=False)

        dreaming = dream.click(
            page.dream,
            inputs=[source, model, layers, weights, octaves, iterations, step, jitter, tile, preset],
            outputs=[result, octave_gallery, summary],
            api_name="dream",
            **heavy,
        )
        cancel.click(None, cancels=[dreaming], api_name=False)  # the guard stops it between steps

        tuning = ft_start.click(
            page.finetune,
            inputs=[corpus, base, ft_minutes, ft_name],
            outputs=[ft_curve, ft_samples, ft_status],
            api_name="finetune",
            **heavy,
        )
        ft_cancel.click(None, cancels=[tuning], api_name=False)  # the guard stops it after a step

        def tuned_runs(current: str | None, chosen: str | None) -> tuple[Any, Any, Any]:
            """The Text tab's and the base menu's models once a fine-tuning ends (its run among them)."""
            found = text_choices(settings.runs)
            values = [value for _, value in found]
            value = current if current in values else (values[0] if values else None)
            kept = chosen if chosen in values else value
            return (
                gr.update(choices=found, value=value),
                gr.update(visible=not found),
                gr.update(choices=found, value=kept),
            )

        tuning.then(tuned_runs, inputs=[run, base], outputs=[run, hint, base], api_name=False)

        video_job = v_start.click(
            page.dream_clip,
            inputs=[clip, v_model, v_layers, v_preset, motion, v_blend, v_octaves, v_iterations],
            outputs=[dreamed, v_summary],
            api_name="dream_video",
            **heavy,
        )
        v_cancel.click(None, cancels=[video_job], api_name=False)

        def on_mode(chosen: str) -> tuple[Any, Any]:
            return gr.update(visible=chosen != DREAM_MODES[1]), gr.update(visible=chosen == DREAM_MODES[1])

        mode.change(on_mode, inputs=mode, outputs=[dream_mode, visualize_mode], api_name=False)
        visualizing = vis_start.click(
            page.visualize,
            inputs=[vis_model, vis_layer, vis_channels, vis_size, vis_steps],
            outputs=[sheet, vis_summary],
            api_name="visualize",
            **heavy,
        )
        vis_cancel.click(None, cancels=[visualizing], api_name=False)  # the guard stops it between steps
        vis_model.change(
            lambda name: gr.update(choices=layer_choices(name), value=None),
            inputs=vis_model,
            outputs=vis_layer,
            api_name=False,
        )
        v_model.change(
            lambda name: gr.update(choices=layer_choices(name), value=[]),
            inputs=v_model,
            outputs=v_layers,
            api_name=False,
        )
        v_preset.change(
            lambda name: [gr.update(interactive=name == NO_PRESET)] * 4,
            inputs=v_preset,
            outputs=[v_model, v_layers, v_octaves, v_iterations],
            api_name=False,
        )

        def on_model(name: str) -> tuple[Any, Any]:
            return gr.update(choices=layer_choices(name), value=[]), gr.update(value=[])

        model.change(on_model, inputs=model, outputs=[layers, weights], api_name=False)
        layers.change(weight_rows, inputs=[layers, weights], outputs=weights, api_name=False)

        def on_preset(name: str) -> list[Any]:
            return [gr.update(interactive=name == NO_PRESET)] * 8

        preset.change(
            on_preset,
            inputs=preset,
            outputs=[model, layers, weights, octaves, iterations, step, jitter, tile],
            api_name=False,
        )

    # api_open=False: Gradio's /run routes, which skip the queue and its limits, are closed
    app.queue(max_size=QUEUE_SIZE, api_open=False)
    app.reverie_page = page
    return app


def launch(settings: WebSettings) -> tuple[gr.Blocks, str]:
    """Build the page and start serving it on settings.host:port in the background; returns (app, url).

    `app.block_thread()` then waits until Ctrl-C; `app.close()` stops the server.
    """
    app = build_app(settings)
    guard = Guard(app, app.reverie_page.jobs, settings.max_request_bytes, settings.jobs_per_client)
    host, port = settings.host, settings.port
    try:
        _, url, _ = app.launch(
            server_name=host,
            server_port=port,
            prevent_thread_lock=True,
            quiet=True,
            share=False,
            ssr_mode=False,
            show_error=False,  # internal errors' text (paths, tracebacks) stays in the server's log
            max_file_size=settings.max_upload_bytes,
            app_kwargs={"middleware": [Middleware(RequestGuard, guard=guard)]},
            theme=gr.themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO_FONTS),
        )
    except OSError as exc:
        raise ReverieError(
            f"cannot serve on {host}:{port} ({str(exc).splitlines()[0]}); pass another --port or --host"
        ) from None
    return app, url
