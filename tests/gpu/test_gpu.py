"""On a CUDA GPU: training in bfloat16, the cuDNN LSTM against the CPU's, generation against the CPU's,
a dream step, NCCL, and `--dtype auto`. Marked `gpu` and skipped where there is no CUDA (the only
skips of the suite); benchmarks/gpu_check.sh runs them where there is."""

from __future__ import annotations

import pytest
import torch
from helpers import shakespeare_slice

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CUDA = torch.device("cuda")
TINY = {"hidden": 64, "layers": 2, "embed": 16, "seq_len": 32, "batch_size": 16, "progress": False}


def test_a_training_run_on_cuda_in_bfloat16_learns(tmp_path):
    import reverie

    corpus = str(shakespeare_slice(tmp_path / "s.txt", 30_000))
    result = reverie.train(
        corpus,
        tmp_path / "run",
        steps=60,
        sample_every=30,
        device="cuda",
        dtype="bfloat16",
        sample_temperatures=(),
        **TINY,
    )
    assert result.val_loss is not None and result.val_loss < 3.5  # well below a uniform guess over ~60 chars
    model = reverie.load(tmp_path / "run", device="cuda")
    assert model.device.type == "cuda" and len(model.generate("A", length=20, seed=0)) == 20


def test_the_cudnn_lstm_equals_the_cpu_lstm():
    from reverie.text.language_model import ModelConfig
    from reverie.text.models import build_model

    torch.manual_seed(0)
    cpu = build_model(ModelConfig(kind="lstm", vocab_size=40, embed=16, hidden=96, layers=2)).eval()
    gpu = build_model(ModelConfig(kind="lstm", vocab_size=40, embed=16, hidden=96, layers=2)).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu.to(CUDA)
    tokens = torch.randint(40, (4, 50), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, _ = cpu(tokens)
        got, _ = gpu(tokens.to(CUDA))
    torch.testing.assert_close(got.cpu(), expected, atol=1e-4, rtol=1e-4)


def test_greedy_generation_on_cuda_equals_the_cpus(tmp_path):
    import reverie

    corpus = str(shakespeare_slice(tmp_path / "s.txt", 20_000))
    reverie.train(
        corpus, tmp_path / "run", steps=40, device="cpu", dtype="float32", sample_temperatures=(), **TINY
    )
    on_cpu = reverie.load(tmp_path / "run", device="cpu").generate("ROMEO:", length=60, temperature=0)
    on_gpu = reverie.load(tmp_path / "run", device="cuda").generate("ROMEO:", length=60, temperature=0)
    assert on_gpu == on_cpu


def test_a_dream_step_on_cuda_raises_the_objective():
    import numpy as np

    import reverie

    dreamer = reverie.load_dreamer("efficientnet_lite0", device="cuda")
    image = (np.random.default_rng(0).random((96, 96, 3)) * 255).astype(np.uint8)
    result = dreamer.octaves(image, layers="block8", octaves=1, iterations=3, progress=False)
    assert result.losses[0][-1] > result.losses[0][0]


def test_nccl_averages_gradients_across_a_one_process_group():
    import os

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from reverie import distributed

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(distributed.free_port())})
    dist.init_process_group(distributed.backend(), rank=0, world_size=1)
    try:
        assert dist.get_backend(dist.group.WORLD) in ("nccl", "cpu:gloo,cuda:nccl")
        model = DistributedDataParallel(torch.nn.Linear(8, 2).to(CUDA), device_ids=[0])
        model(torch.ones(4, 8, device=CUDA)).sum().backward()
        tensor = torch.ones(3, device=CUDA)
        dist.all_reduce(tensor)
        assert tensor.tolist() == [1.0, 1.0, 1.0]
    finally:
        dist.destroy_process_group()


def test_dtype_auto_chooses_bfloat16_on_a_gpu_that_runs_it_fast(tmp_path, capsys):
    import reverie

    if torch.cuda.get_device_capability(CUDA)[0] < 8:
        pytest.skip("bfloat16 is emulated before compute capability 8")
    corpus = str(shakespeare_slice(tmp_path / "s.txt", 30_000))
    options = {**TINY, "hidden": 1024, "batch_size": 64, "seq_len": 128}
    reverie.train(
        corpus, tmp_path / "run", steps=2, device="cuda", dtype="auto", sample_temperatures=(), **options
    )
    assert "reverie: --dtype auto: bfloat16" in capsys.readouterr().err
