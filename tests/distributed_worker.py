"""Run under torchrun by test_distributed: one rank of a sharded calibration or evaluation.

    torchrun --standalone --nproc-per-node 2 tests/distributed_worker.py calibrate DATA OUT_DIR
    torchrun --standalone --nproc-per-node 2 tests/distributed_worker.py evaluate DATA OUT_DIR

calibrate: every rank calibrates a tiny random model through `load_or_calibrate` with the
statistics file OUT_DIR/rank<R>.stats (rank 0 alone must write its own). evaluate: every rank
evaluates a tiny random English model; rank 0 writes OUT_DIR/eval.json, others OUT_DIR/rank<R>.none
when they got None (as they must).
"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from conftest import tiny_english_model, tiny_processor, tiny_whisper_model  # noqa: E402

from lite_whisper.compression.pipeline import load_or_calibrate  # noqa: E402
from lite_whisper.distributed import finish, initialise  # noqa: E402
from lite_whisper.evaluation.evaluate import evaluate  # noqa: E402
from lite_whisper.transcription.types import DecodingOptions  # noqa: E402


def main(mode: str, data: str, out_dir: Path) -> None:
    torch.set_num_threads(1)
    ranks = initialise("cpu")
    try:
        if mode == "calibrate":
            load_or_calibrate(tiny_whisper_model(), tiny_processor(), data, batch_size=2, progress=False,
                              stats_files=[out_dir / f"rank{ranks.rank}.stats"], ranks=ranks)
        else:
            result = evaluate((tiny_english_model(), tiny_processor()), data, batch_size=2, progress=False,
                              options=DecodingOptions(language="en", max_new_tokens=8), ranks=ranks)
            if ranks.main:
                (out_dir / "eval.json").write_text(json.dumps(result.to_dict()))
            elif result is None:
                (out_dir / f"rank{ranks.rank}.none").write_text("")
    finally:
        finish(ranks)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
