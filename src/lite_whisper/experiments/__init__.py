"""Experiments over many compressions: the measured frontier (`sweep`: calibrate once, compress many,
evaluate, time) and its plots."""
