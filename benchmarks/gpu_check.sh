#!/usr/bin/env bash
# One short run on a machine with a CUDA GPU: the GPU tests (tests/gpu), then short versions of the
# text benchmark (the default LSTM for 2 minutes, nanoGPT's shakespeare_char shape for 3, training
# speed by dtype, generation) and of the DeepDream benchmark on the GPU, whose sections ("... (CUDA)")
# it writes into docs/benchmarks.md beside the CPU's. About 8 minutes.
#
#   benchmarks/gpu_check.sh              # on the GPU machine, from the repository's root
#   benchmarks/gpu_check.sh --dry-run    # anywhere: the same steps on the CPU with tiny budgets,
#                                        # written to a scratch copy of the docs (what the tests run)
#
# It uses the machine's own python3 and torch (PYTHON=... to choose another) with the repository on
# PYTHONPATH: nothing is installed. The text benchmark trains on CORPUS (default: the full
# tiny-shakespeare beside the repository, else the excerpt in tests/data, which the report names).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
CORPUS=${CORPUS:-../shared/data/tinyshakespeare.txt}
[ -f "$CORPUS" ] || CORPUS=tests/data/tinyshakespeare-100k.txt

if [ "${1:-}" = "--dry-run" ]; then
  # nanoGPT's shape would take minutes a step on a CPU: the dry run trains the small transformer
  # instead, and leaves out the compiled rows (a minute of compiling each on a CPU)
  DEVICE=cpu MINUTES=0.05 RUNS=lstm,transformer STEPS=(--speed-steps 2 --warmup-steps 1 --no-compile) DREAM=(--quick)
  DOC="$(mktemp -d)/benchmarks.md"
  cp docs/benchmarks.md "$DOC"
else
  DEVICE=cuda MINUTES=2 RUNS=lstm,shakespeare-char:3 STEPS=(--speed-steps 100) DREAM=() DOC=docs/benchmarks.md
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA GPU here; use --dry-run')"
fi
started=$SECONDS
echo "== the GPU tests (skipped without CUDA)"
"$PYTHON" -m pytest -o addopts= -q -p no:cacheprovider tests/gpu
echo "== text on $DEVICE: $RUNS, $MINUTES minutes a run unless named ($((SECONDS - started)) s so far)"
"$PYTHON" benchmarks/text_bench.py --device "$DEVICE" --minutes "$MINUTES" --only quality,speed,generation \
  --runs "$RUNS" "${STEPS[@]}" --corpus "$CORPUS" --doc "$DOC"
echo "== DeepDream on $DEVICE ($((SECONDS - started)) s so far)"
"$PYTHON" benchmarks/dream_bench.py --device "$DEVICE" --only speed "${DREAM[@]}" --doc "$DOC"
echo "== done in $((SECONDS - started)) s; sections written to $DOC"
