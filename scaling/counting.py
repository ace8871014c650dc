"""Parameter and FLOP counting for decoder-only transformers.

One place for these numbers, shared by the fitting side (``C = 6 N D``) and the
sweep runner (model shapes -> N). Kaplan et al. 2020 count *non-embedding*
parameters, ``N ~ 12 n_layer d_model^2``; Hoffmann et al. 2022 count all of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import SettingsError

#: FLOPs in one petaflop/s-day (Kaplan et al. 2020 report compute in PF-days)
PF_DAY = 1e15 * 24 * 3600


@dataclass(frozen=True)
class ParamCount:
    non_embedding: int
    embedding: int
    total: int

    def to_dict(self) -> dict:
        return asdict(self)


def count_params(n_layer: int, d_model: int, *, n_head: int | None = None, n_kv_head: int | None = None,
                 d_ff: int | None = None, vocab_size: int = 256, n_ctx: int = 1024, family: str = "llama",
                 tie_embeddings: bool = True) -> ParamCount:
    """Exact parameter count of a Llama- or GPT-2-style decoder.

    ``family="llama"``: RMSNorm (weight only), no biases, gated MLP (3 matrices),
    rotary positions (no position embedding). ``family="gpt2"``: LayerNorm with
    bias, biases everywhere, 2-matrix MLP, learned position embeddings (counted
    as embedding). Non-embedding = everything but token/position embeddings and an
    untied output head.
    """
    if n_layer < 1 or d_model < 1:
        raise SettingsError(f"need n_layer >= 1 and d_model >= 1, got {n_layer}, {d_model}")
    n_head = n_head or max(1, d_model // 64)
    if d_model % n_head:
        raise SettingsError(f"d_model={d_model} is not divisible by n_head={n_head}")
    head = d_model // n_head
    n_kv_head = n_kv_head or n_head
    if family == "llama":
        d_ff = d_ff or 4 * d_model
        attn = d_model * head * (n_head + 2 * n_kv_head) + n_head * head * d_model
        mlp = 3 * d_model * d_ff
        norms = 2 * d_model
        per_layer = attn + mlp + norms
        final_norm = d_model
        emb = vocab_size * d_model
    elif family == "gpt2":
        d_ff = d_ff or 4 * d_model
        attn = d_model * 3 * d_model + 3 * d_model + d_model * d_model + d_model
        mlp = d_model * d_ff + d_ff + d_ff * d_model + d_model
        norms = 2 * 2 * d_model
        per_layer = attn + mlp + norms
        final_norm = 2 * d_model
        emb = vocab_size * d_model + n_ctx * d_model
    else:
        raise SettingsError(f"unknown family {family!r}; use 'llama' or 'gpt2'")
    non_emb = n_layer * per_layer + final_norm
    head_params = 0 if tie_embeddings else vocab_size * d_model
    return ParamCount(non_embedding=int(non_emb), embedding=int(emb + head_params),
                      total=int(non_emb + emb + head_params))


def kaplan_params(n_layer: int, d_model: int, d_attn: int | None = None, d_ff: int | None = None) -> int:
    """Kaplan et al.'s approximation: N = 2 d_model n_layer (2 d_attn + d_ff) (= 12 n_layer d_model^2)."""
    d_attn = d_model if d_attn is None else d_attn
    d_ff = 4 * d_model if d_ff is None else d_ff
    return int(2 * d_model * n_layer * (2 * d_attn + d_ff))


def flops_6nd(N, D, k: float = 6.0):
    """Training FLOPs ~ k N D (k = 6: forward 2ND, backward 4ND)."""
    return k * np.asarray(N, float) * np.asarray(D, float)


def flops_kaplan(N, D, n_layer: int, n_ctx: int, d_attn: int):
    """Kaplan et al. 2020 (Table 1): 6 N D plus the attention term 6 n_layer n_ctx d_attn per token."""
    return 6.0 * np.asarray(N, float) * np.asarray(D, float) + 6.0 * n_layer * n_ctx * d_attn * np.asarray(D, float)
