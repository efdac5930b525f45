"""The page's Video tab: upload a clip (at most `max_video_frames` frames, shrunk to
`max_video_size`), pick the dream options and flow, blend or independent, and `reverie.dream_video`
writes an mp4 (a GIF stays a GIF) with a progress bar over the frames.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

import reverie
from reverie.deepdream.octaves import DreamStopped
from reverie.deepdream.options import PRESETS
from reverie.deepdream.video import VideoOptions
from reverie.web.dream_tab import (
    DEFAULT_MODEL,
    DREAM_PROGRESS,
    ITERATIONS,
    NO_PRESET,
    OCTAVES,
    dream_model,
    layer_choices,
    layer_names,
)
from reverie.web.inputs import Bound, one_of
from reverie.web.jobs import Workspace, client_of, heavy, new_job_dir, one_line_errors, refusal, stopped
from reverie.web.uploads import check_size, named_as

BLEND = Bound.of(VideoOptions, "blend", "blend")
VIDEO_TYPES = [".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif"]
MOTIONS = {  # the Video tab's choice: label -> the VideoOptions switch it sets
    "flow (follow the motion)": "flow",
    "blend with the previous frame": "blend",
    "independent (flickers)": "independent",
}


class VideoTab(Workspace):
    """The Video tab's endpoint, `dream_clip`."""

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


def build(page: VideoTab) -> None:
    """The Video tab's widgets and events, inside the page's tab."""
    settings = page.settings
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
                v_iterations = gr.Slider(*ITERATIONS.range(), value=5, step=1, label="Iterations per frame")
            with gr.Row():
                v_start = gr.Button("Dream the clip", variant="primary")
                v_cancel = gr.Button("Abort", variant="stop")
            v_summary = gr.Markdown()

    video_job = v_start.click(
        page.dream_clip,
        inputs=[clip, v_model, v_layers, v_preset, motion, v_blend, v_octaves, v_iterations],
        outputs=[dreamed, v_summary],
        api_name="dream_video",
        **heavy(settings),
    )
    v_cancel.click(None, cancels=[video_job], api_name=False)
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
