"""What `reverie serve` decides for the page: where the runs are, where it listens, and its limits.

    settings = WebSettings(runs=Path("experiments"), max_size=768)
    settings.validate()                 # one line per bad value, as for every other option

The fields are declared with reverie.options, so `reverie serve`'s flags and their checks come from
here; this module does not import Gradio, so building the command line stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reverie.errors import require
from reverie.options import check, option

REQUEST_MARGIN_BYTES = 2**20  # a request may exceed the upload cap by this: multipart framing, JSON


@dataclass(frozen=True)
class WebSettings:
    """The page's settings (the flags of `reverie serve`)."""

    runs: Path = option(Path("runs"), "folder of trained runs", metavar="DIR")
    host: str = option(
        "127.0.0.1", "address to listen on; 127.0.0.1 is this machine only, 0.0.0.0 the network (no login)"
    )
    port: int = option(7860, "port to listen on", low=1, high=65535)
    max_size: int = option(
        1024, "images are shrunk to this longest side before dreaming", low=1, metavar="PIXELS"
    )
    max_upload_mb: float = option(
        20.0,
        "largest upload accepted, in MB; a request's body may be 1 MB more, no larger",
        low=0,
        low_open=True,
        metavar="MB",
    )
    max_pixels: int = option(
        50_000_000, "uploads with more pixels are refused before they are decoded", low=1, metavar="N"
    )
    concurrency: int = option(
        1,
        "jobs that run at once, generations, fine-tunings, dreams and videos together; the rest wait in "
        "the queue "
        "(raise it on a GPU)",
        low=1,
        metavar="N",
    )
    job_seconds: float = option(
        300.0,
        "a job running longer is stopped: a generation keeps the text so far, a fine-tuning its run "
        "(saved), a dream, video or visualization ends with a message; also the Fine-tune tab's most minutes",
        low=0,
        low_open=True,
        metavar="SECONDS",
    )
    jobs_per_client: int = option(
        4,
        "jobs one client (a browser tab, an API session) may have waiting or running; more are refused",
        low=1,
        metavar="N",
    )
    max_prompt_chars: int = option(10_000, "longest prompt accepted, in characters", low=1, metavar="N")
    max_text_mb: float = option(
        2.0,
        "largest text file the Fine-tune tab accepts, in MB (at most --max-upload-mb)",
        low=0,
        low_open=True,
        metavar="MB",
    )
    max_video_frames: int = option(
        120, "clips with more frames (in the part dreamed) are refused by the Video tab", low=1, metavar="N"
    )
    max_video_size: int = option(
        256, "video frames are shrunk to this longest side before dreaming", low=16, metavar="PIXELS"
    )
    max_visualize_size: int = option(
        128,
        "the Dream tab's Visualize mode renders tiles of at most this side",
        low=16,
        high=2048,  # reverie.visualize's own most
        metavar="PIXELS",
    )
    max_visualize_steps: int = option(
        128,
        "the Dream tab's Visualize mode optimizes each tile for at most this many steps",
        low=1,
        metavar="N",
    )
    max_visualize_channels: int = option(
        16, "the Dream tab's Visualize mode renders at most this many channels per sheet", low=1, metavar="N"
    )

    def validate(self) -> None:
        check(self)
        require(
            not self.runs.exists() or self.runs.is_dir(),
            f"--runs {self.runs} is a file; give the folder that holds run directories",
        )

    @property
    def max_text_bytes(self) -> int:
        """The Fine-tune tab's cap on a text file: --max-text-mb, never over the upload cap."""
        return min(int(self.max_text_mb * 2**20), self.max_upload_bytes)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_request_bytes(self) -> int:
        """The largest request body the server reads: an upload at the cap and its form's framing."""
        return self.max_upload_bytes + REQUEST_MARGIN_BYTES
