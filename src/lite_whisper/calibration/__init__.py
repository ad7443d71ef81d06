"""Calibration: run the encoder over audio and stream the moments of every target linear (also sharded
over torch.distributed and merged exactly)."""

# The precision of calibration's per-batch activation products (the sums are float64 whatever it is):
#   float32   exact float32 products (TF32 off on a GPU): the default
#   tf32      inputs rounded to 10 mantissa bits, float32 accumulation (a GPU's tensor cores; on the CPU
#             emulated by rounding, for accuracy studies: no faster there)
#   bfloat16  inputs rounded to bfloat16 (8 bits), float32 accumulation (emulated on the CPU likewise)
# Here, not in `moments`, so the command line can list them without importing torch.
PRODUCT_PRECISIONS = ("float32", "tf32", "bfloat16")
