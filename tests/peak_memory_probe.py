"""Run by test_compress in a fresh process: peak memory of compress() on a random model of N layers.

Prints two numbers (MiB): how much the peak resident memory rose during compress(), and the
bytes of the low-rank factors the result keeps. Synthetic statistics (moments of random rows
with decaying variances) stand in for calibration, which is not what is measured.
"""

import re
import sys

import torch
from conftest import tiny_whisper_model

from lite_whisper.calibration.moments import Moments
from lite_whisper.calibration.statistics import SITES, CalibrationStatistics, ModelSignature
from lite_whisper.compression.compress import compress
from lite_whisper.compression.config import CompressionConfig
from lite_whisper.lowrank.targets import LOW_RANK_TARGETS


def high_water_mark() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024


def main(layers: int, spec: str) -> None:
    torch.set_num_threads(1)
    model = tiny_whisper_model(encoder_layers=layers, d_model=512, encoder_ffn_dim=2048,
                               encoder_attention_heads=8, decoder_layers=1)
    statistics = CalibrationStatistics(signature=ModelSignature.of(model), exclude_padding=False,
                                       calibration_clips=1, calibration_frames=1500)
    generator = torch.Generator().manual_seed(0)
    for index, layer in enumerate(model.model.encoder.layers):
        for target, side in SITES:
            linear = layer.get_submodule(LOW_RANK_TARGETS[target][0])
            width = linear.in_features if side == "input" else linear.out_features
            moments = Moments.zeros(width)
            moments.update(torch.randn(1024, width, generator=generator) * torch.logspace(0, -3, width))
            statistics.moments[index, target, side] = moments
    with open("/proc/self/clear_refs", "w") as clear:  # reset the peak to what is resident now
        clear.write("5")
    before = high_water_mark()
    lite, _ = compress(model, statistics, CompressionConfig.parse(spec))
    kept = sum(p.numel() * p.element_size() for name, p in lite.named_parameters() if ".down." in name or ".up." in name)
    print((high_water_mark() - before) / 2**20, kept / 2**20)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
