"""Read CTranslate2 / faster-whisper Whisper folders and convert them to `transformers` in memory.

A folder holds `model.bin` (or `model.bin.part1`, `part2`, ... whose byte concatenation is
`model.bin`), CTranslate2's `config.json` (suppress ids, alignment heads) and `tokenizer.json`.

`model.bin` layout, little-endian (see docs/MODELS.md):
    uint32 binary version | string spec name | uint32 spec revision | uint32 n_variables
    n_variables x (string name | uint8 rank | rank x uint32 dims | uint8 dtype id | uint32 n_bytes | data)
    uint32 n_aliases | n_aliases x (string alias | string target)
A string is a uint16 length (counting a trailing NUL) then the bytes. Scalars are rank-0
variables. Int8 weights carry a per-output-row `weight_scale`: w = q / scale.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

import numpy as np
import torch

MODEL_BIN = "model.bin"
_PART_RE = re.compile(r"^model\.bin\.part(\d+)$")
# Binary versions >= 4 store a dtype id per variable (older ones predate faster-whisper).
_MIN_VERSION, _MAX_VERSION = 4, 6
_BFLOAT16 = 5
# dtype id -> numpy dtype of the stored bytes (bfloat16 is read as uint16 and widened).
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    _BFLOAT16: np.dtype("<u2"),
}
_DTYPE_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2,
              np.dtype(np.int32): 3, np.dtype(np.float16): 4}

_CONTROL_TOKENS = ("<|endoftext|>", "<|startoftranscript|>", "<|translate|>", "<|transcribe|>",
                   "<|startoflm|>", "<|startofprev|>", "<|notimestamps|>")
_NO_SPEECH_TOKENS = ("<|nospeech|>", "<|nocaptions|>")  # renamed in large-v3
_MULTILINGUAL_MIN_VOCAB = 51865  # English-only models have 51864 tokens


@dataclass
class CT2Model:
    """The contents of a CTranslate2 `model.bin`."""

    version: int
    spec_name: str
    revision: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """A variable by name, following aliases (e.g. the tied `decoder/projection/weight`)."""
        return self.variables[self.aliases.get(name, name)]


# ---------------------------------------------------------------------------- reading


class _ChainedReader:
    """Reads several files as one byte stream, so split models need no concatenated copy."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)
        self._index = 0
        self._file: BinaryIO | None = open(self.paths[0], "rb")
        self.offset = 0

    def read(self, size: int) -> bytes:
        chunks, missing = [], size
        while missing > 0 and self._file is not None:
            chunk = self._file.read(missing)
            chunks.append(chunk)
            missing -= len(chunk)
            if missing > 0:
                self._next_file()
        data = b"".join(chunks)
        self.offset += len(data)
        return data

    def at_end(self) -> bool:
        return self.read(1) == b""

    def _next_file(self) -> None:
        assert self._file is not None
        self._file.close()
        self._index += 1
        self._file = open(self.paths[self._index], "rb") if self._index < len(self.paths) else None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _Parser:
    """Typed reads with errors that name the file and the byte offset."""

    def __init__(self, reader: _ChainedReader, label: str):
        self.reader = reader
        self.label = label

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.label}: {message} (at byte {self.reader.offset})")

    def bytes(self, size: int, what: str) -> bytes:
        data = self.reader.read(size)
        if len(data) != size:
            split = any(_part_number(path) is not None for path in self.reader.paths)
            hint = "; is a model.bin.part file missing?" if split else ""
            raise self.error(f"truncated file: expected {size} bytes for {what}, got {len(data)}{hint}")
        return data

    def uint(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.bytes(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        size = self.uint("H", what)
        raw = self.bytes(size, what)
        if size == 0 or raw[-1] != 0:
            raise self.error(f"bad string for {what}: not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(f"bad string for {what}: not UTF-8") from None


def read_model_bin(paths: Path | str | Sequence[Path | str]) -> CT2Model:
    """Read a CTranslate2 `model.bin`, or its ordered parts read as one byte stream."""
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not paths:
        raise ValueError("read_model_bin: no files given")
    for path in paths:
        if not path.is_file():
            raise ValueError(f"{path}: model file not found")
    label = str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more part(s))"
    reader = _ChainedReader(paths)
    try:
        return _parse(_Parser(reader, label))
    finally:
        reader.close()


def _parse(p: _Parser) -> CT2Model:
    version = p.uint("I", "the binary version")
    if not _MIN_VERSION <= version <= _MAX_VERSION:
        raise p.error(
            f"bad header: binary version {version} is not a supported CTranslate2 model.bin "
            f"(expected {_MIN_VERSION}..{_MAX_VERSION})"
        )
    spec_name = p.string("the spec name")
    revision = p.uint("I", "the spec revision")
    count = p.uint("I", "the number of variables")
    variables = {}
    for _ in range(count):
        name, value = _parse_variable(p)
        variables[name] = value
    aliases = {}
    for _ in range(p.uint("I", "the number of aliases")):
        alias = p.string("an alias name")
        aliases[alias] = p.string(f"the target of alias {alias}")
    if not p.reader.at_end():
        raise p.error("unexpected data after the aliases (wrong part order, or not a model.bin?)")
    return CT2Model(version, spec_name, revision, variables, aliases)


def _parse_variable(p: _Parser) -> tuple[str, np.ndarray]:
    name = p.string("a variable name")
    rank = p.uint("B", f"the rank of {name}")
    shape = tuple(p.uint("I", f"the shape of {name}") for _ in range(rank))
    dtype_id = p.uint("B", f"the dtype of {name}")
    if dtype_id not in _DTYPES:
        raise p.error(f"unknown dtype id {dtype_id} for variable {name} (known: {sorted(_DTYPES)})")
    size = p.uint("I", f"the byte count of {name}")
    stored = _DTYPES[dtype_id]
    expected = int(np.prod(shape, dtype=np.int64)) * stored.itemsize
    if size != expected:
        raise p.error(f"variable {name}: {size} bytes for shape {shape} of dtype id {dtype_id}, expected {expected}")
    array = np.frombuffer(p.bytes(size, f"the data of {name}"), dtype=stored).reshape(shape)
    if dtype_id == _BFLOAT16:  # bfloat16 is the upper half of a float32
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return name, array.astype(array.dtype.newbyteorder("="), copy=True)


# ---------------------------------------------------------------------------- writing


def write_model_bin(
    path: Path | str,
    variables: dict[str, np.ndarray],
    aliases: dict[str, str] | None = None,
    spec_name: str = "WhisperSpec",
    revision: int = 3,
    version: int = 6,
) -> Path:
    """Write variables (float32/float16/int8/int16/int32 arrays) in CTranslate2's format."""
    path = Path(path)
    with open(path, "wb") as out:
        out.write(struct.pack("<I", version))
        _write_string(out, spec_name)
        out.write(struct.pack("<II", revision, len(variables)))
        for name, value in variables.items():
            _write_variable(out, name, np.asarray(value))
        aliases = aliases or {}
        out.write(struct.pack("<I", len(aliases)))
        for alias, target in aliases.items():
            _write_string(out, alias)
            _write_string(out, target)
    return path


def _write_string(out: BinaryIO, text: str) -> None:
    raw = text.encode("utf-8") + b"\0"
    out.write(struct.pack("<H", len(raw)) + raw)


def _write_variable(out: BinaryIO, name: str, value: np.ndarray) -> None:
    if value.dtype not in _DTYPE_IDS:
        raise ValueError(f"{name}: cannot write dtype {value.dtype} (use {', '.join(map(str, _DTYPE_IDS))})")
    data = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).tobytes()
    _write_string(out, name)
    out.write(struct.pack("<B", value.ndim) + struct.pack(f"<{value.ndim}I", *value.shape))
    out.write(struct.pack("<BI", _DTYPE_IDS[value.dtype], len(data)))
    out.write(data)


# ---------------------------------------------------------------------------- folders


def _part_number(path: Path) -> int | None:
    match = _PART_RE.match(path.name)
    return int(match.group(1)) if match else None


def find_model_bin(folder: Path | str, extra_dirs: Iterable[Path | str] = ()) -> list[Path]:
    """`[folder/model.bin]`, or all `model.bin.partN` in `folder` and `extra_dirs` in numeric order."""
    folder = Path(folder)
    if (folder / MODEL_BIN).is_file():
        return [folder / MODEL_BIN]
    parts = [p for d in (folder, *map(Path, extra_dirs)) if d.is_dir() for p in d.iterdir()
             if p.is_file() and _part_number(p) is not None]
    if not parts:
        raise ValueError(f"{folder}: no {MODEL_BIN} or {MODEL_BIN}.partN files found")
    parts.sort(key=_part_number)
    numbers = [_part_number(p) for p in parts]
    if numbers != list(range(1, len(parts) + 1)):
        raise ValueError(f"{folder}: model.bin parts must be numbered 1..N without gaps or repeats, found {numbers}")
    return parts


def is_ctranslate2_folder(path: Path | str) -> bool:
    """True for a folder holding `model.bin` or `model.bin.part1` (not a Hugging Face checkpoint)."""
    path = Path(path)
    return path.is_dir() and ((path / MODEL_BIN).is_file() or (path / f"{MODEL_BIN}.part1").is_file())


# ---------------------------------------------------------------------------- conversion


def ctranslate2_to_transformers(
    folder: Path | str, extra_part_dirs: Iterable[Path | str] = (), dtype: torch.dtype = torch.float32
):
    """Convert a CTranslate2 Whisper folder to `(WhisperForConditionalGeneration, WhisperProcessor)`.

    `extra_part_dirs` hold further `model.bin.partN` files (models split across packages).
    """
    from transformers import WhisperProcessor

    folder = Path(folder)
    ct2 = read_model_bin(find_model_bin(folder, extra_part_dirs))
    if ct2.spec_name != "WhisperSpec":
        raise ValueError(f"{folder}: spec {ct2.spec_name!r} is not a Whisper model")
    settings = _read_json(folder / "config.json")
    tokenizer = build_tokenizer(folder / "tokenizer.json", vocab_size=ct2.get("decoder/embeddings/weight").shape[0])
    config = whisper_config(ct2, tokenizer)
    model = _build_model(config, transformers_state_dict(ct2), dtype)
    model.generation_config = generation_config(config, tokenizer, settings)
    processor = WhisperProcessor(feature_extractor=_feature_extractor(config.num_mel_bins), tokenizer=tokenizer)
    return model, processor


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error})") from None


def _count_layers(ct2: CT2Model, stack: str) -> int:
    pattern = re.compile(rf"^{stack}/layer_(\d+)/")
    found = {int(m.group(1)) for name in ct2.variables if (m := pattern.match(name))}
    if found != set(range(len(found))):
        raise ValueError(f"{stack} layers are not numbered 0..N-1: {sorted(found)}")
    return len(found)


def _scalar(ct2: CT2Model, name: str) -> int:
    if name not in ct2.variables:
        raise ValueError(f"model.bin has no {name}: not a Whisper model?")
    return int(ct2.variables[name])


def whisper_config(ct2: CT2Model, tokenizer):
    """A `WhisperConfig` from variable shapes and scalars, with the tokenizer's special ids."""
    from transformers import WhisperConfig

    # Whisper's WhisperSpec stores these for the decoder only; the encoder is fixed GELU/pre-norm.
    for name, expected in (("decoder/activation", 3), ("decoder/pre_norm", 1), ("decoder/scale_embeddings", 0)):
        if name in ct2.variables and int(ct2.variables[name]) != expected:
            raise ValueError(f"{name} = {int(ct2.variables[name])}, expected {expected} as in Whisper")
    conv1 = ct2.get("encoder/conv1/weight")
    eot, sot = (tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|startoftranscript|>"))
    return WhisperConfig(
        vocab_size=ct2.get("decoder/embeddings/weight").shape[0],
        num_mel_bins=conv1.shape[1],
        d_model=conv1.shape[0],
        encoder_layers=_count_layers(ct2, "encoder"),
        decoder_layers=_count_layers(ct2, "decoder"),
        encoder_attention_heads=_scalar(ct2, "encoder/num_heads"),
        decoder_attention_heads=_scalar(ct2, "decoder/num_heads"),
        encoder_ffn_dim=ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=ct2.get("encoder/position_encodings/encodings").shape[0],
        max_target_positions=ct2.get("decoder/position_encodings/encodings").shape[0],
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        tie_word_embeddings=_projection_is_tied(ct2),
    )


def _projection_is_tied(ct2: CT2Model) -> bool:
    name = "decoder/projection/weight"
    return name not in ct2.variables or np.array_equal(ct2.variables[name], ct2.get("decoder/embeddings/weight"))


def _dequantized(ct2: CT2Model, name: str) -> np.ndarray:
    """A weight as float32; int8/int16 weights are divided by their scale (per output row or global)."""
    value = ct2.get(name)
    scale_name = name + "_scale"
    if scale_name in ct2.variables:
        scale = ct2.variables[scale_name].astype(np.float32)
        scale = scale.reshape(scale.shape + (1,) * (value.ndim - scale.ndim))
        return value.astype(np.float32) / scale
    if value.dtype.kind in "iu":
        raise ValueError(f"{name}: integer weight without {scale_name}")
    return value.astype(np.float32)


def _linear(ct2: CT2Model, src: str, dst: str, out: dict[str, np.ndarray]) -> None:
    out[f"{dst}.weight"] = _dequantized(ct2, f"{src}/weight")
    if f"{src}/bias" in ct2.variables:
        out[f"{dst}.bias"] = ct2.get(f"{src}/bias").astype(np.float32)


def _layer_norm(ct2: CT2Model, src: str, dst: str, out: dict[str, np.ndarray]) -> None:
    out[f"{dst}.weight"] = ct2.get(f"{src}/gamma").astype(np.float32)
    out[f"{dst}.bias"] = ct2.get(f"{src}/beta").astype(np.float32)


def _split_linear(ct2: CT2Model, src: str, dsts: Sequence[str], out: dict[str, np.ndarray]) -> None:
    """Split a fused projection (q|k|v or k|v) into equal blocks of output rows.

    Whisper's `k_proj` has no bias: CTranslate2 stores zeros, and a constant key bias cancels
    in the softmax anyway, so dropping it is exact.
    """
    fused: dict[str, np.ndarray] = {}
    _linear(ct2, src, "fused", fused)
    weights = np.split(fused["fused.weight"], len(dsts))
    biases = np.split(fused["fused.bias"], len(dsts)) if "fused.bias" in fused else [None] * len(dsts)
    for dst, weight, bias in zip(dsts, weights, biases):
        out[f"{dst}.weight"] = weight
        if bias is not None and not dst.endswith("k_proj"):
            out[f"{dst}.bias"] = bias


def transformers_state_dict(ct2: CT2Model) -> dict[str, torch.Tensor]:
    """Hugging Face `WhisperForConditionalGeneration` weights (float32) from CTranslate2 variables."""
    out: dict[str, np.ndarray] = {}
    for conv in ("conv1", "conv2"):
        _linear(ct2, f"encoder/{conv}", f"model.encoder.{conv}", out)
    for stack in ("encoder", "decoder"):
        out[f"model.{stack}.embed_positions.weight"] = ct2.get(f"{stack}/position_encodings/encodings").astype(np.float32)
        _layer_norm(ct2, f"{stack}/layer_norm", f"model.{stack}.layer_norm", out)
        for i in range(_count_layers(ct2, stack)):
            _map_layer(ct2, f"{stack}/layer_{i}", f"model.{stack}.layers.{i}", stack == "decoder", out)
    out["model.decoder.embed_tokens.weight"] = _dequantized(ct2, "decoder/embeddings/weight")
    if not _projection_is_tied(ct2):
        out["proj_out.weight"] = _dequantized(ct2, "decoder/projection/weight")
    return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in out.items()}


def _map_layer(ct2: CT2Model, src: str, dst: str, is_decoder: bool, out: dict[str, np.ndarray]) -> None:
    attn = f"{dst}.self_attn"
    _split_linear(ct2, f"{src}/self_attention/linear_0", [f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj"], out)
    _linear(ct2, f"{src}/self_attention/linear_1", f"{attn}.out_proj", out)
    _layer_norm(ct2, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", out)
    if is_decoder:
        cross = f"{dst}.encoder_attn"
        _linear(ct2, f"{src}/attention/linear_0", f"{cross}.q_proj", out)
        _split_linear(ct2, f"{src}/attention/linear_1", [f"{cross}.k_proj", f"{cross}.v_proj"], out)
        _linear(ct2, f"{src}/attention/linear_2", f"{cross}.out_proj", out)
        _layer_norm(ct2, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm", out)
    _linear(ct2, f"{src}/ffn/linear_0", f"{dst}.fc1", out)
    _linear(ct2, f"{src}/ffn/linear_1", f"{dst}.fc2", out)
    _layer_norm(ct2, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm", out)


def _build_model(config, state_dict: dict[str, torch.Tensor], dtype: torch.dtype):
    """Instantiate without random init (meta device), then assign the converted weights."""
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    result = model.load_state_dict(state_dict, strict=False, assign=True)
    missing = set(result.missing_keys) - ({"proj_out.weight"} if config.tie_word_embeddings else set())
    if missing or result.unexpected_keys:
        raise ValueError(f"conversion mismatch: missing {sorted(missing)}, unexpected {sorted(result.unexpected_keys)}")
    if config.tie_word_embeddings:
        model.proj_out.weight = model.model.decoder.embed_tokens.weight
    still_meta = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if still_meta:
        raise ValueError(f"conversion left uninitialised tensors: {still_meta}")
    return model.to(dtype).eval()


# ---------------------------------------------------------------------------- processor and generation


def _feature_extractor(n_mels: int):
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=n_mels)


def build_tokenizer(path: Path, vocab_size: int):
    """A `WhisperTokenizerFast` from faster-whisper's `tokenizer.json`.

    transformers 5 takes the first timestamp id as `all_special_ids[-1] + 1`, so the control
    tokens are registered as extra special tokens ending with `<|notimestamps|>`, and the
    timestamp tokens (missing from some tokenizer.json files) are added as plain tokens.
    """
    from tokenizers import AddedToken
    from transformers import WhisperTokenizerFast

    if not path.is_file():
        raise ValueError(f"{path.parent}: no tokenizer.json (needed for the vocabulary and special tokens)")
    added = {token["content"]: token["id"] for token in _read_json(path).get("added_tokens", [])}
    missing = [t for t in ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>") if t not in added]
    if missing:
        raise ValueError(f"{path}: missing Whisper control tokens {missing}")
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(path), extra_special_tokens=_control_tokens(added))
    first_timestamp = added["<|notimestamps|>"] + 1
    if len(tokenizer) < vocab_size:
        count = vocab_size - first_timestamp
        tokenizer.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False, special=False) for i in range(count)])
    if len(tokenizer) != vocab_size or tokenizer.convert_tokens_to_ids("<|0.00|>") != first_timestamp:
        raise ValueError(f"{path}: tokenizer ({len(tokenizer)} tokens) does not match the model ({vocab_size})")
    return tokenizer


def _control_tokens(added: dict[str, int]) -> list[str]:
    """Every added token after <|endoftext|> through <|notimestamps|>, in id order (languages included)."""
    start, end = added["<|endoftext|>"], added["<|notimestamps|>"]
    by_id = {i: t for t, i in added.items() if start <= i <= end}
    if sorted(by_id) != list(range(start, end + 1)):
        raise ValueError("tokenizer.json: the control token ids are not contiguous")
    return [by_id[i] for i in range(start + 1, end + 1)]  # <|endoftext|> is already bos/eos/unk


def _language_tokens(vocab: dict[str, int]) -> dict[str, int]:
    """Language tokens sit between <|startoftranscript|> and <|translate|>."""
    sot, translate = vocab["<|startoftranscript|>"], vocab["<|translate|>"]
    return {t: i for t, i in sorted(vocab.items(), key=lambda kv: kv[1]) if sot < i < translate}


def generation_config(config, tokenizer, settings: dict):
    """Match the layout of openai/whisper-* `generation_config.json`.

    English-only models get no `lang_to_id`/`task_to_id`: with them, transformers would run
    language detection and insert a language token that tiny.en was never trained with.
    """
    from transformers import GenerationConfig

    vocab = tokenizer.get_vocab()
    ids = {t: vocab.get(t) for t in _CONTROL_TOKENS + _NO_SPEECH_TOKENS}
    multilingual = config.vocab_size >= _MULTILINGUAL_MIN_VOCAB
    generation = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_length=config.max_target_positions,
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        is_multilingual=multilingual,
        suppress_tokens=list(settings.get("suppress_ids", [])),
        begin_suppress_tokens=list(settings.get("suppress_ids_begin", [220, config.eos_token_id])),
        max_initial_timestamp_index=50,
        return_timestamps=False,
        forced_decoder_ids=None,
    )
    if "alignment_heads" in settings:
        generation.alignment_heads = [list(pair) for pair in settings["alignment_heads"]]
    if multilingual:
        generation.lang_to_id = _language_tokens(vocab)
        generation.task_to_id = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
    return generation
