"""The Dream tab's other mode, Visualize channels: `reverie.visualize_channels(dreamer, layer,
channels).sheet` (channels typed as for `reverie visualize`, '0-7' or '3,12,97'; size, steps and
channel count capped by the settings), the labelled grid the command line writes, with a progress bar
per channel. It shares the dreamers (one per model) with the Dream and Video tabs.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import gradio as gr

import reverie
from reverie.deepdream.command import visualize_command, visualize_output
from reverie.deepdream.octaves import DreamStopped
from reverie.deepdream.visualize import VisualizeOptions, parse_indices
from reverie.web.dream_tab import DEFAULT_MODEL, DREAM_PROGRESS, layer_choices, shown_image
from reverie.web.inputs import Bound, one_of
from reverie.web.jobs import Workspace, client_of, heavy, new_job_dir, one_line_errors, refusal, stopped

# the Visualize mode's starting values (size and steps never over the page's caps)
VISUALIZE_LAYER, VISUALIZE_CHANNELS, VISUALIZE_SIZE, VISUALIZE_STEPS = "block8", "0-7", 96, 64


def channel_text(indices: Sequence[int]) -> str:
    """[0, 1, 2, 3, 7] -> '0-3,7': channels written as the command line takes them."""
    spans: list[list[int]] = []
    for index in indices:
        if spans and index == spans[-1][1] + 1:
            spans[-1][1] = index
        else:
            spans.append([index, index])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


class VisualizeTab(Workspace):
    """The Visualize mode's endpoint, `visualize`, and its bounds that come from the settings."""

    @cached_property
    def visualize_size(self) -> Bound:
        return Bound.of(VisualizeOptions, "size", "size", high=self.settings.max_visualize_size)

    @cached_property
    def visualize_steps(self) -> Bound:
        return Bound.of(VisualizeOptions, "steps", "steps", high=self.settings.max_visualize_steps)

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
        path = new_job_dir() / visualize_output(model, layer).name  # the command line's name
        image.save(path)
        command = visualize_command(model, layer, channel_text(indices), size=size, steps=steps)
        summary = (
            f"{len(indices)} channel(s) of {layer}, {size} px, {steps} steps: a {image.width}x{image.height} "
            f"sheet, as `{command}` draws it"
        )
        return str(path), summary


def build(page: VisualizeTab) -> gr.Column:
    """The Visualize mode's widgets and events, inside the page's Dream tab; returns its column
    (hidden until the tab's mode switch picks it)."""
    settings = page.settings
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
        sheet = shown_image("Channels, each tile labelled LAYER:CHANNEL", "visualize-output", "filepath")

    visualizing = vis_start.click(
        page.visualize,
        inputs=[vis_model, vis_layer, vis_channels, vis_size, vis_steps],
        outputs=[sheet, vis_summary],
        api_name="visualize",
        **heavy(settings),
    )
    vis_cancel.click(None, cancels=[visualizing], api_name=False)  # the guard stops it between steps
    vis_model.change(
        lambda name: gr.update(choices=layer_choices(name), value=None),
        inputs=vis_model,
        outputs=vis_layer,
        api_name=False,
    )
    return visualize_mode
