"""Fine-tuning benchmark: a shipped model fine-tuned on a small text against a model trained on it
from scratch for the same time. Writes the "Fine-tuning against training from scratch" section of
docs/benchmarks.md (or --doc).

    python benchmarks/finetune_bench.py                        # --base english, 1 and 3 minutes (~40 min)
    python benchmarks/finetune_bench.py --base runs/mine --minutes 0.1 --text a.txt:5000 --doc /tmp/f.md
    python benchmarks/finetune_bench.py --minutes 1 --variant layer_lr=0.5 layer_lr=0 --doc /tmp/f.md

Each text (PATH[:CHARS], its first CHARS characters; the defaults are texts that no shipped model is
trained on: Sean Burke's Perl Journal article on localization (an essay), the GPL-3 licence and
perldiag's catalogue of Perl's messages, which a Debian system holds, 20, 20 and 50 KB, and 20 KB of
Shakespeare's plays from the repository's test data, verse and dialogue unlike the english base's
text) is split 90/10 by reverie itself (validation is the tail 10%). For each number of --minutes, two
runs on it: `reverie.train(text, base=BASE, minutes=M)` (fine-tuning's own defaults,
reverie.text.options.FINETUNE_DEFAULTS) and `reverie.train(text, minutes=M)` (from scratch, the
default settings); each `--variant layer_lr=0.5,lr=0.002` adds a fine-tuned run with those options
over the defaults, a row each, against the same from-scratch run (how fine-tuning's defaults are
chosen). Their best validation loss is reported in nats per character: nats per token times the
validation tail's tokens per character, so tokenizations compare. Target (issue 13): fine-tuning at
least 0.5 nats/char better than from scratch at 1 minute. One sample of each at temperature 0.5 (the
first text, the shortest budget) shows whether the text's style is kept.

The base must exist: a shipped model's name (`reverie models` lists those built) or a run
directory; a missing one is refused in one line (exit 2).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from report import REPO, machine_summary, section_title, table, write_section

import reverie
from reverie.errors import ReverieError
from reverie.text import evaluation, pretrained
from reverie.text.corpus import split_ids

DOC = REPO / "docs" / "benchmarks.md"
TITLE = "Fine-tuning against training from scratch"
DEFAULT_TEXTS = [
    "/usr/share/perl/5.36.0/Locale/Maketext/TPJ13.pod:20000",
    "/usr/share/common-licenses/GPL-3:20000",
    "/usr/share/perl/5.36.0/pod/perldiag.pod:50000",
    f"{REPO / 'tests' / 'data' / 'tinyshakespeare-100k.txt'}:20000",  # verse and dialogue: unlike the base
]
TARGET_NATS = 0.5  # fine-tuning's advantage at the shortest budget, in nats/char
VAL_FRACTION = 0.1
SAMPLE_CHARS = 300


@dataclass
class Text:
    """A held-out text: its name and its characters."""

    name: str
    text: str


def read_text(spec: str) -> Text:
    """PATH[:CHARS] as a Text, refused in one line when the file is missing or not UTF-8."""
    path, _, chars = spec.partition(":")
    file = Path(path)
    if not file.is_file():
        raise ReverieError(f"--text {spec}: {path} does not exist; give other texts with --text PATH[:CHARS]")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ReverieError(f"--text {spec}: {path} is not UTF-8 text") from None
    if chars:
        text = text[: int(chars)]
    return Text(f"{file.name} ({len(text) / 1000:.0f} K chars)", text)


def nats_per_char(run: Path, nats_per_token: float, text: Text) -> float:
    """A run's validation loss in nats per character: per token, times the tokens per character of
    the validation tail the run held out (bytes per character at byte level, about 1/3 at bpe level)."""
    tokenizer = reverie.load(run).tokenizer
    val_ids = split_ids(tokenizer.encode_array(text.text), VAL_FRACTION)[1]
    return evaluation.nats_per_char(nats_per_token, tokenizer, val_ids)


def parse_variant(spec: str) -> dict[str, Any]:
    """NAME=VALUE[,NAME=VALUE...] (training options, as the API spells them) as keywords, each value
    read as a number where it is one: `layer_lr=0.5,lr=0.002`."""
    options: dict[str, Any] = {}
    for item in spec.split(","):
        name, equals, value = item.partition("=")
        if not (name and equals and value):
            raise ReverieError(f"--variant {spec}: write NAME=VALUE[,NAME=VALUE...], e.g. layer_lr=0.5")
        try:
            options[name] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            options[name] = value
    return options


def train(
    text: Path, out: Path, minutes: float, args: argparse.Namespace, base: str | None, **options: Any
) -> float:
    """The best validation loss (nats/token) of `minutes` of training, from `base` or from scratch."""
    if base:
        options["base"] = base
    result = reverie.train(
        str(text),
        out,
        minutes=minutes,
        device=args.device,
        dtype=args.dtype,
        progress=False,
        sample_temperatures=(),
        **options,
    )
    if result.interrupted:  # Ctrl-C or SIGTERM ended the run: the benchmark ends with it
        print(f"finetune_bench.py: {result.signal or 'stopped'}: nothing written", file=sys.stderr)
        raise SystemExit(result.exit_code)
    assert result.best_val_loss is not None, "no validation tail"
    return result.best_val_loss


def sample_from(run: Path, text: Text, length: int) -> tuple[str, str]:
    """The prompt (the start of the text's validation tail, to a word's end) and what the run
    writes after it at temperature 0.5."""
    tail = text.text[len(text.text) - round(len(text.text) * VAL_FRACTION) :]
    prompt = tail[: tail.find(" ", 20) + 1 or 20]
    return prompt, reverie.load(run).generate(prompt, length=length, temperature=0.5, seed=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="english", help="shipped model or run to fine-tune (english)")
    parser.add_argument(
        "--minutes", type=float, nargs="+", default=[1.0, 3.0], help="budgets to compare (1 3)"
    )
    parser.add_argument(
        "--text", nargs="+", default=DEFAULT_TEXTS, metavar="PATH[:CHARS]", help="held-out texts"
    )
    parser.add_argument(
        "--variant",
        nargs="+",
        default=[],
        metavar="NAME=VALUE[,...]",
        help="also fine-tune with these options over fine-tuning's defaults (a row each): layer_lr=0.5",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to train (cpu)")
    parser.add_argument("--dtype", default="auto", help="both ways' --dtype (auto)")
    parser.add_argument(
        "--sample-chars", type=int, default=SAMPLE_CHARS, help=f"length of each sample ({SAMPLE_CHARS})"
    )
    parser.add_argument(
        "--doc", type=Path, default=DOC, help="the markdown file for the section (docs/benchmarks.md)"
    )
    args = parser.parse_args(argv)
    try:
        pretrained.locate(args.base, flag="--base")  # a shipped model's files checked, or a run
        texts = [read_text(spec) for spec in args.text]
        variants = {"defaults": {}, **{spec: parse_variant(spec) for spec in args.variant}}
    except ReverieError as exc:
        print(f"finetune_bench.py: {exc}", file=sys.stderr)
        return 2

    machine = machine_summary(args.device)
    rows, samples = [], []
    advantages: list[float] = []
    with tempfile.TemporaryDirectory(prefix="finetune-bench-") as work:
        root = Path(work)
        for t_index, text in enumerate(texts):
            corpus = root / f"text{t_index}.txt"
            corpus.write_text(text.text, encoding="utf-8")
            for minutes in args.minutes:
                scratch_out = root / f"text{t_index}-{minutes:g}-scratch"
                scratch = nats_per_char(scratch_out, train(corpus, scratch_out, minutes, args, None), text)
                first = t_index == 0 and minutes == args.minutes[0]
                for index, (label, options) in enumerate(variants.items()):
                    out = root / f"text{t_index}-{minutes:g}-tuned{index}"
                    tuned = nats_per_char(out, train(corpus, out, minutes, args, args.base, **options), text)
                    gain = scratch - tuned
                    if minutes == args.minutes[0] and label == "defaults":
                        advantages.append(gain)
                    if first and label == "defaults":
                        samples.append(("fine-tuned", *sample_from(out, text, args.sample_chars)))
                    row = [text.name, f"{minutes:g}", label, f"{tuned:.3f}", f"{scratch:.3f}", f"{gain:+.3f}"]
                    rows.append(row)
                    print(" | ".join(row), flush=True)
                if first:
                    samples.append(("scratch", *sample_from(scratch_out, text, args.sample_chars)))
    met = all(gain >= TARGET_NATS for gain in advantages)
    shortest = f"{args.minutes[0]:g} minute(s)"
    gains = ", ".join(f"{gain:+.2f}" for gain in advantages)
    verdict = (
        f"Target (fine-tuning at least {TARGET_NATS} nats/char better than from scratch at {shortest}, "
        f"every text): {'met' if met else 'not met'} (the gains: {gains})."
    )
    body = (
        f"{machine}\n\nBase: `{args.base}`. Validation: the tail {VAL_FRACTION:.0%} of each text, best "
        "validation loss of the run, in nats per character (lower is better).\n\n"
        + table(["text", "minutes", "fine-tuning", "fine-tuned", "from scratch", "fine-tuning's gain"], rows)
        + f"\n\n{verdict}\n\nSamples at temperature 0.5 after {shortest} on {texts[0].name}, from the "
        "start of its validation tail:\n\n"
        + "\n\n".join(f"{way}:\n\n```\n{prompt}{text}\n```" for way, prompt, text in samples)
    )
    command = "python benchmarks/finetune_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_section(section_title(TITLE, args.device), body, command.strip(), args.doc)
    print(body)
    return 0


if __name__ == "__main__":
    torch.manual_seed(0)
    sys.exit(main())
