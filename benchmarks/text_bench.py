"""Text generation benchmark: memory, quality per wall time, training speed by dtype, and generation
speed, each side by side with the book's way and the named peers. Each part writes its section of
docs/benchmarks.md ("Text: memory", "Text: quality", "Text: training speed", "Text: generation speed").

    python benchmarks/text_bench.py                    # everything (about 25 minutes on 2 cores)
    python benchmarks/text_bench.py --minutes 1 --only speed,generation   # a quick look
    python benchmarks/text_bench.py --device cuda --runs lstm,shakespeare-char:3   # on a GPU

- memory: peak RSS of training on tinyshakespeare the book's way (every 60-char window one-hot
  encoded up front as bool arrays, as chapter 8.1 does) against reverie's default (token ids, no
  one-hot arrays); and reverie on a 100 MB corpus (memory-mapped token file).
- quality: validation loss (nats/char, last 10% held out) after `--minutes` of training for each of
  `--runs` (NAME or NAME:MINUTES): reverie's default LSTM, `--preset book`, the transformer's
  defaults, and nanoGPT's shakespeare_char shape for GPUs; the book's program on Keras 3 + JAX and
  nanoGPT's CPU recipe cited from REFERENCE.md.
- speed: training tokens/s of the default LSTM and the transformer in float32, bfloat16 and `auto`
  (and the transformer compiled), each over `--speed-steps` steps after a warm-up.
- generation: chars/s for one stream with reverie's stateful sampling (KV cache for the transformer)
  against the book's re-run of the 60-char window per char, same trained model; and 32 streams in
  one batch; the transformer also with its one-token step compiled; speculative decoding with lookup
  drafts, and with heads drafts for the runs trained with --predict (`--runs ...,transformer-heads`),
  one stream and 32 (one pass verifies every stream's draft, each stream taking its own count);
  and int8 dynamic quantization (torch.ao.quantization.quantize_dynamic of the Linear and LSTM
  layers): one stream's chars/s and the next-token KL to the float32 model on held-out text.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from book_way import BOOK_WINDOW, rerun_window_tokens
from report import (
    add_corpus_argument,
    add_output_arguments,
    checked_corpus,
    emit,
    machine_summary,
    run_worker,
    section_title,
    table,
    write_section,
)

SCRIPT = Path(__file__).resolve()
MEMORY_STEPS = 20
BIG_CORPUS_MB = 100
GENERATE_CHARS = 400
KL_WINDOWS, KL_LENGTH = 16, 128  # held-out windows the int8 model's next-token KL is measured on
TRANSFORMER = {"model": "transformer"}
HEADS = {"predict": 3}  # the runs with extra heads, for --speculative heads
# the runs of the quality table: their options and how the table names them
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "lstm": ("`reverie train`", {}),
    "book": ("`reverie train --preset book`", {"preset": "book"}),
    "transformer": ("`reverie train --model transformer`", TRANSFORMER),
    "transformer-heads": ("`reverie train --model transformer --predict 3`", {**TRANSFORMER, **HEADS}),
    "lstm-heads": ("`reverie train --predict 3`", HEADS),
    "shakespeare-char": (
        (
            "nanoGPT's shakespeare_char shape: `--model transformer --layers 6 --heads 6 --hidden 384 "
            "--context 256 --batch-size 64 --dropout 0.2 --lr 1e-3`"
        ),
        {
            **TRANSFORMER,
            "layers": 6,
            "heads": 6,
            "hidden": 384,
            "context": 256,
            "batch_size": 64,
            "dropout": 0.2,
            "lr": 1e-3,
        },
    ),
}
# the rows of the speed table
SPEEDS: list[tuple[str, dict[str, Any]]] = [
    ("LSTM default", {"dtype": "float32"}),
    ("LSTM default", {"dtype": "bfloat16"}),
    ("LSTM default", {"dtype": "auto"}),
    ("transformer default", {**TRANSFORMER, "dtype": "float32"}),
    ("transformer default", {**TRANSFORMER, "dtype": "bfloat16"}),
    ("transformer default", {**TRANSFORMER, "dtype": "auto"}),
    ("transformer default", {**TRANSFORMER, "dtype": "auto", "compile": True}),
]
# the section of docs/benchmarks.md each part writes
SECTIONS = {
    "memory": "Text: memory",
    "quality": "Text: quality",
    "speed": "Text: training speed",
    "generation": "Text: generation speed",
}
KERAS_JAX = 1.757  # the book's program on Keras 3 + JAX, 5 minutes (REFERENCE.md, AMD EPYC 2 cores)
NANOGPT_CPU = 1.628  # nanoGPT's CPU recipe, 4.8 minutes (REFERENCE.md, the same machine)
NANOGPT_A100 = "5,000 iterations of 64x256 tokens in about 3 minutes on one A100 (about 455k tokens/s)"
STREAM_BOUND = (
    "One stream is bound by memory traffic: each stateful step reads every weight of the model once, while "
    "the re-run reads them once per 60-character window and is bound by arithmetic, so the speed-up is "
    "capped by the machine's balance of the two."
)


# ---- workers (each runs in its own process) ---------------------------------------------------


def worker_memory_book(corpus: str) -> None:
    """The book's way: one-hot encode every window up front, then train its model on it."""
    import torch

    text = Path(corpus).read_text(encoding="utf-8").lower()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    maxlen, step = BOOK_WINDOW, 3
    sentences = [text[i : i + maxlen] for i in range(0, len(text) - maxlen, step)]
    next_chars = [text[i + maxlen] for i in range(0, len(text) - maxlen, step)]
    x = np.zeros((len(sentences), maxlen, len(chars)), dtype=bool)
    y = np.zeros((len(sentences), len(chars)), dtype=bool)
    for i, sentence in enumerate(sentences):
        for t, char in enumerate(sentence):
            x[i, t, index[char]] = 1
        y[i, index[next_chars[i]]] = 1
    lstm = torch.nn.LSTM(len(chars), 128, batch_first=True)
    dense = torch.nn.Linear(128, len(chars))
    optimizer = torch.optim.RMSprop([*lstm.parameters(), *dense.parameters()], lr=0.01)
    order = np.random.default_rng(0).permutation(len(x))
    for batch in range(MEMORY_STEPS):
        rows = order[batch * 128 : (batch + 1) * 128]
        inputs = torch.from_numpy(x[rows]).float()
        targets = torch.from_numpy(y[rows].argmax(1))
        out, _ = lstm(inputs)
        loss = torch.nn.functional.cross_entropy(dense(out[:, -1]), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    emit({"windows": len(x), "onehot_mb": round((x.nbytes + y.nbytes) / 1e6)})


def worker_train(corpus: str, minutes: str, options_json: str, out: str = "", device: str = "cpu") -> None:
    """reverie's training with `options` (JSON) for a number of minutes, or MEMORY_STEPS steps when
    minutes is 0; the run is kept in `out` if given (for the generation measurement)."""
    import reverie

    budget = {"minutes": float(minutes)} if float(minutes) > 0 else {"steps": MEMORY_STEPS}
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(out) if out else Path(scratch) / "run"
        result = reverie.train(
            corpus,
            run,
            progress=False,
            sample_length=100,
            device=device,
            **budget,
            **json.loads(options_json),
        )
        config = json.loads((run / "config.json").read_text())
    state, options = config["state"], config["options"]
    emit(
        {
            "val_loss": result.val_loss,
            "best_val_loss": result.best_val_loss,
            "steps": result.step,
            "epochs": round(result.epoch, 2),
            "dtype": state["dtype"],
            "dropout": options["dropout"],
            "tokens_per_s": state["tokens"] / state["elapsed_s"],
        }
    )


def worker_speed(corpus: str, options_json: str, steps: str, warmup: str, device: str = "cpu") -> None:
    """Training tokens/s over `steps` steps after `warmup` steps (first steps, allocator, autotuning,
    compiling), from the run's metrics.csv."""
    import reverie

    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "run"
        total = int(warmup) + int(steps)
        reverie.train(
            corpus,
            run,
            progress=False,
            sample_temperatures=(),
            device=device,
            steps=total,
            **json.loads(options_json),
        )
        with open(run / "metrics.csv", newline="") as rows:
            steps_rows = [row for row in csv.DictReader(rows) if row["tokens"]]
        config = json.loads((run / "config.json").read_text())
    first, last = steps_rows[int(warmup) - 1], steps_rows[-1]
    tokens = float(last["tokens"]) - float(first["tokens"])
    seconds = float(last["elapsed_s"]) - float(first["elapsed_s"])
    emit({"tokens_per_s": tokens / seconds, "dtype": config["state"]["dtype"]})


def worker_generation(run_dir: str, corpus: str, device: str = "cpu", compile: str = "") -> None:
    """Chars/s: stateful (1 stream, 32 streams) and the book's window re-run (1 stream); with
    `compile`, the transformer's one-token step compiled (and warmed up first, both batch sizes)."""
    import torch

    import reverie
    from reverie.text import speculative
    from reverie.text.sampling import SamplingOptions, generate_tokens

    text_model = reverie.load(run_dir, device=device, compile=bool(compile))
    model = text_model.model
    prompt = text_model.encode_prompt(Path(corpus).read_text(encoding="utf-8")[:BOOK_WINDOW])
    torch.manual_seed(0)

    def rate(tokens_iter, streams: int) -> float:
        start = time.perf_counter()
        count = sum(1 for _ in tokens_iter)
        return count * streams / (time.perf_counter() - start)

    # warm-up: first calls, and for a transformer past a full cache and its re-run, where a compiled
    # step meets the shapes it recompiles for (no cache, a growing cache, a re-run one)
    warmup = 2 * text_model.model.config.context + 10 if text_model.model.config.kind == "transformer" else 20
    for streams in (1, 32):
        rate(
            generate_tokens(model, prompt, SamplingOptions(length=warmup, num_samples=streams, seed=0)),
            streams,
        )
    stateful = rate(generate_tokens(model, prompt, SamplingOptions(length=GENERATE_CHARS, seed=0)), 1)
    batched = rate(
        generate_tokens(model, prompt, SamplingOptions(length=GENERATE_CHARS, num_samples=32, seed=0)), 32
    )
    rerun = None
    if not compile:
        options = SamplingOptions(length=GENERATE_CHARS // 4, seed=0)
        rerun = rate(rerun_window_tokens(model, prompt, options), 1)
    drafted = {}
    for drafts in ("lookup", "heads") if model.config.predict > 1 else ("lookup",):
        for streams, key in ((1, drafts), (32, f"{drafts}32")):  # 32: each stream takes its own count
            tally = speculative.Tally()
            options = SamplingOptions(length=GENERATE_CHARS, num_samples=streams, seed=0, speculative=drafts)
            drafted[key] = rate(speculative.generate_tokens(model, prompt, options, tally), streams)
            drafted[f"{key}_tally"] = [tally.acceptance, tally.tokens_per_pass]
    int8 = None
    quantized = None if compile else int8_model(model)
    if quantized is not None:
        options = SamplingOptions(length=GENERATE_CHARS, seed=0)
        rate(generate_tokens(quantized, prompt, SamplingOptions(length=20, seed=0)), 1)  # warm-up
        held_out = Path(corpus).read_text(encoding="utf-8")[-KL_WINDOWS * (KL_LENGTH + 1) :]
        kl = next_token_kl(model, quantized, text_model.encode_prompt(held_out))
        int8 = {"chars_per_s": rate(generate_tokens(quantized, prompt, options), 1), "kl": kl}
    emit({"stateful": stateful, "rerun": rerun, "batch32": batched, **drafted, "int8": int8})


def int8_model(model: Any) -> Any:
    """A copy of `model` with its Linear and LSTM layers int8 (torch.ao's dynamic quantization:
    weights int8, activations quantized on the fly); a recurrent one steps with `forward` (the
    fused LSTM stepper reads float weights); None where no float parameter is left."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    from reverie.text.language_model import ForwardStepper

    quantized = quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear, torch.nn.LSTM}, dtype=torch.qint8)
    if next(quantized.parameters(), None) is None:  # the book's one-hot LSTM: no float layer left
        return None  # (reverie's sampling finds the device of a model from its parameters)
    if model.config.kind != "transformer":
        quantized.stepper = lambda state: ForwardStepper(quantized, state)
    return quantized


def next_token_kl(model: Any, quantized: Any, ids: list[int]) -> float:
    """Mean KL(float32 || int8) of the next-token distributions, nats, over windows of `ids`."""
    import torch

    windows = torch.as_tensor(ids[: KL_WINDOWS * KL_LENGTH]).view(KL_WINDOWS, KL_LENGTH)
    with torch.inference_mode():
        exact = model(windows)[0].float().log_softmax(-1)
        approximate = quantized(windows)[0].float().log_softmax(-1)
    return float((exact.exp() * (exact - approximate)).sum(-1).mean())


WORKERS = {
    "memory-book": worker_memory_book,
    "train": worker_train,
    "speed": worker_speed,
    "generation": worker_generation,
}


# ---- the benchmark ----------------------------------------------------------------------------


def big_corpus(corpus: Path, directory: Path) -> Path:
    """A ~100 MB corpus made of tinyshakespeare repeated (the text's content matters little here)."""
    path = directory / "big.txt"
    chunk = corpus.read_text(encoding="utf-8")
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(chunk for _ in range(BIG_CORPUS_MB * 1_000_000 // len(chunk) + 1))
    return path


def parsed_runs(spec: str, minutes: float) -> list[tuple[str, float]]:
    """`--runs lstm,shakespeare-char:3` as (name, minutes) pairs."""
    runs = []
    for item in spec.split(","):
        name, _, own = item.partition(":")
        if name not in RUNS:
            sys.exit(f"benchmark: unknown run {name!r}; choose from {', '.join(RUNS)}")
        runs.append((name, float(own) if own else minutes))
    return runs


def memory_section(corpus: Path, tmp: Path) -> str:
    print("memory ...", file=sys.stderr)
    book = run_worker(SCRIPT, "memory-book", str(corpus))
    ours = run_worker(SCRIPT, "train", str(corpus), "0", "{}")
    big = run_worker(SCRIPT, "train", str(big_corpus(corpus, tmp)), "0", "{}")
    ratio = ours["peak_rss_mb"] / book["peak_rss_mb"]
    rows = [
        [
            "book's way, tinyshakespeare",
            f"{book['peak_rss_mb']:,} MB",
            f"{book['windows']:,} one-hot windows = {book['onehot_mb']:,} MB of bool arrays",
        ],
        [
            "reverie default, tinyshakespeare",
            f"{ours['peak_rss_mb']:,} MB",
            f"{ratio:.2f}x the book's way (target at most 1/3)",
        ],
        [
            f"reverie default, {BIG_CORPUS_MB} MB corpus",
            f"{big['peak_rss_mb']:,} MB",
            "memory-mapped token file (target under 1.5 GB)",
        ],
    ]
    return (
        "### Peak memory while training (RSS, whole process)\n\n"
        + table(["run", "peak RSS", "notes"], rows)
        + f"\n\nEach run trains {MEMORY_STEPS} steps in its own process."
    )


def quality_section(trained: dict[str, dict[str, Any]], minutes: dict[str, float]) -> str:
    rows = [
        [
            RUNS[name][0],
            f"{minutes[name]:g} min",
            f"{r['val_loss']:.3f}",
            f"{r['best_val_loss']:.3f}",
            f"{r['val_loss'] / np.log(2):.3f}",
            r["steps"],
            r["epochs"],
            f"{r['tokens_per_s']:,.0f}",
            r["dtype"],
            f"{r['dropout']:g}",
        ]
        for name, r in trained.items()
    ]
    notes = [
        (
            f"For scale, cited from REFERENCE.md (AMD EPYC, 2 cores): the book's program on Keras 3 + JAX "
            f"{KERAS_JAX} after 5 minutes; nanoGPT's small CPU recipe (4 layers x 4 heads x 128, context 64, "
            f"batch 12) {NANOGPT_CPU} after 4.8 minutes."
        ),
    ]
    if "lstm" in trained:
        best = trained["lstm"]["val_loss"]
        notes.append(f"Target for the default: at most 1.40 nats/char: **{best:.3f}**.")
    if "transformer" in trained:
        gain = NANOGPT_CPU - trained["transformer"]["val_loss"]
        notes.append(
            f"Target for the transformer: at least 0.15 better than nanoGPT's CPU recipe: **{gain:+.3f}**."
        )
    if "shakespeare-char" in trained:
        notes.append(
            "Target for nanoGPT's shakespeare_char shape in 3 minutes on a GPU: at most 1.47: "
            f"**{trained['shakespeare-char']['val_loss']:.3f}**; nanoGPT's own run: {NANOGPT_A100}."
        )
    header = ["run", "budget", "val loss (nats/char)", "best", "bits/char", "steps", "epochs", "tokens/s"]
    return (
        "### Validation loss after a fixed wall time\n\n"
        + table([*header, "dtype (auto)", "dropout"], rows)
        + "\n\n"
        + " ".join(notes)
    )


def speed_section(corpus: Path, steps: int, warmup: int, device: str, compile: bool) -> str:
    rows, measured = [], {}
    for name, options in SPEEDS:
        if options.get("compile") and not compile:
            continue
        print(f"speed {name} {options} ...", file=sys.stderr)
        r = run_worker(SCRIPT, "speed", str(corpus), json.dumps(options), str(steps), str(warmup), device)
        way = options["dtype"] + (" --compile" if options.get("compile") else "")
        measured[(name, way)] = r["tokens_per_s"]
        chosen = f"auto: {r['dtype']}" if options["dtype"] == "auto" else r["dtype"]
        rows.append([name, way, chosen, f"{r['tokens_per_s']:,.0f}"])
    notes = []
    for name in dict.fromkeys(n for n, _ in SPEEDS):
        by_hand = max(measured[(name, "float32")], measured[(name, "bfloat16")])
        notes.append(f"{name}: auto {measured[(name, 'auto')] / by_hand:.0%} of the better by hand")
    return (
        f"### Training speed (tokens/s over {steps} steps after {warmup} of warm-up)\n\n"
        + table(["model", "--dtype", "ran in", "tokens/s"], rows)
        + "\n\nTarget: `auto` at least the better of float32 and bfloat16 measured by hand (within the "
        "run-to-run noise of a few percent): " + "; ".join(notes) + "."
    )


def generation_section(tmp: Path, names: list[str], corpus: Path, device: str, compile: bool) -> str:
    rows: list[list[str]] = []
    quantized: list[list[str]] = []
    for name in names:
        ways = [""] + (["compile"] if compile and RUNS[name][1].get("model") == "transformer" else [])
        for way in ways:
            g = run_worker(SCRIPT, "generation", str(tmp / name), str(corpus), device, way)
            rerun = g["rerun"]
            rows.append(
                [
                    name + (" (--compile)" if way else ""),
                    f"{g['stateful']:,.0f}",
                    f"{rerun:,.0f}" if rerun else "",
                    f"{g['stateful'] / rerun:.1f}x" if rerun else "",
                    f"{g['batch32']:,.0f}",
                    *(speculated(g, drafts) for drafts in ("lookup", "heads")),
                    *(speculated(g, drafts, "batch32") for drafts in ("lookup32", "heads32")),
                ]
            )
            if g["int8"]:
                int8 = g["int8"]["chars_per_s"]
                ratio = f"{int8 / g['stateful']:.2f}x"
                quantized.append(
                    [name, f"{g['stateful']:,.0f}", f"{int8:,.0f} ({ratio})", f"{g['int8']['kl']:.2g}"]
                )
    header = [
        "model",
        "stateful, 1 stream",
        "book's window re-run (60), 1 stream",
        "speed-up",
        "stateful, 32 streams (aggregate)",
        "speculative lookup, 1 stream (against stateful); drafted tokens taken, tokens per pass",
        "speculative heads (--predict 3), the same",
        "speculative lookup, 32 streams (against stateful 32), the same",
        "speculative heads, 32 streams, the same",
    ]
    int8_header = ["model", "float32, 1 stream", "int8, 1 stream (against float32)", "next-token KL (nats)"]
    return (
        f"### Generation speed (chars/s, {device}, temperature 1.0)\n\n"
        + table(header, rows)
        + "\n\nTarget: stateful at least 30x the window re-run for the same model. "
        + STREAM_BOUND
        + " The transformer's stateful step reads its KV cache besides its weights. Speculative lookup"
        + " and heads (reverie.text.speculative) sample the same distribution; targets: at least 2x"
        + " stateful for the transformer, 1.5x for the LSTM. Timings on a shared machine are noisy:"
        + " the load average above was taken at the start."
        + f"\n\n### int8 dynamic quantization (chars/s, {device}, temperature 1.0)\n\n"
        + table(int8_header, quantized)
        + "\n\n`torch.ao.quantization.quantize_dynamic` of the Linear and LSTM layers (the transformer's"
        + " output layer is tied to its embedding and stays float32; the LSTM steps with `forward`, as"
        + f" its fused stepper reads float weights); the KL is the mean over {KL_WINDOWS} held-out windows"
        + f" of {KL_LENGTH} characters. The bound for adopting int8: faster than float32 with a KL under"
        + f" {INT8_KL_BOUND} nats; rows within it here: {adopted(quantized)}. Nothing is switched on by"
        + " default from one run on a shared machine, and torch.ao.quantization is deprecated, to be"
        + " removed from PyTorch."
    )


INT8_KL_BOUND = 0.01  # nats per token: the next-token KL to float32 an int8 model may have to be adopted


def speculated(result: dict[str, Any], drafts: str, plain: str = "stateful") -> str:
    """A table cell: chars/s with `drafts` and its speed-up over `plain`, the acceptance and tokens
    per pass (a stream's, where a pass reads several)."""
    if drafts not in result:
        return ""
    speed, (acceptance, per_pass) = result[drafts], result[f"{drafts}_tally"]
    return f"{speed:,.0f} ({speed / result[plain]:.2f}x); {acceptance:.0%}, {per_pass:.2f}"


def adopted(rows: list[list[str]]) -> str:
    """Which int8 rows pass: faster than float32 and under the KL bound ("none" when none)."""
    passing = [
        row[0] for row in rows if float(row[2].split("(")[1][:-2]) > 1 and float(row[3]) < INT8_KL_BOUND
    ]
    return ", ".join(passing) if passing else "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget of each quality run")
    parser.add_argument("--only", default="memory,quality,speed,generation")
    parser.add_argument(
        "--runs",
        default="lstm,book,transformer",
        help=f"quality runs, NAME or NAME:MINUTES ({', '.join(RUNS)})",
    )
    parser.add_argument("--speed-steps", type=int, default=150, help="timed steps of each speed row")
    parser.add_argument("--warmup-steps", type=int, default=30, help="untimed steps before them (at least 1)")
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="leave out the rows with --compile (a minute of compiling each)",
    )
    add_corpus_argument(parser)
    add_output_arguments(parser)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        WORKERS[args.worker[0]](*args.worker[1:])
        return
    corpus, corpus_note = checked_corpus(args.corpus)
    parts = set(args.only.split(","))
    runs = parsed_runs(args.runs, args.minutes)
    command = " ".join(
        ["python benchmarks/text_bench.py"]
        + ([f"--minutes {args.minutes:g}"] if args.minutes != 5 else [])
        + ([f"--only {args.only}"] if args.only != parser.get_default("only") else [])
        + ([f"--runs {args.runs}"] if args.runs != parser.get_default("runs") else [])
        + ([f"--speed-steps {args.speed_steps}"] if args.speed_steps != 150 else [])
        + ([f"--warmup-steps {args.warmup_steps}"] if args.warmup_steps != 30 else [])
        + (["--no-compile"] if args.no_compile else [])
        + ([f"--device {args.device}"] if args.device != "cpu" else [])
    )
    head = f"Machine: {machine_summary(args.device)}\n\n{corpus_note}\n\n"

    def write(part: str, body: str) -> None:  # each part its own section, so parts run apart stand together
        title = section_title(SECTIONS[part], args.device)
        write_section(title, head + body, command.replace("--only " + args.only, "--only " + part), args.doc)

    if "--only" not in command:
        command += " --only " + args.only
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "memory" in parts:
            write("memory", memory_section(corpus, tmp))
        trained: dict[str, dict[str, Any]] = {}
        if parts & {"quality", "generation"}:
            for name, minutes in runs:
                print(f"training {name} for {minutes:g} min ...", file=sys.stderr)
                options = json.dumps(RUNS[name][1])
                trained[name] = run_worker(
                    SCRIPT, "train", str(corpus), str(minutes), options, str(tmp / name), args.device
                )
        if "quality" in parts:
            write("quality", quality_section(trained, dict(runs)))
        if "speed" in parts:
            compile = not args.no_compile
            write(
                "speed",
                speed_section(corpus, args.speed_steps, max(args.warmup_steps, 1), args.device, compile),
            )
        if "generation" in parts:
            write(
                "generation", generation_section(tmp, list(trained), corpus, args.device, not args.no_compile)
            )
    print(f"wrote {args.doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
