"""Wrong and alternative implementations for chapter 16 (16-gpu-gpt).

Each entry is the reference's function (with what it needs from the notebook) with one slip
edited in. The edits are made on the reference's source text and must match it, so that a
change to the reference that would silently make an entry correct fails loudly here instead.
"""
from .. import reference
from ..release import source_of
from . import Wrong

_ref = reference.load("gpu_gpt")

_HEADER = '''import math
import os

import numpy as np
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

HEAD_DIMS = (16, 32, 64, 128)
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
'''


def _src(name):
    return source_of(getattr(_ref, name))


def _edit(source: str, edits) -> str:
    for old, new in edits:
        if source.count(old) < 1:
            raise ValueError(f"catalogue edit not found in the reference: {old!r}")
        source = source.replace(old, new)
    return source


def _with(function, *edits, given=()):
    """The header, the given functions, then `function`'s reference source with `edits`."""
    parts = [_HEADER] + [_src(g) for g in given] + [_edit(_src(function), edits)]
    return "\n\n".join(parts) + "\n"


def _positions(*edits):
    return _with("positions_for_step", *edits)


def _write(*edits):
    return _with("write_cache", *edits)


_STEP_GIVEN = ("to_heads", "from_heads", "positions_for_step", "write_cache")


def _step(*edits):
    return _with("static_step", *edits, given=_STEP_GIVEN)


def _sample(*edits):
    return _with("sample_next", *edits)


def _decode(split=(), combine=(), launcher=()):
    parts = [_HEADER, _src("check_decode_inputs"), _src("decode_settings"),
             _edit(_src("_decode_split_kernel"), split), _edit(_src("_decode_combine_kernel"), combine),
             _edit(_src("decode_attention"), launcher)]
    return "\n\n".join(parts) + "\n"


_ATTEND = "o = F.scaled_dot_product_attention(q, kv[layer, 0], kv[layer, 1], attn_mask=allowed[:, None])"
_WRITE_K = "cache[0, b, :, positions] = k_new.transpose(1, 2).to(cache.dtype)"
_WRITE_V = "cache[1, b, :, positions] = v_new.transpose(1, 2).to(cache.dtype)"

WRONG = [
    # ---------------------------------------------------------------- positions_for_step
    Wrong("positions_for_step", "pos_diagonal_excluded", "sees its own slot",
          _positions(("slots[None, None, :] <= positions[:, :, None]", "slots[None, None, :] < positions[:, :, None]")),
          "A mask `slot < position` that hides each new token from its own slot, where its key was just written."),
    Wrong("positions_for_step", "pos_not_causal_in_chunk", "must not see the later new tokens",
          _positions(("allowed = slots[None, None, :] <= positions[:, :, None]",
                      "allowed = (slots[None, None, :] < positions[:, -1:, None] + 1).expand(-1, n_tokens, -1)")),
          "One limit for every new token of a step (the last one's), so a prompt's tokens see the later tokens."),
    Wrong("positions_for_step", "pos_plus_one", "not start[b] + 1",
          _positions(("positions = start.to(torch.int64)[:, None] + steps[None, :]",
                      "positions = start.to(torch.int64)[:, None] + 1 + steps[None, :]")),
          "Positions start + 1 + i: counting the new token before placing it, one slot too far."),
    Wrong("positions_for_step", "pos_shape_from_start", "must not depend on the values in start",
          _positions(("slots = torch.arange(max_len, device=start.device)",
                      "slots = torch.arange(int(start.max()) + n_tokens, device=start.device)")),
          "A mask only as wide as the longest sequence so far (`int(start.max()) + n`): its shape changes at every "
          "step, and reading start back to Python stops a CUDA graph."),
    Wrong("positions_for_step", "pos_first_sequence", "not start[0]",
          _positions(("positions = start.to(torch.int64)[:, None] + steps[None, :]",
                      "positions = (int(start[0]) + steps)[None, :].expand(start.shape[0], -1)")),
          "Using the first sequence's start for the whole batch, as if every prompt had the same length."),
    # ---------------------------------------------------------------- write_cache
    Wrong("write_cache", "write_slot_plus_one", "not positions[b, i] + 1",
          _write(("cache[0, b, :, positions]", "cache[0, b, :, positions + 1]"),
                 ("cache[1, b, :, positions]", "cache[1, b, :, positions + 1]")),
          "Writing at slot position + 1, as if the position were that of the last written slot."),
    Wrong("write_cache", "write_whole_time_axis", "a broadcast into the whole time axis",
          _write((_WRITE_K, "cache[0, :, :, :] = k_new.to(cache.dtype)"),
                 (_WRITE_V, "cache[1, :, :, :] = v_new.to(cache.dtype)")),
          "`cache[0][:, :, :] = k_new`: for one new token the assignment broadcasts over every slot and "
          "overwrites the whole cache."),
    Wrong("write_cache", "write_into_copy", "index_copy without the underscore",
          _write((_WRITE_K, "for i in range(cache.shape[1]):\n"
                            "        cache[0, i].index_copy(1, positions[i], k_new[i].to(cache.dtype))"),
                 (_WRITE_V, "for i in range(cache.shape[1]):\n"
                            "        cache[1, i].index_copy(1, positions[i], v_new[i].to(cache.dtype))")),
          "`index_copy` without the underscore: it returns a new tensor, which is dropped, and the cache stays "
          "as it was (not in place)."),
    Wrong("write_cache", "write_swapped", "they are swapped",
          _write(("cache[0, b, :, positions] = k_new", "cache[0, b, :, positions] = v_new"),
                 ("cache[1, b, :, positions] = v_new", "cache[1, b, :, positions] = k_new")),
          "Keys written to cache[1] and values to cache[0]."),
    Wrong("write_cache", "write_first_sequence_slots", "its own slots",
          _write(("cache[0, b, :, positions]", "cache[0, b, :, positions[:1]]"),
                 ("cache[1, b, :, positions]", "cache[1, b, :, positions[:1]]")),
          "Every sequence written at the slots of sequence 0, as if the whole batch were at one position."),
    # ---------------------------------------------------------------- static_step
    Wrong("static_step", "step_is_causal", "aligns its mask to the top-left corner",
          _step((_ATTEND, "o = F.scaled_dot_product_attention(q, kv[layer, 0], kv[layer, 1], is_causal=True)")),
          "`is_causal=True` against the cache: PyTorch's causal mask starts at the top-left corner, so one new "
          "query sees slot 0 only."),
    Wrong("static_step", "step_no_mask", "mask the scores with `allowed`",
          _step((_ATTEND, "o = F.scaled_dot_product_attention(q, kv[layer, 0], kv[layer, 1])")),
          "Attention over all S slots without a mask: the unwritten tail (zeros, padding, another sequence's "
          "leftovers) takes part."),
    Wrong("static_step", "step_positions_from_zero", "a decode step is not at position 0",
          _step(('x = params["wte"][ids] + params["wpe"][positions]', 'x = params["wte"][ids] + params["wpe"][:n]')),
          "`wpe[:n]` as in a full forward pass: every decode step gets the position embedding of position 0."),
    Wrong("static_step", "step_attend_before_write", "BEFORE attending",
          _step(("        write_cache(kv[layer], k, v, positions)\n        " + _ATTEND,
                 "        " + _ATTEND + "\n        write_cache(kv[layer], k, v, positions)")),
          "Attending before writing the new keys and values: a token's own slot still holds a leftover."),
    # ---------------------------------------------------------------- sample_next
    Wrong("sample_next", "sample_uniform_noise", "adding the uniform draws themselves",
          _sample(("return torch.argmax(logits / temperature + gumbel, dim=-1)",
                   "return torch.argmax(logits / temperature + uniform, dim=-1)")),
          "Adding the uniform noise itself to the logits: not a draw from softmax."),
    Wrong("sample_next", "sample_temperature_after_noise", "BEFORE adding the noise",
          _sample(("return torch.argmax(logits / temperature + gumbel, dim=-1)",
                   "return torch.argmax((logits + gumbel) / temperature, dim=-1)")),
          "Dividing by the temperature after adding the noise: the argmax ignores the temperature."),
    Wrong("sample_next", "sample_gumbel_sign", "with both minus signs",
          _sample(("gumbel = -torch.log(-torch.log(", "gumbel = torch.log(-torch.log(")),
          "Gumbel noise with one minus sign lost: log(-log u) favours the wrong tokens."),
    Wrong("sample_next", "sample_divides_by_zero", "temperature 0 means greedy",
          _sample(("    if temperature == 0:\n        return torch.argmax(logits, dim=-1)\n", "")),
          "No special case for temperature 0: logits / 0 is inf or NaN, and the argmax is not the greedy token."),
    Wrong("sample_next", "sample_multiply_temperature", "don't multiply",
          _sample(("logits / temperature + gumbel", "logits * temperature + gumbel")),
          "Multiplying the logits by the temperature instead of dividing."),
    # ---------------------------------------------------------------- decode_attention
    Wrong("decode_attention", "combine_no_rescale", "without rescaling by",
          _decode(combine=[("w = tl.exp(lse_i - m)\n    w = w / tl.sum(w, 0)",
                            "w = tl.where(lse_i > float(\"-inf\"), 1.0, 0.0)")]),
          "Adding the chunks' partial outputs without rescaling each by exp(lse_i - lse)."),
    Wrong("decode_attention", "combine_average", "averaging the chunks",
          _decode(combine=[("w = tl.exp(lse_i - m)\n    w = w / tl.sum(w, 0)",
                            "w = tl.where(lse_i > float(\"-inf\"), 1.0, 0.0)\n    w = w / tl.sum(w, 0)")]),
          "Averaging the chunks' partial outputs: every chunk weighs the same, whatever its share of the softmax."),
    Wrong("decode_attention", "split_unwritten_tail", "the slots at and past lengths[b] are unwritten",
          _decode(split=[("valid = slots < length", "valid = slots < S")]),
          "Masking only the slots past the cache's end (S), not past the sequence's length: the unwritten "
          "tail takes part."),
    Wrong("decode_attention", "split_length_off_by_one", "not <=",
          _decode(split=[("valid = slots < length", "valid = (slots <= length) & (slots < S)")]),
          "`slots <= length`: one unwritten slot past the new token takes part."),
    Wrong("decode_attention", "split_empty_chunk_nan", "chunks lie entirely past the length",
          _decode(split=[("    m = tl.where(m == float(\"-inf\"), 0.0, m)     # an empty chunk: exp(-inf - 0) = 0, "
                          "not NaN\n", "")]),
          "No care for chunks entirely past the length: their maximum is -inf, exp(-inf - (-inf)) is NaN, "
          "and the NaN spreads through the combine."),
    Wrong("decode_attention", "combine_unstable", "exp(lse_i) alone overflows",
          _decode(combine=[("w = tl.exp(lse_i - m)", "w = tl.exp(lse_i)")]),
          "Combining with exp(lse_i) without subtracting the largest lse first: inf / inf for large scores."),
    Wrong("decode_attention", "split_no_scale", "scale the scores by 1/sqrt(d)",
          _decode(split=[("s = tl.sum(k * q[None, :], 1) * scale", "s = tl.sum(k * q[None, :], 1)")]),
          "Forgetting the 1/sqrt(d) scale of the scores."),
    Wrong("decode_attention", "grid_floor", "S // CHUNK drops it",
          _decode(launcher=[('n_chunks = triton.cdiv(slots, settings["CHUNK"])',
                             'n_chunks = slots // settings["CHUNK"]')]),
          "`S // CHUNK` chunks: the last, partial chunk of the cache is never read."),
    # The right numbers without the method: graded on the source (autograder/method.py).
    Wrong("decode_attention", "combine_in_pytorch", "does not launch the Triton kernel",
          _decode(launcher=[("    _decode_combine_kernel[(batch * heads,)](o_part, lse_part, o, n_chunks, D=d,\n"
                             "                                             N_CHUNKS=triton.next_power_of_2(n_chunks))\n",
                             "    w = torch.softmax(lse_part, dim=-1)\n"
                             "    o.copy_((w[..., None] * o_part).sum(1).view_as(o).to(o.dtype))\n")]),
          "The combine written in PyTorch in the launcher: right numbers, but only one of the two kernels."),
]


# Differently written correct versions.
CORRECT = [
    # positions: broadcasting through expand and unsqueeze; write: a loop over the batch with index_copy_.
    _HEADER + '''

def positions_for_step(start, n_tokens, max_len):
    if n_tokens < 1 or n_tokens > max_len:
        raise ValueError("bad n_tokens")
    positions = start.long().unsqueeze(1) + torch.arange(n_tokens, device=start.device).unsqueeze(0)
    slots = torch.arange(max_len, device=start.device).expand(*positions.shape, max_len)
    return positions, slots <= positions.unsqueeze(-1)


def write_cache(cache, k_new, v_new, positions):
    for b in range(cache.shape[1]):
        cache[0, b].index_copy_(1, positions[b], k_new[b].to(cache.dtype))
        cache[1, b].index_copy_(1, positions[b], v_new[b].to(cache.dtype))
    return cache
''',
    # static_step with attention written out (masked_fill, softmax) and index_put_ writes.
    _HEADER + "\n\n" + _src("to_heads") + "\n\n" + _src("from_heads") + "\n\n" + _src("positions_for_step") + '''


def write_cache(cache, k_new, v_new, positions):
    b = torch.arange(cache.shape[1], device=cache.device)[:, None].expand_as(positions)
    cache[0].permute(0, 2, 1, 3).index_put_((b, positions), k_new.transpose(1, 2).to(cache.dtype))
    cache[1].permute(0, 2, 1, 3).index_put_((b, positions), v_new.transpose(1, 2).to(cache.dtype))
    return cache


def static_step(params, kv, ids, start, n_head):
    positions, allowed = positions_for_step(start, ids.shape[1], kv.shape[4])
    x = params["wte"][ids] + params["wpe"][positions]

    def ln(y, g, b):
        mu = y.mean(-1, keepdim=True)
        var = ((y - mu) ** 2).mean(-1, keepdim=True)
        return (y - mu) / torch.sqrt(var + 1e-5) * g + b

    for layer, p in enumerate(params["blocks"]):
        h = ln(x, p["ln1_g"], p["ln1_b"])
        q = to_heads(h @ p["w_q"], n_head)
        write_cache(kv[layer], to_heads(h @ p["w_k"], n_head), to_heads(h @ p["w_v"], n_head), positions)
        scores = q @ kv[layer, 0].transpose(-1, -2) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        x = x + from_heads(torch.softmax(scores, -1) @ kv[layer, 1]) @ p["w_o"]
        h = ln(x, p["ln2_g"], p["ln2_b"])
        u = h @ p["w_fc"] + p["b_fc"]
        u = 0.5 * u * (1 + torch.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3)))
        x = x + u @ p["w_proj"] + p["b_proj"]
    return ln(x, params["lnf_g"], params["lnf_b"]) @ params["wte"].T, kv
''',
    # sample_next as an exponential race: argmax(p / E), E = -log(u), the same draw as Gumbel-max.
    _HEADER + '''

def sample_next(logits, temperature, uniform):
    if temperature < 0:
        raise ValueError("negative temperature")
    if temperature == 0:
        return logits.argmax(-1)
    log_p = torch.log_softmax(logits / temperature, dim=-1)
    return (log_p - torch.log(-torch.log(uniform.to(logits.dtype)))).argmax(-1)
''',
    # decode_attention: exp2 in the split kernel, lse computed first in the combine.
    _decode(split=[("s = tl.sum(k * q[None, :], 1) * scale", "s = tl.sum(k * q[None, :], 1) * (scale * 1.4426950408889634)"),
                   ("p = tl.exp(s - m)", "p = tl.exp2(s - m)"),
                   ("lse = tl.where(l > 0, m + tl.log(l_safe), float(\"-inf\"))",
                    "lse = tl.where(l > 0, (m + tl.log2(l_safe)) * 0.6931471805599453, float(\"-inf\"))")],
            combine=[("w = tl.exp(lse_i - m)\n    w = w / tl.sum(w, 0)",
                      "lse = m + tl.log(tl.sum(tl.exp(lse_i - m), 0))\n    w = tl.exp(lse_i - lse)")]),
]
