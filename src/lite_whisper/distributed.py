"""torch.distributed for lite-whisper: ranks from torchrun's environment, gathering results, rank 0's work.

Each process sees every N-th clip; calibration adds the ranks' sums (`calibration.reduce`), and
evaluation rows are gathered on rank 0, which alone writes files and prints.

    torchrun --nproc-per-node 2 --no-python lite-whisper compress tiny.en -o out --target-params 0.75

Without torchrun (no WORLD_SIZE in the environment, or WORLD_SIZE=1) everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: rank `rank` of `world_size` (0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that factorises, writes and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = Ranks()


def from_environment() -> Ranks:
    """The ranks torchrun announces (RANK, WORLD_SIZE), or a single process."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:
        raise ValueError(f"RANK/WORLD_SIZE must be integers, got {os.environ.get('RANK')!r}/"
                         f"{os.environ.get('WORLD_SIZE')!r}") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size} processes")
    return Ranks(rank, world_size)


def initialise(device: torch.device | str = "cpu") -> Ranks:
    """Join the process group torchrun set up (gloo on CPU, nccl on CUDA); return this process's ranks.

    On CUDA each process takes the GPU of its LOCAL_RANK. Idempotent.
    """
    ranks = from_environment()
    if not ranks.distributed:
        return ranks
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed")
    device = torch.device(device)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=2))
    return ranks


def process_device(device: torch.device | str) -> torch.device:
    """`device`, with CUDA pinned to this process's LOCAL_RANK under torchrun (cuda -> cuda:LOCAL_RANK)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and from_environment().distributed:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def gather_to_main(value, ranks: Ranks) -> list | None:
    """[rank 0's `value`, rank 1's, ...] on rank 0 (any picklable value); None on the other ranks."""
    if not ranks.distributed:
        return [value]
    gathered = [None] * ranks.world_size if ranks.main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def max_over_ranks(value: float, ranks: Ranks) -> float:
    """The largest `value` of all ranks (e.g. the wall time of the slowest), on every rank."""
    if not ranks.distributed:
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor[0])


def on_main(ranks: Ranks, function, *args, **kwargs):
    """`function(*args, **kwargs)` on rank 0 only; every rank returns its result or raises its error.

    What rank 0 alone may do (write a folder, check a manifest) without leaving the other ranks
    waiting forever when it fails: the outcome is broadcast, so it is also a barrier.
    """
    if not ranks.distributed:
        return function(*args, **kwargs)
    outcome: list = [None]
    if ranks.main:
        try:
            outcome = [(True, function(*args, **kwargs))]
        except Exception as error:  # noqa: BLE001 - re-raised on every rank below
            outcome = [(False, error)]
    dist.broadcast_object_list(outcome, src=0)
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value


def finish(ranks: Ranks) -> None:
    """Leave the process group (at exit), so torchrun sees a clean shutdown."""
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()
