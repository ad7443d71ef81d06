"""Calibration: run the encoder over audio and stream the moments of every target linear (also sharded
over torch.distributed and merged exactly)."""
