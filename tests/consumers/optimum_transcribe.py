"""Transcribe clips with optimum's ORTModelForSpeechSeq2Seq (a consumer check of `export --format optimum`).

Runs in its own environment (optimum-onnx pins transformers < 4.58; scripts/setup_consumers.sh makes it):
    python optimum_transcribe.py FOLDER CLIPS.npz [pipeline]  ->  JSON {"generate": [...], "pipeline": [...]}
CLIPS.npz holds 16 kHz float32 arrays, in the order to transcribe. "generate": the processor's 30 s
features and `model.generate`, as optimum documents it; "pipeline" (when asked): transformers' ASR pipeline, which
in transformers 4.x pads the features of a short clip instead of its audio (other text on a few clips).
"""

import json
import sys

import numpy as np
from optimum.onnxruntime import ORTModelForSpeechSeq2Seq
from transformers import AutoProcessor, pipeline

folder, clips = sys.argv[1], np.load(sys.argv[2])
# float32: optimum takes the standard names (encoder_model.onnx, decoder_model_merged.onnx) among the files
model = ORTModelForSpeechSeq2Seq.from_pretrained(folder, subfolder="onnx", local_files_only=True)
processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
audio = [clips[name] for name in clips.files]
generated = []
for samples in audio:
    features = processor(samples, sampling_rate=16000, return_tensors="pt").input_features
    generated.append(processor.batch_decode(model.generate(features), skip_special_tokens=True)[0])
piped = []
if "pipeline" in sys.argv[3:]:
    asr = pipeline("automatic-speech-recognition", model=model, tokenizer=processor.tokenizer,
                   feature_extractor=processor.feature_extractor)
    piped = [asr({"raw": samples, "sampling_rate": 16000})["text"] for samples in audio]
print(json.dumps({"generate": generated, "pipeline": piped}))
