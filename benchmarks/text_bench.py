"""Text generation benchmark: memory, quality per wall time, and generation speed, each side by
side with the book's way. Writes the "Text generation" section of docs/benchmarks.md.

    python benchmarks/text_bench.py                    # everything (about 15 minutes on 2 cores)
    python benchmarks/text_bench.py --minutes 1 --only memory,generation   # a quick look

- memory: peak RSS of training on tinyshakespeare the book's way (every 60-char window one-hot
  encoded up front as bool arrays, as chapter 8.1 does) against reverie's default (token ids, no
  one-hot arrays); and reverie on a 100 MB corpus (memory-mapped token file).
- quality: validation loss (nats/char, last 10% held out) after `--minutes` of training, reverie's
  defaults against `--preset book`.
- generation: chars/s for one stream with reverie's stateful sampling against the book's re-run of
  the 60-char window per char, same trained model; and 32 streams in one batch.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

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
STREAM_BOUND = (
    "One stream is bound by memory traffic: each stateful step reads every weight of the model once, while "
    "the re-run reads them once per 60-character window and is bound by arithmetic, so the speed-up is "
    "capped "
    "by the machine's balance of the two."
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


def worker_train(corpus: str, minutes: str, preset: str, out: str = "", device: str = "cpu") -> None:
    """reverie's training (defaults or a preset) for a number of minutes, or MEMORY_STEPS steps when
    minutes is 0; the run is kept in `out` if given (for the generation measurement)."""
    import reverie

    budget = {"minutes": float(minutes)} if float(minutes) > 0 else {"steps": MEMORY_STEPS}
    extra = {"preset": preset} if preset != "default" else {}
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(out) if out else Path(scratch) / "run"
        result = reverie.train(
            corpus, run, progress=False, sample_length=100, device=device, **budget, **extra
        )
        emit({"val_loss": result.val_loss, "steps": result.step, "epochs": round(result.epoch, 3)})


def worker_generation(run_dir: str, corpus: str, device: str = "cpu") -> None:
    """Chars/s: stateful (1 stream, 32 streams) and the book's window re-run (1 stream)."""
    import torch

    import reverie
    from reverie.text.sampling import SamplingOptions, generate_tokens

    text_model = reverie.load(run_dir, device=device)
    model = text_model.model
    prompt = text_model.encode_prompt(Path(corpus).read_text(encoding="utf-8")[:BOOK_WINDOW])
    torch.manual_seed(0)

    def rate(tokens_iter, streams: int) -> float:
        start = time.perf_counter()
        count = sum(1 for _ in tokens_iter)
        return count * streams / (time.perf_counter() - start)

    stateful = rate(generate_tokens(model, prompt, SamplingOptions(length=GENERATE_CHARS, seed=0)), 1)
    rerun = rate(rerun_window_tokens(model, prompt, SamplingOptions(length=GENERATE_CHARS // 4, seed=0)), 1)
    batched = rate(
        generate_tokens(model, prompt, SamplingOptions(length=GENERATE_CHARS, num_samples=32, seed=0)), 32
    )
    emit({"stateful": stateful, "rerun": rerun, "batch32": batched})


WORKERS = {
    "memory-book": worker_memory_book,
    "train": worker_train,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget for the quality runs")
    parser.add_argument("--only", default="memory,quality,generation")
    add_corpus_argument(parser)
    add_output_arguments(parser)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        WORKERS[args.worker[0]](*args.worker[1:])
        return
    corpus, corpus_note = checked_corpus(args.corpus)
    parts = set(args.only.split(","))
    command = (
        "python benchmarks/text_bench.py"
        + (f" --minutes {args.minutes:g}" if args.minutes != 5 else "")
        + (f" --only {args.only}" if parts != {"memory", "quality", "generation"} else "")
        + (f" --device {args.device}" if args.device != "cpu" else "")
    )
    sections = [f"Machine: {machine_summary(args.device)}", corpus_note]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "memory" in parts:
            print("memory ...", file=sys.stderr)
            book = run_worker(SCRIPT, "memory-book", str(corpus))
            ours = run_worker(SCRIPT, "train", str(corpus), "0", "default")
            big = run_worker(SCRIPT, "train", str(big_corpus(corpus, tmp)), "0", "default")
            ratio = ours["peak_rss_mb"] / book["peak_rss_mb"]
            sections.append(
                "### Peak memory while training (RSS, whole process)\n\n"
                + table(
                    ["run", "peak RSS", "notes"],
                    [
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
                    ],
                )
                + f"\n\nEach run trains {MEMORY_STEPS} steps in its own process."
            )
        runs = {}
        if "quality" in parts or "generation" in parts:
            for name in ("default", "book"):
                print(f"training {name} for {args.minutes} min ...", file=sys.stderr)
                runs[name] = run_worker(
                    SCRIPT, "train", str(corpus), str(args.minutes), name, str(tmp / name), args.device
                )
        if "quality" in parts:
            sections.append(
                f"### Validation loss after {args.minutes:g} minutes of training\n\n"
                + table(
                    ["run", "val loss (nats/char)", "bits/char", "steps", "epochs"],
                    [
                        [
                            f"`{'reverie train' if n == 'default' else 'reverie train --preset book'}`",
                            f"{r['val_loss']:.3f}",
                            f"{r['val_loss'] / np.log(2):.3f}",
                            r["steps"],
                            r["epochs"],
                        ]
                        for n, r in runs.items()
                    ],
                )
                + "\n\nTarget for the default: at most 1.40 nats/char. For scale (REFERENCE.md): "
                "the book's run "
                "1.79, nanoGPT's small CPU transformer 1.62 at the same budget."
            )
        if "generation" in parts:
            rows = []
            for name in runs:
                g = run_worker(SCRIPT, "generation", str(tmp / name), str(corpus), args.device)
                rows.append(
                    [
                        name,
                        f"{g['stateful']:,.0f}",
                        f"{g['rerun']:,.0f}",
                        f"{g['stateful'] / g['rerun']:.1f}x",
                        f"{g['batch32']:,.0f}",
                    ]
                )
            sections.append(
                "### Generation speed (chars/s, CPU, temperature 1.0)\n\n"
                + table(
                    [
                        "model",
                        "stateful, 1 stream",
                        "book's window re-run (60), 1 stream",
                        "speed-up",
                        "stateful, 32 streams (aggregate)",
                    ],
                    rows,
                )
                + "\n\nTarget: stateful at least 30x the window re-run for the same model. "
                + STREAM_BOUND
            )
    write_section(section_title("Text generation", args.device), "\n\n".join(sections), command, args.doc)
    print(f"wrote {args.doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
