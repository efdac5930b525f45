"""Several processes (torchrun) training or dreaming together: ranks, devices, collectives, failures.

    torchrun --standalone --nproc_per_node 2 -m reverie train shakespeare --out runs/ddp

torchrun starts one process per GPU (or per CPU share) and tells each its place through the
environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. `ranks()` reads them (a plain
`python -m reverie` is rank 0 of 1); `device_for` gives each process its device (LOCAL_RANK picks
the GPU); `process_group` joins the others, with gloo for CPU tensors and NCCL for CUDA tensors,
and a timeout, so that a process whose peers died or hang stops with a one-line `PeerLost` error
(exit code 1) instead of waiting forever. The collectives below (`all_sum`, `all_gather`,
`broadcast`, `share_from_main`) move small CPU tensors and do nothing for a single process.
`launch` starts N local processes with torchrun's environment (what the tests and benchmarks use).

    python -m reverie.distributed      # print what this process would be (rank, world, device)
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from reverie.device import resolve_device
from reverie.errors import ReverieError, first_line, require

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 600.0  # covers rank 0's evaluation and samples, which the others wait for
# What gloo, NCCL and the rendezvous store say when a peer is gone or silent (they raise plain
# RuntimeErrors as well as torch.distributed.DistError).
_PEER_FAILURE = re.compile(
    r"\bgloo\b|\bnccl\b|connection (reset|closed|refused)|broken pipe|timed out|by peer|tcpstore|rendezvous",
    re.IGNORECASE,
)


class PeerLost(ReverieError):
    """Another process of the job died or stopped answering; this one stops too (exit code 1)."""

    exit_code = 1


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: global rank, number of processes, rank on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints, evaluates and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = Ranks()


def ranks() -> Ranks:
    """RANK, WORLD_SIZE and LOCAL_RANK from the environment (as torchrun sets them)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    require(world >= 1, f"WORLD_SIZE must be at least 1, got {world}; launch with torchrun")
    require(
        0 <= rank < world, f"RANK {rank} is outside 0..{world - 1} (WORLD_SIZE {world}); launch with torchrun"
    )
    require(local >= 0, f"LOCAL_RANK must be zero or positive, got {local}; launch with torchrun")
    return Ranks(rank, world, local)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ReverieError(f"{name}={value!r} is not an integer; launch with torchrun") from None


def device_for(option: str, where: Ranks) -> torch.device:
    """The device `option` (auto|cpu|cuda|mps) names for this process: with several processes and
    CUDA, GPU number LOCAL_RANK (made current), so each process on a machine has its own GPU."""
    device = resolve_device(option)
    if device.type != "cuda" or not where.distributed:
        return device
    count = torch.cuda.device_count()
    require(
        where.local_rank < count,
        f"LOCAL_RANK {where.local_rank} but this machine has {count} GPU(s); start at most {count} "
        "processes per machine (torchrun --nproc_per_node), or pass --device cpu",
    )
    torch.cuda.set_device(where.local_rank)
    return torch.device("cuda", where.local_rank)


def backend() -> str:
    """gloo for CPU tensors, plus NCCL for CUDA tensors where there is CUDA."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


@contextlib.contextmanager
def process_group(where: Ranks, timeout_s: float = DEFAULT_TIMEOUT_S, hint: str = "") -> Iterator[Ranks]:
    """Join the job's process group for the duration of the block (nothing for a single process).

    A collective that fails inside the block because a peer is gone (connection reset, timeout)
    becomes a PeerLost error naming this rank, followed by `hint`; the group is torn down either way.
    """
    if not where.distributed:
        yield where
        return
    require(timeout_s > 0, f"the process timeout must be positive, got {timeout_s}")
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    verb = "is" if len(missing) == 1 else "are"
    require(
        not missing,
        f"WORLD_SIZE is {where.world_size} but {' and '.join(missing)} {verb} not set; launch with torchrun "
        "(torchrun --standalone --nproc_per_node N -m reverie ...)",
    )
    suffix = f"; {hint}" if hint else ""
    try:
        dist.init_process_group(
            backend(),
            timeout=datetime.timedelta(seconds=timeout_s),
            rank=where.rank,
            world_size=where.world_size,
        )
    except (RuntimeError, ValueError) as exc:
        raise PeerLost(
            f"rank {where.rank} could not join the other {where.world_size - 1} process(es) at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} within {timeout_s:g} s "
            f"({_first_line(exc)}); check that every process was started and the address is reachable "
            "(GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME pick the network interface)"
        ) from None
    try:
        yield where
        # leave together: a process tearing gloo down while a peer still finishes its last
        # collective can be aborted ("terminate called without an active exception"). A CPU
        # all-reduce, not dist.barrier(), which would go through NCCL on a GPU machine.
        all_sum([0.0])
    except RuntimeError as exc:
        if not is_peer_failure(exc):
            raise
        raise PeerLost(
            f"rank {where.rank} of {where.world_size} lost contact with the other processes "
            f"({_first_line(exc)}): another process died or hangs, see its output{suffix}"
        ) from None
    finally:
        with contextlib.suppress(Exception):  # a broken group may refuse a clean shutdown
            dist.destroy_process_group()


def is_peer_failure(exc: BaseException) -> bool:
    """Whether `exc` says that a peer process is gone or silent (not a bug in this one)."""
    if isinstance(exc, dist.DistError):
        return True
    return isinstance(exc, RuntimeError) and bool(_PEER_FAILURE.search(str(exc)))


def _first_line(exc: BaseException) -> str:
    line = first_line(exc)
    line = re.sub(r"^\[[^\]]*\]\s*", "", line)  # gloo's "[path/file.cc:537]" prefix
    return line.split(". ", 1)[0].rstrip(".")  # the first sentence, not the advice after it


def active() -> bool:
    """Whether this process is in a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_sum(values: Sequence[float]) -> list[float]:
    """The element-wise sum of `values` over all processes (the values themselves when alone)."""
    if not active():
        return [float(v) for v in values]
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_gather(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every process's `tensor` (same shape and dtype on all), in rank order, on the CPU."""
    local = tensor.detach().cpu().contiguous()
    if not active():
        return [local]
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local)
    return parts


def gather_tensors(local: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Every process's dict of tensors (same keys, shapes and dtypes on all), in rank order."""
    parts = {key: all_gather(tensor) for key, tensor in local.items()}
    return [{key: parts[key][rank] for key in local} for rank in range(len(next(iter(parts.values()))))]


def check_same(value: str, what: str, advice: str) -> None:
    """Refuse, on every process in one line, a job whose processes disagree on `value` (each
    computes its own: a corpus fingerprint, say), naming the processes that differ from rank 0."""
    if not active():
        return
    digest = torch.frombuffer(bytearray(hashlib.sha256(value.encode()).digest()), dtype=torch.uint8)
    parts = all_gather(digest)
    others = [rank for rank, part in enumerate(parts) if not torch.equal(part, parts[0])]
    if others:
        ranks_text = ", ".join(map(str, others))
        raise ReverieError(f"rank(s) {ranks_text} of {len(parts)} do not have rank 0's {what}; {advice}")


@dataclass(frozen=True)
class Agreement:
    """What the processes of a job agreed after a unit of work (`agree`)."""

    stopped: bool  # some process was asked to stop (a signal, or its `stop=`)
    signal: str | None  # "Ctrl-C" or "SIGTERM" when some process got one (Ctrl-C first)
    finished: bool  # every process has finished its work
    sums: list[float]  # each of `values` summed over the processes


def agree(
    stopped: bool, signal: str | None = None, finished: bool = False, values: Sequence[float] = ()
) -> Agreement:
    """After each unit of a job's work (a training step, a video frame), on every process, in one
    collective: whether any process was asked to stop and by which signal, whether all have finished,
    and `values` summed (a rank-0-only value is passed as 0 by the others; a mean is the sum over
    `world_size`), so that all stop, save and schedule at the same point. Alone, the values themselves."""
    sums = all_sum(
        [float(stopped), float(signal == "Ctrl-C"), float(signal == "SIGTERM"), float(finished), *values]
    )
    world = dist.get_world_size() if active() else 1
    caught = "Ctrl-C" if sums[1] else "SIGTERM" if sums[2] else None
    return Agreement(sums[0] > 0 or caught is not None, caught, sums[3] == world, sums[4:])


def broadcast(tensor: torch.Tensor, source: int = 0) -> torch.Tensor:
    """Rank `source`'s `tensor` on every process, on the CPU (shape and dtype alike on all)."""
    local = tensor.detach().cpu().contiguous().clone()
    if active():
        dist.broadcast(local, source)
    return local


def share_from_main(read: Callable[[], bytes]) -> bytes:
    """`read()` run on rank 0 only, its bytes handed to every process; a ReverieError it raises is
    raised on every process (so all stop with the same line, e.g. a corrupt checkpoint)."""
    if not active():
        return read()
    data, failed = b"", 0
    if dist.get_rank() == 0:
        try:
            data = read()
        except ReverieError as exc:
            data, failed = str(exc).encode(), 1
    header = broadcast(torch.tensor([failed, len(data)], dtype=torch.int64))
    failed, size = int(header[0]), int(header[1])
    buffer = (
        torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(size, dtype=torch.uint8)
    )
    if size:
        buffer = broadcast(buffer)
    payload = buffer.numpy().tobytes()
    if failed:
        raise ReverieError(payload.decode())
    return payload


def local_first(where: Ranks, work: Callable[[], T]) -> T:
    """`work()` on each machine's first process, then on the others: a download or a cache file
    that the first one makes, the others find made (a ReverieError in the first stops the others
    as PeerLost)."""
    if not active():
        return work()
    first = work() if where.local_rank == 0 else None
    all_sum([0.0])  # the others wait here for the first ones
    return first if where.local_rank == 0 else work()  # type: ignore[return-value]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(
    args: Sequence[str], nproc: int, env: Mapping[str, str] | None = None, **popen: object
) -> list[subprocess.Popen]:
    """Start `python ARGS` `nproc` times on this machine with torchrun's environment (ranks
    0..nproc-1, a free 127.0.0.1 port), like `torchrun --standalone` without its restarts.
    `popen` goes to subprocess.Popen (stdout, stderr, ...); the caller waits for the processes."""
    require(nproc >= 1, f"nproc must be at least 1, got {nproc}")
    port = free_port()
    base = {**os.environ, **(env or {})}
    processes = []
    for rank in range(nproc):
        place = {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(nproc),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(nproc),
        }
        processes.append(subprocess.Popen([sys.executable, *args], env={**base, **place}, **popen))
    return processes


if __name__ == "__main__":
    here = ranks()
    print(
        f"rank {here.rank} of {here.world_size} (local rank {here.local_rank}), "
        f"device {device_for('auto', here)}"
    )
