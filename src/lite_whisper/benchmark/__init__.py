"""Timing: encoder latency against a dense baseline, end-to-end speed, the exported folder against
faster-whisper, and what calibration costs; results as JSON with the machine they ran on."""
