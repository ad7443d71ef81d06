"""Compression: ranks from calibration statistics (the paper's rule, the robust rule, budgets), factors,
distillation, and the report; `pipeline` is the whole job as the CLI runs it."""
