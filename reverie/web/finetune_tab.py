"""The page's Fine-tune tab: upload a text file (`max_text_mb`), pick a base (a shipped model or a
run), minutes and a name, and `reverie.train(text, RUNS_DIR/NAME, base=...)` runs in a thread while
the page redraws the loss curve and the latest sample each second; Finish now (or the time limit)
ends it after the step in flight, saved, and the run joins the Text tab's models.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import gradio as gr

import reverie
from reverie.errors import ReverieError
from reverie.text import rundir
from reverie.text.options import TrainOptions
from reverie.web.inputs import Bound
from reverie.web.jobs import Workspace, client_of, heavy, new_job_dir, one_line_errors, refusal
from reverie.web.text_tab import SHIPPED, model_folder, run_menus, text_choices
from reverie.web.uploads import check_size, read_text_upload

FINETUNE_POLL_S = 1.0  # the Fine-tune tab's curve and samples are refreshed this often
FINETUNE_SAMPLING = {"sample_temperatures": (0.5,), "sample_length": 200}  # each evaluation's sample
UPLOADS = ".uploads"  # the runs folder's subfolder keeping each fine-tuning run's text (for --resume)
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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


class FinetuneTab(Workspace):
    """The Fine-tune tab's endpoint, `finetune`, and its minutes' bound (at most the time limit)."""

    @cached_property
    def minutes(self) -> Bound:
        return Bound.of(TrainOptions, "minutes", "minutes", high=self.settings.job_seconds / 60)

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
                        stop=job.should_stop,  # cancelled or timed out: saved after the step
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


def build(app: gr.Blocks, page: FinetuneTab, run: gr.Dropdown, hint: gr.Markdown) -> None:
    """The Fine-tune tab's widgets and events, inside `app`'s tab; a finished run joins the Text tab's
    model menu `run` (and `hint`, its no-run line, goes)."""
    settings = page.settings
    with gr.Row():
        with gr.Column(scale=1):
            corpus = gr.File(
                file_types=[".txt", ".md", ".csv", ".py", ".json", ".html", ".xml"],
                type="filepath",
                label=f"Your text (a UTF-8 file, at most {settings.max_text_bytes / 2**20:.3g} MB)",
                elem_id="finetune-text",
            )
            bases = text_choices(settings.runs)
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

    app.load(lambda chosen: run_menus(settings.runs, chosen)[0], inputs=base, outputs=base, api_name=False)
    tuning = ft_start.click(
        page.finetune,
        inputs=[corpus, base, ft_minutes, ft_name],
        outputs=[ft_curve, ft_samples, ft_status],
        api_name="finetune",
        **heavy(settings),
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
