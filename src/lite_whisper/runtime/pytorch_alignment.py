"""Token-to-frame alignment of a transformers Whisper decoder: what CTranslate2's `align` computes, in PyTorch.

openai-whisper's recipe (`whisper/timing.py`), which CTranslate2 and faster-whisper follow: the decoder reads
<|startoftranscript|> ... <|notimestamps|> text <|endoftext|> teacher-forced over the window's encoder states;
the cross-attention weights of the model's alignment heads (`generation_config.alignment_heads`, else every head
of the upper half of the layers) over the audio frames are standardised per frame column, median-filtered
(width 7) and averaged over the heads; dynamic time warping of their negative gives the path. Each text token's
probability is read from the same pass. `transcription.words` turns the path into timed words.
"""

from __future__ import annotations

import torch
from transformers.models.whisper.generation_whisper import _dynamic_time_warping, _median_filter

MEDIAN_FILTER_WIDTH = 7


def alignment_heads(model) -> list[tuple[int, int]]:
    """(layer, head) pairs whose cross-attention follows the speech: the checkpoint's, else the upper half."""
    heads = getattr(model.generation_config, "alignment_heads", None)
    if heads:
        return [(int(layer), int(head)) for layer, head in heads]
    layers, per_layer = model.config.decoder_layers, model.config.decoder_attention_heads
    return [(layer, head) for layer in range(layers // 2, layers) for head in range(per_layer)]


@torch.inference_mode()
def align_tokens(model, states: torch.Tensor, prompt: list[int], tokens: list[list[int]], frames: list[int]
                 ) -> list[tuple[list[tuple[int, int]], list[float]]]:
    """Per window (`states[i]`, its text `tokens[i]`, its `frames[i]` mel frames of audio): the warping path as
    (token index, encoder frame) pairs over the text tokens and end of text, and each text token's probability."""
    config = model.generation_config
    start = list(prompt) if config.no_timestamps_token_id in prompt else [*prompt, config.no_timestamps_token_id]
    eos = config.eos_token_id[0] if isinstance(config.eos_token_id, list) else config.eos_token_id
    heads = alignment_heads(model)
    decoder, settings = model.model.decoder, model.model.decoder.config
    saved = settings._attn_implementation
    settings._attn_implementation = "eager"  # the attention weights themselves (SDPA does not return them)
    try:
        results = []
        for window, text, count in zip(states, tokens, frames):
            ids = torch.tensor([start + list(text) + [eos]], device=states.device)
            output = decoder(input_ids=ids, encoder_hidden_states=window[None], output_attentions=True,
                             use_cache=False, return_dict=True)
            # position len(start) - 1 (<|notimestamps|>) predicts the first text token
            logits = model.proj_out(output.last_hidden_state[0, len(start) - 1:len(start) - 1 + len(text)]).float()
            chosen = torch.as_tensor(list(text), dtype=torch.long, device=logits.device)
            probabilities = logits.softmax(-1)[torch.arange(len(text), device=logits.device), chosen]
            weights = torch.stack([output.cross_attentions[layer][0, head] for layer, head in heads]).float()
            weights = weights[:, :, : max(count // 2, 1)]  # encoder frames of audio (two mel frames each)
            std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
            weights = _median_filter((weights - mean) / std, MEDIAN_FILTER_WIDTH)
            matrix = weights.mean(dim=0)[len(start) - 1:-1]  # rows: <|notimestamps|> and the text tokens
            text_indices, time_indices = _dynamic_time_warping(-matrix.double().cpu().numpy())
            results.append((list(zip(text_indices.tolist(), time_indices.tolist())), probabilities.tolist()))
        return results
    finally:
        settings._attn_implementation = saved
