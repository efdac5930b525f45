"""Training speed on several processes: tokens/s of `reverie train` (the default model on
tinyshakespeare) on 1 and 2 processes of this machine (torchrun, gloo), and on the GPU in bfloat16
(cuDNN LSTM) where there is one. Writes the "Training on several processes" section of
docs/benchmarks.md.

    python benchmarks/ddp_bench.py                 # about 3 minutes on 2 cores
    python benchmarks/ddp_bench.py --steps 40      # a quicker look

Each configuration is a real `reverie train` command (under torchrun for 2 processes) in its own
processes; the speed is read from the run's metrics.csv over the steps after the first `--skip`
(start-up and warm-up excluded): global tokens trained per second of wall-clock time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from report import DOC, add_corpus_argument, checked_corpus, machine_summary, table, write_section

from reverie.text import rundir


@dataclass
class Setup:
    """One measured configuration."""

    label: str
    processes: int
    threads: int  # per process (OMP_NUM_THREADS / torch threads)
    batch: int  # per process
    device: str = "cpu"
    dtype: str = "auto"


def command(setup: Setup, corpus: Path, out: Path, steps: int) -> tuple[list[str], str]:
    """The argv that runs `setup`, and the same command as a user types it."""
    train = ["train", str(corpus), "--out", str(out), "--steps", str(steps), "--batch-size", str(setup.batch)]
    train += ["--device", setup.device, "--dtype", setup.dtype, "--sample-temperatures", "--no-progress"]
    train += ["--val-fraction", "0"]
    launcher = ["torchrun", "--standalone", f"--nproc_per_node={setup.processes}", "-m"]
    typed = " ".join([*(launcher if setup.processes > 1 else []), "reverie", *train])
    typed = typed.replace(str(corpus), corpus.name).replace(str(out), "RUN_DIR")
    if setup.processes == 1:
        return [sys.executable, "-m", "reverie", *train], typed
    return [sys.executable, "-m", "torch.distributed.run", *launcher[1:], "reverie", *train], typed


def measure(setup: Setup, corpus: Path, steps: int, skip: int) -> dict[str, float | str]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        argv, typed = command(setup, corpus, out, steps)
        env = {**os.environ, "OMP_NUM_THREADS": str(setup.threads), "PYTHONUNBUFFERED": "1"}
        done = subprocess.run(argv, check=False, capture_output=True, text=True, env=env, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"{setup.label} failed:\n{done.stderr[-3000:]}")
        rows = [r for r in rundir.read_metrics(out / rundir.METRICS) if r["train_loss"] is not None]
        dropout = rundir.RunConfig.load(out).model.dropout  # chosen for the budget when not given
    first, last = rows[skip - 1], rows[-1]
    speed = (last["tokens"] - first["tokens"]) / (last["elapsed_s"] - first["elapsed_s"])
    return {"tokens_per_s": speed, "loss": last["train_loss"], "command": typed, "dropout": dropout}


def default_model(dropouts: set[float]) -> str:
    """The default model in words, e.g. "LSTM 2x448, embed 64, 32-token sequences, dropout 0", with
    the dropout the runs were given (reverie.text.fit chooses it for their few steps)."""
    from reverie.text.options import TrainOptions

    o = TrainOptions()
    m = o.model
    shape = f"{m.kind.upper()} {m.layers}x{m.hidden}, embed {m.embed}"
    return f"{shape}, {o.seq_len}-token sequences, dropout {' / '.join(f'{d:g}' for d in sorted(dropouts))}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80, help="steps per configuration")
    parser.add_argument("--skip", type=int, default=10, help="first steps left out of the speed")
    add_corpus_argument(parser)
    parser.add_argument("--doc", type=Path, default=DOC, help="the markdown file for the section")
    args = parser.parse_args(argv)
    corpus, corpus_note = checked_corpus(args.corpus)
    cores = os.cpu_count() or 1
    half = max(cores // 2, 1)  # threads per process when two processes share the cores
    setups = [
        Setup(f"1 process x {cores} threads, batch 32", 1, cores, 32),
        Setup(f"1 process x {half} thread(s), batch 32", 1, half, 32),
        Setup(f"2 processes x {half} thread(s), batch 16 each (global 32)", 2, half, 16),
        Setup(f"2 processes x {half} thread(s), batch 32 each (global 64)", 2, half, 32),
    ]
    gpu = torch.cuda.is_available()
    if gpu:
        name = torch.cuda.get_device_name(0)
        setups += [
            Setup(f"GPU ({name}), bfloat16, batch 32", 1, 4, 32, "cuda", "bfloat16"),
            Setup(f"GPU ({name}), bfloat16, batch 256", 1, 4, 256, "cuda", "bfloat16"),
        ]
    rows, baseline, dropouts = [], None, set()
    for setup in setups:
        print(f"{setup.label} ...", file=sys.stderr)
        result = measure(setup, corpus, args.steps, args.skip)
        baseline = baseline or result["tokens_per_s"]
        dropouts.add(result["dropout"])
        rows.append(
            [
                setup.label,
                f"{result['tokens_per_s']:,.0f}",
                f"{result['tokens_per_s'] / baseline:.2f}x",
                f"{result['loss']:.3f}",
                f"`{result['command']}`",
            ]
        )
    body = "\n\n".join(
        [
            f"Machine: {machine_summary()}",
            corpus_note,
            table(
                [
                    "configuration",
                    "tokens/s (global)",
                    "vs first row",
                    f"train loss at step {args.steps}",
                    "command",
                ],
                rows,
            ),
            f"Default model ({default_model(dropouts)}), {args.steps} steps, speed over steps "
            f"{args.skip + 1}-{args.steps}; with 2 processes the gradients are averaged by gloo over "
            "localhost after every step (with dropout each rank draws its own masks, so losses differ a "
            "little at the same global batch). Two processes on the cores one process already uses add the "
            "gradient exchange and halve each matmul; the gain of data parallelism comes with more cores, "
            "GPUs or machines than one process can use."
            + (
                ""
                if gpu
                else " No GPU on this machine: the GPU rows (bfloat16, cuDNN LSTM) appear where there is one."
            ),
        ]
    )
    write_section(
        "Training on several processes",
        body,
        "python benchmarks/ddp_bench.py" + (f" --steps {args.steps}" if args.steps != 80 else ""),
        args.doc,
    )
    print(f"wrote {args.doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
