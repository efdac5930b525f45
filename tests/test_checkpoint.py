"""Checkpoint files: atomic safetensors + JSON, nested tensor structures, clean refusals."""

import json
import os
import stat

import pytest
import torch

from reverie import checkpoint
from reverie.errors import ReverieError


def test_tensors_round_trip(tmp_path):
    tensors = {"w": torch.arange(6.0).reshape(2, 3), "rng": torch.get_rng_state()}
    checkpoint.save_tensors(tmp_path / "m.safetensors", tensors)
    loaded = checkpoint.load_tensors(tmp_path / "m.safetensors")
    assert torch.equal(loaded["w"], tensors["w"]) and torch.equal(loaded["rng"], tensors["rng"])
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left


def test_every_file_gets_a_plain_files_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        checkpoint.save_tensors(tmp_path / "m.safetensors", {"w": torch.zeros(2)})
        checkpoint.save_json(tmp_path / "config.json", {"step": 1})
        checkpoint.write_text_atomic(tmp_path / "notes.txt", "hi")
    finally:
        os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"m.safetensors": 0o644, "config.json": 0o644, "notes.txt": 0o644}


def test_split_join_optimizer_state():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    structure, tensors = checkpoint.split_tensors(optimizer.state_dict(), "optim")
    json.dumps(structure)  # the rest is plain JSON
    restored = checkpoint.join_tensors(json.loads(json.dumps(structure)), tensors)
    fresh = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters())
    fresh.load_state_dict(restored)
    assert torch.equal(
        fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )
    assert fresh.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]


def test_json_version_checked(tmp_path):
    path = tmp_path / "config.json"
    checkpoint.save_json(path, {"step": 3})
    assert checkpoint.load_json(path)["step"] == 3
    data = json.loads(path.read_text())
    data["format_version"] = checkpoint.FORMAT_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(ReverieError, match="format version"):
        checkpoint.load_json(path)


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"{not json"])
def test_corrupt_files_refused(tmp_path, content):
    (tmp_path / "m.safetensors").write_bytes(content)
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(ReverieError, match="corrupted"):
        checkpoint.load_tensors(tmp_path / "m.safetensors")
    with pytest.raises(ReverieError):
        checkpoint.load_json(tmp_path / "config.json")


def test_truncated_safetensors_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    checkpoint.save_tensors(path, {"w": torch.zeros(100)})
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(ReverieError, match="truncated or corrupted"):
        checkpoint.load_tensors(path)


def test_missing_files_refused(tmp_path):
    with pytest.raises(ReverieError, match="no checkpoint"):
        checkpoint.load_tensors(tmp_path / "none.safetensors")
    with pytest.raises(ReverieError, match="no checkpoint"):
        checkpoint.load_json(tmp_path / "none.json")


def test_atomic_path_replaces_whole_or_not_at_all(tmp_path):
    import os

    target = tmp_path / "metrics.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), checkpoint.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]
    checkpoint.write_text_atomic(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain new file, not mkstemp's 0600
