"""Calibration statistics summed over torch.distributed ranks.

Statistics are sums (count, sum, sum of outer products), so N processes that each see every N-th
clip and then add their sums get the single-process statistics, to float64 round-off.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from lite_whisper.calibration.statistics import CalibrationStatistics
from lite_whisper.distributed import Ranks


def all_reduce_statistics(statistics: CalibrationStatistics, ranks: Ranks) -> CalibrationStatistics:
    """Sum every rank's moments and counts in place (float64), so each rank holds the job's statistics."""
    if not ranks.distributed:
        return statistics
    keys = sorted(statistics.moments)  # the same order on every rank
    device = statistics.moments[keys[0]].sum.device
    counts = torch.tensor([statistics.calibration_clips, statistics.calibration_frames]
                          + [statistics.moments[key].count for key in keys], dtype=torch.int64, device=device)
    dist.all_reduce(counts)
    statistics.calibration_clips, statistics.calibration_frames = int(counts[0]), int(counts[1])
    for key, count in zip(keys, counts[2:].tolist()):
        moments = statistics.moments[key]
        moments.count = int(count)
        dist.all_reduce(moments.sum)
        dist.all_reduce(moments.outer)
    return statistics
