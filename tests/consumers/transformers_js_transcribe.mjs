// Transcribe clips with transformers.js in Node (a consumer check of `export --format optimum`).
//   node transformers_js_transcribe.mjs FOLDER CLIPS_DIR DTYPE [ENCODER_RUNS]
//     ->  JSON {texts, seconds, load_seconds, encoder_seconds} on stdout
// encoder_seconds: ENCODER_RUNS (default 0) timed runs of the encoder session alone on one 30 s window,
// after one untimed run.
// CLIPS_DIR holds clips as raw little-endian float32 at 16 kHz (NNN.f32), transcribed in name order;
// DTYPE is transformers.js's: fp32 (encoder_model.onnx) or q8 (encoder_model_quantized.onnx). Local files only.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { Tensor, env, pipeline } from "@huggingface/transformers";

const [folder, clipsDir, dtype = "fp32", encoderRuns = "0"] = process.argv.slice(2);
env.localModelPath = path.dirname(path.resolve(folder));
env.allowRemoteModels = false;
env.allowLocalModels = true;

const started = performance.now();
const asr = await pipeline("automatic-speech-recognition", path.basename(path.resolve(folder)), { dtype, device: "cpu" });
const loadSeconds = (performance.now() - started) / 1000;
const texts = [];
const seconds = [];
for (const name of readdirSync(clipsDir).filter((n) => n.endsWith(".f32")).sort()) {
  const bytes = readFileSync(path.join(clipsDir, name));
  const samples = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const start = performance.now();
  const result = await asr(samples);
  seconds.push((performance.now() - start) / 1000);
  texts.push(result.text);
}
const encoderSeconds = [];
const encoder = asr.model.sessions.model;
const mels = asr.model.config.num_mel_bins;
const window = { input_features: new Tensor("float32", new Float32Array(mels * 3000), [1, mels, 3000]) };
for (let run = 0; run <= Number(encoderRuns); run++) {
  const start = performance.now();
  await encoder.run(window);
  if (run > 0) encoderSeconds.push((performance.now() - start) / 1000);
}
console.log(JSON.stringify({ texts, seconds, load_seconds: loadSeconds, encoder_seconds: encoderSeconds }));
