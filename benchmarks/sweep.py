"""Sweeps behind reverie's text defaults: short trainings of several configurations on tiny-shakespeare
(last 10% held out), each in its own process, validation loss against budget. Writes the section
"Sweep: NAME" of docs/benchmarks.md.

    python benchmarks/sweep.py transformer             # 5-minute runs of transformer shapes (~35 min)
    python benchmarks/sweep.py lstm-dropout            # the default LSTM's dropout against epochs (~55 min)
    python benchmarks/sweep.py transformer --minutes 1 --only 0,2    # a quick look at two of them

- transformer: the CPU configuration of `--model transformer` (layers, width, context, batch,
  learning rate) at a fixed wall time, beside nanoGPT's small CPU recipe as its README gives it
  (cited, not re-run: 1.628 nats/char after 4.8 minutes on the machine of REFERENCE.md).
- lstm-dropout: the default 2x448 LSTM with dropout 0, 0.1 and 0.2 after budgets of about 1.5, 3
  and 6 epochs (given as steps, so every machine sweeps the same runs): the data of the dropout rule
  in reverie.text.fit.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import (
    REPO,
    add_corpus_argument,
    checked_corpus,
    emit,
    machine_summary,
    run_worker,
    table,
    write_section,
)

SCRIPT = Path(__file__).resolve()
RESULTS = REPO / "docs" / "sweeps.json"  # every run's row, by sweep and configuration index
NANOGPT_CPU = 1.628  # nanoGPT's CPU recipe after 4.8 minutes (REFERENCE.md, AMD EPYC 2 cores)

TRANSFORMER = {"model": "transformer", "dropout": 0.0}
SWEEPS: dict[str, list[dict[str, Any]]] = {
    "transformer": [
        {**TRANSFORMER, "layers": 4, "hidden": 192, "heads": 4, "context": 128, "batch_size": 32, "lr": 2e-3},
        {**TRANSFORMER, "layers": 4, "hidden": 128, "heads": 4, "context": 128, "batch_size": 32, "lr": 3e-3},
        {**TRANSFORMER, "layers": 4, "hidden": 128, "heads": 4, "context": 64, "batch_size": 32, "lr": 3e-3},
        {**TRANSFORMER, "layers": 3, "hidden": 192, "heads": 4, "context": 64, "batch_size": 32, "lr": 3e-3},
        {**TRANSFORMER, "layers": 6, "hidden": 192, "heads": 6, "context": 128, "batch_size": 32, "lr": 2e-3},
        {**TRANSFORMER, "layers": 4, "hidden": 256, "heads": 4, "context": 128, "batch_size": 16, "lr": 2e-3},
        {
            **TRANSFORMER,
            "layers": 4,
            "hidden": 128,
            "heads": 4,
            "context": 128,
            "batch_size": 32,
            "lr": 3e-3,
            "compile": True,
        },
        {**TRANSFORMER, "layers": 4, "hidden": 128, "heads": 4, "context": 128, "batch_size": 32, "lr": 5e-3},
    ],
    # ~980 steps an epoch at the default 32x32 tokens a step
    "lstm-dropout": [
        {"dropout": dropout, "steps": steps} for steps in (1_500, 3_000, 6_000) for dropout in (0.0, 0.1, 0.2)
    ],
}


def worker_train(corpus: str, options_json: str, minutes: str) -> None:
    """One training run with `options` (JSON) for `minutes` (0: the options' own budget)."""
    import reverie

    options = json.loads(options_json)
    budget = {"minutes": float(minutes)} if float(minutes) > 0 and "steps" not in options else {}
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        result = reverie.train(
            corpus, Path(scratch) / "run", progress=False, sample_temperatures=(), **budget, **options
        )
        seconds = time.perf_counter() - started
        config = json.loads((Path(scratch) / "run" / "config.json").read_text())
    emit(
        {
            "val_loss": result.val_loss,
            "best_val_loss": result.best_val_loss,
            "steps": result.step,
            "epochs": round(result.epoch, 2),
            "seconds": round(seconds),
            "tokens_per_s": config["state"]["tokens"] / config["state"]["elapsed_s"],
            "dtype": config["state"]["dtype"],
        }
    )


def described(options: dict[str, Any]) -> str:
    return " ".join(f"--{key.replace('_', '-')} {value}" for key, value in options.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", nargs="?", choices=sorted(SWEEPS))
    parser.add_argument("--minutes", type=float, default=5.0, help="wall time of each run without --steps")
    parser.add_argument("--only", help="comma-separated indexes of the configurations to run")
    add_corpus_argument(parser)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_train(*args.worker)
        return
    if args.sweep is None:
        parser.error(f"name a sweep: {', '.join(sorted(SWEEPS))}")
    corpus, corpus_note = checked_corpus(args.corpus)
    configs = SWEEPS[args.sweep]
    chosen = [int(i) for i in args.only.split(",")] if args.only else range(len(configs))
    stored = _stored()
    results = stored.setdefault(args.sweep, {})
    machine = machine_summary()
    for index in chosen:
        options = configs[index]
        print(f"sweep {args.sweep} {index}: {described(options)} ...", file=sys.stderr, flush=True)
        r = run_worker(SCRIPT, str(corpus), json.dumps(options), str(args.minutes))
        row = [
            index,
            f"`{described(options)}`",
            f"{r['val_loss']:.3f}",
            f"{r['best_val_loss']:.3f}",
            r["steps"],
            r["epochs"],
            f"{r['seconds']} s",
            f"{r['tokens_per_s']:,.0f}",
            r["dtype"],
        ]
        results[str(index)] = {"row": row, "machine": machine, "date": time.strftime("%Y-%m-%d")}
        RESULTS.write_text(json.dumps(stored, indent=1) + "\n")  # kept after each run
        print(f"  -> {row}", file=sys.stderr, flush=True)
    machines: dict[str, list[str]] = {}
    for index, result in sorted(results.items(), key=lambda item: int(item[0])):
        machines.setdefault(result["machine"], []).append(index)
    body = [
        "\n".join(f"Machine of runs {', '.join(indexes)}: {line}" for line, indexes in machines.items()),
        corpus_note,
    ]
    budget = "its --steps" if args.sweep == "lstm-dropout" else f"{args.minutes:g} minutes"
    rows = [result["row"] for _, result in sorted(results.items(), key=lambda item: int(item[0]))]
    body.append(
        f"Each run trains for {budget} with `reverie train` (other options at their defaults, "
        "`--dtype auto`), in its own process; validation loss in nats/char, at the end and the best seen. "
        "Every run's figures are kept in docs/sweeps.json, so runs measured apart (`--only`) stand "
        "together.\n\n"
        + table(["#", "options", "val loss", "best", "steps", "epochs", "time", "tokens/s", "dtype"], rows)
    )
    if args.sweep == "transformer":
        body.append(f"For scale: nanoGPT's small CPU recipe {NANOGPT_CPU} (REFERENCE.md, cited).")
    else:
        body.append(
            "The budget is steps, so the losses do not depend on the machine's speed; time and tokens/s "
            "do, and include whatever else ran beside a run (see the load average)."
        )
    command = f"python benchmarks/sweep.py {args.sweep}" + (
        f" --minutes {args.minutes:g}" if args.minutes != 5 else ""
    )
    write_section(f"Sweep: {args.sweep}", "\n\n".join(body), command)
    print("wrote docs/benchmarks.md", file=sys.stderr)


def _stored() -> dict[str, dict[str, dict]]:
    try:
        return json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return {}


if __name__ == "__main__":
    main()
