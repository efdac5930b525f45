"""The page's Text tab: pick a run trained into the runs folder or a shipped model
(reverie.text.pretrained), write a prompt, choose the sampling rules, and the text streams into the
page (`reverie.load(run).stream_batch(...)`); Stop ends it.

The models on offer are the runs in `settings.runs` (a value: the folder's name) and the shipped
models (a value: SHIPPED + name); the Fine-tune tab offers the same ones as its bases.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from reverie.text import pretrained, rundir
from reverie.text.sampling import SamplingOptions
from reverie.text.stops import unescape
from reverie.web.inputs import Bound
from reverie.web.jobs import Job, RunKey, Workspace, client_of, heavy, one_line_errors, refusal

MAX_LENGTH = 100_000  # tokens per generation the page allows
MAX_SAMPLES = 8
MAX_TEMPERATURE = 2.0
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
STREAM_INTERVAL_S = 0.05  # the text box is refreshed at most this often while a generation streams
# Shown when there is no run yet: Python's own library is a corpus that needs no download.
TRAIN_HINT = "reverie train python-stdlib --out {runs}/python-stdlib --minutes 5"
SHIPPED = "shipped:"  # a shipped model's value in the model list: SHIPPED + its name


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


def run_menus(runs: Path, current: str | None) -> tuple[Any, Any]:
    """The model menu's update (`current` kept while it is still there) and the no-run hint's."""
    found = text_choices(runs)
    values = [value for _, value in found]
    value = current if current in values else (values[0] if values else None)
    return gr.update(choices=found, value=value), gr.update(visible=not found)


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


class TextTab(Workspace):
    """The Text tab's endpoint, `generate`."""

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


def build(app: gr.Blocks, page: TextTab) -> tuple[gr.Dropdown, gr.Markdown]:
    """The Text tab's widgets and events, inside `app`'s tab; returns its model menu and its no-run
    hint (the Fine-tune tab updates both when a run is saved)."""
    settings = page.settings
    sampling = SamplingOptions()  # the text widgets start at the API's defaults
    runs = text_choices(settings.runs)
    with gr.Row():
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
                num_samples = gr.Slider(*SAMPLES.range(), value=sampling.num_samples, step=1, label="Samples")
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

    def refresh_runs(current: str | None) -> tuple[Any, Any]:
        return run_menus(settings.runs, current)

    refresh.click(refresh_runs, inputs=run, outputs=[run, hint], api_name=False)
    app.load(refresh_runs, inputs=run, outputs=[run, hint], api_name=False)

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
        **heavy(settings),
    )
    stop.click(None, cancels=[generation], api_name=False)
    return run, hint
