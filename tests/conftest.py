"""Settings for the whole test suite."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `from helpers import ...`
os.environ.setdefault("OMP_NUM_THREADS", "1")  # this process (one_torch_thread) and every one it starts


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run on one thread: tiny models gain nothing from more, and oneDNN's LSTM with 2 threads on a
    busy 2-core machine can run hundreds of times slower (its threads wait on each other every step)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """reverie's cache (downloads, measured precision choices) in a folder of the test session's own,
    for this process and the ones it starts; tests that look at the cache set their own. The shipped
    models are an empty folder too (tests of shipped models build their own), so that what the
    package ships does not change what the page or an error message shows."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REVERIE_CACHE", str(tmp_path_factory.mktemp("reverie-cache")))
        patch.setenv("REVERIE_MODELS", str(tmp_path_factory.mktemp("reverie-models")))
        yield


@pytest.fixture(scope="session")
def built_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding a tiny "shakespeare" built by scripts/pretrain.py, shared by the
    session (a test that changes it works on a copy)."""
    from helpers import build_tiny_shipped

    return build_tiny_shipped(tmp_path_factory.mktemp("shipped"))


@pytest.fixture()
def shipped_models(built_models: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$REVERIE_MODELS pointing at `built_models`."""
    from reverie.text.pretrained import MODELS_ENV

    monkeypatch.setenv(MODELS_ENV, str(built_models))
    return built_models


# The slow tier (`make test` runs it, `make test-fast` leaves it out): real weights, the browser, soak
# and load, video, several processes (DDP, torchrun), benchmarks and the doctor's measurements.
SLOW_FILES = (
    "benchmarks/",
    "gpu/",
    "test_doctor.py",
    "test_distributed.py",
    "text/test_ddp.py",
    "text/test_two_writers.py",
    "test_disk_faults.py",
    "dream/test_video.py",
    "dream/test_efficientnet_variants.py",
    "dream/test_keras_import.py",
    "web/test_browser.py",
    "web/test_soak.py",
    "web/test_slow_clients.py",
    "web/test_load.py",
    "fuzz/",  # the property-based fuzzing and its regression cases: a worker process a case
)
SLOW_TESTS = (
    "text/test_speculative.py::test_speculative_sampling_draws_the_next_tokens_from_plain_sampling_s_distribution",
    "text/test_speculative.py::test_the_same_test_catches_a_wrong_acceptance_rule",
    "text/test_rundir.py::test_a_kill_at_any_file_operation_of_a_save_leaves_a_run_that_resumes",
    "web/test_command.py::test_serve_prints_its_url_and_serves_the_page_until_ctrl_c",
    "dream/test_folder.py::test_two_processes_split_a_folder_and_a_rerun_skips_it",
    "dream/test_visualize.py::test_a_channels_image_excites_it_more_than_20_other_channels_images_do",
    "dream/test_visualize.py::test_fourier_reaches_a_higher_activation_than_pixels_in_the_same_steps",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests = Path(__file__).resolve().parent
    for item in items:
        where = item.path.resolve().relative_to(tests).as_posix()
        name = f"{where}::{item.originalname}"
        if where.startswith(SLOW_FILES) or name in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
