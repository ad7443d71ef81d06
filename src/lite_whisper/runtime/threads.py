"""How many threads a model runs on: the cores this process may use, one thread per physical core.

Hyper-threads share a core's matrix units, so a second thread per core slows the encoder's matmuls
down rather than up; torch, ONNX Runtime and CTranslate2 each pick their own default otherwise
(CTranslate2: 4 whatever the machine), which oversubscribes a 2-core machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def physical_cores() -> int:
    """The physical cores among the CPUs this process may run on (its affinity mask); the CPU count where the
    topology cannot be read."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(siblings.read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def use_threads(threads: int | None) -> int:
    """Set torch's intra-op threads to `threads` (default: `physical_cores()`) once, for the process; return it."""
    threads = threads or physical_cores()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
