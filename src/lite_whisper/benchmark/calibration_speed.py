"""What calibration costs next to the encoder passes it needs: hooked passes vs plain ones, interleaved.

Calibration runs the encoder once over each clip and adds every hooked activation to float64
moments. The moments' cost is pure overhead on top of the forward pass; the throughput fraction

    plain encoder seconds / calibration seconds   (1.0: the moments cost nothing)

says how close calibration comes to the forward pass alone. Inputs are random 30 s log-mel
batches: the cost depends on shapes, not on what is said.
"""

from __future__ import annotations

import statistics as stats
import time
from dataclasses import asdict, dataclass

import torch

from lite_whisper.benchmark.encoder_timing import encoder_input, synchronize, time_encoder
from lite_whisper.calibration.calibrate import collect_statistics
from lite_whisper.lowrank.cost import ENCODER_FRAMES, encoder_of


@dataclass(frozen=True)
class CalibrationSpeed:
    batch_size: int
    repeats: int
    encoder_seconds: list[float]  # one plain encoder pass per repeat
    calibration_seconds: list[float]  # one calibration pass over the same batch (hooks + moments, setup excluded)
    throughput_fraction: float  # median plain / median calibration
    clips_per_second: float  # calibration, median

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        plain, hooked = stats.median(self.encoder_seconds), stats.median(self.calibration_seconds)
        return (f"calibration cost, batch {self.batch_size}, median of {self.repeats}: encoder pass {plain:.2f} s, "
                f"calibration pass {hooked:.2f} s ({self.clips_per_second:.2f} clips/s); throughput "
                f"{self.throughput_fraction:.2f} of the encoder alone")


def calibration_speed(model, batch_size: int = 2, repeats: int = 3, warmup: int = 1) -> CalibrationSpeed:
    """Time `repeats` plain encoder passes and as many calibration passes over one batch, taking turns."""
    encoder = encoder_of(model)
    features = encoder_input(model, batch_size)
    frames = torch.full((batch_size,), ENCODER_FRAMES, dtype=torch.long)

    def collect(batches) -> float:
        synchronize(features.device)
        start = time.perf_counter()
        collect_statistics(model, batches, progress=False)
        synchronize(features.device)
        return time.perf_counter() - start

    def calibration_pass() -> float:  # one batch, less the one-off setup (zeroed moments, fingerprint)
        return collect([(features, frames)]) - collect([])

    for _ in range(warmup):
        time_encoder(encoder, features)
        calibration_pass()
    plain, hooked = [], []
    for _ in range(repeats):
        plain.append(time_encoder(encoder, features) / 1000.0)
        hooked.append(calibration_pass())
    return CalibrationSpeed(batch_size, repeats, plain, hooked, stats.median(plain) / stats.median(hooked),
                            batch_size / stats.median(hooked))
