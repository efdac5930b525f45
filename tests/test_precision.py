"""`--dtype auto` by measurement: with a fake clock, a faster bfloat16 that agrees is chosen, one that
disagrees is not, the choice is cached per machine and measured again on another."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from reverie import precision

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REVERIE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


class FakeMachine:
    """A clock that advances by each way's cost when it runs, and work whose result differs per way."""

    def __init__(self, cost: dict[str, float], gradient_error: dict[str, float] | None = None) -> None:
        self.cost, self.error, self.now, self.runs = cost, gradient_error or {}, 0.0, []

    def timer(self) -> float:
        return self.now

    def work(self, way: str) -> tuple[float, torch.Tensor]:
        self.runs.append(way)
        self.now += self.cost[way]
        gradient = torch.ones(100)
        gradient[0] += self.error.get(way, 0.0) * 10  # a relative L2 error of `error`
        return 1.0, gradient


def test_a_faster_bfloat16_that_agrees_is_chosen_and_kept():
    machine = FakeMachine({"float32": 2.0, "bfloat16": 1.0}, {"bfloat16": 0.01})
    said = []
    choice = precision.choose("lstm tiny", CPU, machine.work, timer=machine.timer, say=said.append)
    assert choice.way == "bfloat16" and choice.dtype == torch.bfloat16
    assert choice.seconds == {"float32": 2.0, "bfloat16": 1.0}
    assert "2.00x float32's speed and agrees" in choice.reason and len(said) == 1
    runs = len(machine.runs)
    again = precision.choose("lstm tiny", CPU, machine.work, timer=machine.timer, say=said.append)
    assert again == choice and len(machine.runs) == runs and len(said) == 1  # cached: nothing measured


def test_a_faster_bfloat16_that_disagrees_is_not_chosen():
    machine = FakeMachine({"float32": 2.0, "bfloat16": 1.0}, {"bfloat16": 0.2})
    choice = precision.choose("lstm tiny", CPU, machine.work, timer=machine.timer, say=lambda _: None)
    assert choice.way == "float32" and "disagrees with float32 (loss 0.0%, gradient" in choice.reason


def test_a_slower_bfloat16_is_not_chosen():
    machine = FakeMachine({"float32": 1.0, "bfloat16": 5.0})
    choice = precision.choose("conv", CPU, machine.work, timer=machine.timer, say=lambda _: None)
    assert choice.way == "float32" and choice.reason == "float32 is the fastest here"


def test_a_way_whose_kernel_this_machine_lacks_is_left_out():
    # oneDNN without bfloat16 support raises "could not create a primitive descriptor" for an LSTM
    machine = FakeMachine({"float32": 2.0, "bfloat16": 1.0})
    real_work = machine.work

    def work(way: str) -> tuple[float, torch.Tensor]:
        if way == "bfloat16":
            raise RuntimeError("could not create a primitive descriptor for the LSTM forward\nmore")
        return real_work(way)

    choice = precision.choose("lstm tiny", CPU, work, timer=machine.timer, say=lambda _: None)
    assert choice.way == "float32" and choice.seconds == {"float32": 2.0}
    assert choice.reason == (
        "float32 is the fastest here; bfloat16 does not run here (could not create a primitive "
        "descriptor for the LSTM forward)"
    )
    assert precision.cached("lstm tiny", CPU) == choice


def test_layouts_are_ways_too():
    costs = {"float32": 4.0, "float32 channels-last": 2.0, "bfloat16": 3.0, "bfloat16 channels-last": 1.0}
    machine = FakeMachine(costs, {"bfloat16 channels-last": 0.3})
    choice = precision.choose("net", CPU, machine.work, precision.LAYOUTS, timer=machine.timer, say=print)
    assert choice.way == "float32 channels-last" and choice.channels_last and choice.dtype == torch.float32
    assert "bfloat16 channels-last is faster but disagrees" in choice.reason


def test_another_machine_measures_again(cache: Path, monkeypatch: pytest.MonkeyPatch):
    machine = FakeMachine({"float32": 2.0, "bfloat16": 1.0})
    precision.choose("lstm tiny", CPU, machine.work, timer=machine.timer, say=lambda _: None)
    stored = json.loads((cache / precision.CACHE_FILE).read_text())
    assert list(stored) == [precision.machine_key(CPU)] and "lstm tiny" in stored[precision.machine_key(CPU)]
    runs = len(machine.runs)
    monkeypatch.setattr(precision, "available_cores", lambda: 97)  # the same cache, another machine
    slower = FakeMachine({"float32": 1.0, "bfloat16": 2.0})
    choice = precision.choose("lstm tiny", CPU, slower.work, timer=slower.timer, say=lambda _: None)
    assert choice.way == "float32" and slower.runs and len(machine.runs) == runs
    assert len(json.loads((cache / precision.CACHE_FILE).read_text())) == 2


def test_real_work_gives_a_real_choice():
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 64)
    data = torch.randn(256, 64)

    def work(way: str) -> tuple[float, torch.Tensor]:
        with torch.autocast(
            "cpu", dtype=precision.dtype_of(way), enabled=precision.dtype_of(way) == torch.bfloat16
        ):
            loss = layer(data).float().square().mean()
        (gradient,) = torch.autograd.grad(loss, layer.weight)
        return float(loss.detach()), gradient

    choice = precision.choose("linear 64", CPU, work, say=lambda _: None)
    assert choice.way in precision.DTYPES and set(choice.seconds) == set(precision.DTYPES)


def test_a_far_slower_way_is_timed_once_after_its_warm_up():
    machine = FakeMachine({"float32": 1.0, "bfloat16": 400.0})
    choice = precision.choose("lstm slow", CPU, machine.work, timer=machine.timer, say=lambda _: None)
    assert choice.way == "float32" and choice.seconds == {"float32": 1.0, "bfloat16": 400.0}
    assert machine.runs.count("float32") == 1 + precision.REPEATS
    assert machine.runs.count("bfloat16") == 2  # the warm-up and one timed run, not REPEATS


def test_matmul_throughput_is_measured_on_smaller_matrices_when_the_budget_asks():
    assert precision.matmul_gflops(torch.float32, size=512, repeats=2, budget_s=1e-9) > 0
