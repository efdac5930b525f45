"""The page's Dream tab, its Dream-an-image mode: upload a photo or take the sample, pick the model,
layers and weights, and `dreamer.octaves(...)` (one `reverie.load_dreamer` per model, kept loaded)
runs with a progress bar per octave; Cancel stops it between two steps. The tab's other mode is
reverie.web.visualize_tab's; the model and layer menus here serve it and the Video tab too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

import reverie
from reverie.deepdream import objectives
from reverie.deepdream.octaves import DreamStopped
from reverie.deepdream.options import PRESETS, DreamOptions
from reverie.errors import ReverieError
from reverie.web.inputs import Bound, one_of
from reverie.web.jobs import (
    Workspace,
    client_of,
    heavy,
    new_job_dir,
    one_line_errors,
    refusal,
    saved,
    stopped,
)
from reverie.web.uploads import check_upload, refuse_non_images

DEFAULT_MODEL = "efficientnet_lite0"  # its weights ship with the package, so the page works offline
NO_PRESET = "(none)"
# Gradio gives each dream its own tracker in place of this default; tqdm bars (one per octave) drive it.
DREAM_PROGRESS = gr.Progress(track_tqdm=True)
# the dream widgets' upper ends (their lower ends and defaults come from DreamOptions)
MAX_OCTAVES, MAX_ITERATIONS, MAX_STEP, MAX_JITTER = 8, 50, 0.1, 64
OCTAVES = Bound.of(DreamOptions, "octaves", "octaves", high=MAX_OCTAVES)
ITERATIONS = Bound.of(DreamOptions, "iterations", "iterations", high=MAX_ITERATIONS)
STEP = Bound.of(DreamOptions, "step", "step", high=MAX_STEP)
JITTER = Bound.of(DreamOptions, "jitter", "jitter", high=MAX_JITTER)
TILE = Bound.of(DreamOptions, "tile", "tile")
DREAM_MODES = ("Dream an image", "Visualize channels")  # the Dream tab's two modes


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


class DreamTab(Workspace):
    """The Dream tab's endpoint, `dream`."""

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
                saved(octave, job_dir / f"octave{i + 1}.png"),
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
        return saved(result.image, job_dir / "dream.png"), gallery, summary


def build(page: DreamTab) -> tuple[gr.Radio, gr.Column]:
    """The Dream tab's mode switch and its Dream-an-image mode (widgets and events), inside the
    page's Dream tab; returns the switch and the mode's column (`switch_modes` shows one mode)."""
    settings = page.settings
    defaults = reverie.DreamOptions()  # the dream widgets start at the API's defaults
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
                    octaves = gr.Slider(*OCTAVES.range(), value=defaults.octaves, step=1, label="Octaves")
                    iterations = gr.Slider(
                        *ITERATIONS.range(),
                        value=defaults.iterations,
                        step=1,
                        label="Iterations",
                    )
                with gr.Row():
                    step = gr.Slider(*STEP.range(0.001), value=defaults.step, step=0.001, label="Step")
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

    dreaming = dream.click(
        page.dream,
        inputs=[source, model, layers, weights, octaves, iterations, step, jitter, tile, preset],
        outputs=[result, octave_gallery, summary],
        api_name="dream",
        **heavy(settings),
    )
    cancel.click(None, cancels=[dreaming], api_name=False)  # the guard stops it between steps

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
    return mode, dream_mode


def switch_modes(mode: gr.Radio, dream_mode: gr.Column, visualize_mode: gr.Column) -> None:
    """Show the Dream tab's mode that `mode` names, and hide the other."""

    def on_mode(chosen: str) -> tuple[Any, Any]:
        return gr.update(visible=chosen != DREAM_MODES[1]), gr.update(visible=chosen == DREAM_MODES[1])

    mode.change(on_mode, inputs=mode, outputs=[dream_mode, visualize_mode], api_name=False)
