"""The torch side of overoptimization sweeps: policy, reward models, sampling, RL and DPO.

Everything is a Hugging Face model built from a config (``LlamaForCausalLM`` for
the policy, ``LlamaForSequenceClassification`` with a scalar head for reward
models), driven by short, readable torch loops:

* ``sample``: batched generation with the KV cache, returning the completion and
  its per-token log-probabilities under the sampling policy.
* ``train_reward_model``: Bradley-Terry, ``-log sigma(r(x, y_w) - r(x, y_l))``, one epoch.
* ``rl``: RLOO (REINFORCE with a leave-one-out baseline) on the proxy reward
  minus ``kl_coef`` times the sequence log-ratio to the initial policy.
* ``dpo``: direct preference optimisation on the preference pairs.

The sequence KL recorded at checkpoints is ``E_y~pi sum_t KL(pi(.|y<t) || pi0(.|y<t))``,
exact over the vocabulary at each sampled prefix: unbiased for the sequence KL
and never negative, unlike the sampled log-ratio (which is returned beside it).

This module never imports the fitting side.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, Iterator

import numpy as np

from .gold import Gold


def _torch():
    import torch

    return torch


# ----------------------------------------------------------------- language
def language(vocab: int, states: int, seed: int):
    """The initial policy's training language: a random unifilar automaton over ``vocab`` tokens."""
    from ..sweep.corpus import Automaton

    return Automaton.random(states, branching=4, concentration=1.0, seed=[seed, 3], vocab=vocab)


# ------------------------------------------------------------------- models
def build_policy(vocab: int, d_model: int, n_layer: int, n_head: int, max_len: int):
    import transformers

    from ..sweep.train import llama_config

    return transformers.LlamaForCausalLM(llama_config(vocab, d_model, n_layer, n_head, max_len, use_cache=True))


def build_reward_model(vocab: int, d_model: int, n_layer: int, n_head: int, max_len: int):
    """A scalar-head sequence classifier; the reward is read at the last token (no padding is used).

    Token ``vocab`` is the pad token: it never occurs, so the last position is always read.
    """
    import transformers

    from ..sweep.train import llama_config

    conf = llama_config(vocab + 1, d_model, n_layer, n_head, max_len, tie_word_embeddings=False, num_labels=1,
                        pad_token_id=vocab)
    return transformers.LlamaForSequenceClassification(conf)


def n_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _update(model, opt, loss, progress: Callable[[int], None] | None = None, n: int = 1) -> None:
    """Backward, clip the gradient norm at 1, step, clear; report ``n`` units of progress."""
    torch = _torch()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    if progress:
        progress(n)


def pretrain(model, tokens: np.ndarray, *, steps: int, batch: int, seq_len: int, lr: float, seed: int,
             progress: Callable[[int], None] | None = None) -> float:
    """Next-token training of the initial policy; returns the last loss."""
    torch = _torch()
    import torch.nn.functional as F

    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng([seed, 5])
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / max(1, steps // 10)) * 0.5 * (1 + math.cos(math.pi * step / steps))
        starts = rng.integers(0, len(tokens) - seq_len - 1, size=batch)
        x = torch.from_numpy(np.stack([tokens[s:s + seq_len + 1] for s in starts]).astype(np.int64))
        x = x.to(next(model.parameters()).device)
        logits = model(input_ids=x[:, :-1], use_cache=False).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        _update(model, opt, loss, progress)
    return float(loss.detach())


# ----------------------------------------------------------------- sampling
def sample(model, prompts, length: int, *, generator=None, temperature: float = 1.0):
    """Sample ``length`` tokens after each prompt with the KV cache.

    Returns (completions (B, length) long, log-probs (B, length) of the sampled tokens).
    """
    torch = _torch()
    # transformers 5.x names the KV cache `cache` (`past_key_values` warns that it goes); 4.x only knows the old name
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.no_grad():
        out = model(input_ids=prompts, use_cache=True)
        past, logits = getattr(out, key), out.logits[:, -1]
        toks, lps = [], []
        for t in range(length):
            logp = torch.log_softmax(logits.float() / temperature, dim=-1)
            nxt = torch.multinomial(logp.exp(), 1, generator=generator)
            toks.append(nxt)
            lps.append(logp.gather(1, nxt))
            if t + 1 < length:
                out = model(input_ids=nxt, use_cache=True, **{key: past})
                past, logits = getattr(out, key), out.logits[:, -1]
    return torch.cat(toks, 1), torch.cat(lps, 1)


def token_logprobs(model, prompts, completions, *, full: bool = False):
    """log pi(y_t | x, y<t) for each completion token (B, T); with ``full`` also the (B, T, V) log-softmax."""
    torch = _torch()
    x = torch.cat([prompts, completions], 1)
    logits = model(input_ids=x[:, :-1], use_cache=False).logits[:, prompts.shape[1] - 1:]
    logp = torch.log_softmax(logits.float(), dim=-1)
    lp = logp.gather(2, completions.unsqueeze(-1)).squeeze(-1)
    return (lp, logp) if full else lp


def sequence_kl(policy, ref, prompts, completions) -> tuple:
    """Per-sequence KL(pi || pi0): exact per-token sums over the vocabulary, and the sampled log-ratio."""
    torch = _torch()
    with torch.no_grad():
        lp, full = token_logprobs(policy, prompts, completions, full=True)
        lp0, full0 = token_logprobs(ref, prompts, completions, full=True)
        exact = (full.exp() * (full - full0)).sum(-1).sum(-1)
        sampled = (lp - lp0).sum(-1)
    return exact, sampled


def score(rm, prompts, completions, batch: int = 4096):
    """Scalar rewards (numpy) of prompt + completion under a reward model."""
    torch = _torch()
    out = []
    with torch.no_grad():
        x = torch.cat([prompts, completions], 1)
        for i in range(0, len(x), batch):
            out.append(rm(input_ids=x[i:i + batch]).logits[:, 0].float())
    return torch.cat(out).cpu().numpy().astype(float)


# ------------------------------------------------------------- reward models
def train_reward_model(rm, prompts, chosen, rejected, *, lr: float, batch: int, seed: int,
                       progress: Callable[[int], None] | None = None) -> float:
    """One epoch of Bradley-Terry on (prompt, chosen, rejected); returns the mean training loss."""
    torch = _torch()
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(prompts), generator=g).to(prompts.device)
    opt = torch.optim.AdamW(rm.parameters(), lr=lr, weight_decay=0.0)
    n_steps = max(1, math.ceil(len(order) / batch))
    total = 0.0
    for i in range(n_steps):
        for grp in opt.param_groups:  # linear warmup over 5% then linear decay
            grp["lr"] = lr * min(1.0, (i + 1) / max(1, n_steps // 20)) * (1 - i / n_steps)
        idx = order[i * batch:(i + 1) * batch]
        x_w = torch.cat([prompts[idx], chosen[idx]], 1)
        x_l = torch.cat([prompts[idx], rejected[idx]], 1)
        r = rm(input_ids=torch.cat([x_w, x_l])).logits[:, 0]
        loss = -F.logsigmoid(r[:len(idx)] - r[len(idx):]).mean()
        total += float(loss.detach()) * len(idx)
        _update(rm, opt, loss, progress, len(idx))
    return total / len(order)


# -------------------------------------------------------------------- RL
def evaluate_policy(policy, ref, rm, gold: Gold, prompts, length: int, *, rm_offset: float, seed: int,
                    per_prompt: int = 4) -> dict:
    """Held-out evaluation: sequence KL (exact and sampled), proxy and gold, per prompt and overall."""
    torch = _torch()
    g = torch.Generator(device=prompts.device).manual_seed(seed)
    P = prompts.repeat_interleave(per_prompt, 0)
    y, _ = sample(policy, P, length, generator=g)
    kl, kl_sampled = sequence_kl(policy, ref, P, y)
    proxy = score(rm, P, y) - rm_offset if rm is not None else np.full(len(P), np.nan)
    gold_v = gold(y.cpu().numpy())
    B = len(prompts)
    return {
        "kl": kl.cpu().numpy().reshape(B, per_prompt).mean(1),
        "kl_sampled": kl_sampled.cpu().numpy().reshape(B, per_prompt).mean(1),
        "proxy": proxy.reshape(B, per_prompt).mean(1),
        "gold": gold_v.reshape(B, per_prompt).mean(1),
    }


def rl(policy, ref, rm, prompts, length: int, *, steps: int, kl_coef: float, lr: float, batch_prompts: int,
       samples_per_prompt: int, rm_offset: float, seed: int,
       on_checkpoint: Callable[[int], None], every: int, progress: Callable[[int], None] | None = None,
       baseline: str = "rloo") -> None:
    """RLOO against the proxy reward with a KL penalty; calls ``on_checkpoint(step)`` every ``every`` steps.

    The reward of a completion is ``proxy(x, y) - kl_coef * (log pi(y|x) - log pi0(y|x))``;
    its advantage is that minus the mean of the other samples for the same prompt (``baseline="rloo"``, k >= 2),
    or of every other sample in the batch (``baseline="batch"``, which allows one sample per prompt).
    """
    torch = _torch()
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    k = samples_per_prompt
    if baseline not in ("rloo", "batch") or (baseline == "rloo" and k < 2) or k * batch_prompts < 2:
        raise ValueError(f"RL baseline {baseline!r} cannot be used with {k} sample(s) per prompt and "
                         f"{batch_prompts} prompt(s) per batch (RLOO needs k >= 2; the batch baseline 2 samples)")
    for step in range(steps):
        g = torch.Generator(device=prompts.device).manual_seed(seed * 1_000_003 + step)
        idx = torch.randint(0, len(prompts), (batch_prompts,), generator=g, device=prompts.device)
        P = prompts[idx].repeat_interleave(k, 0)
        y, _ = sample(policy, P, length, generator=g)
        lp = token_logprobs(policy, P, y).sum(-1)
        with torch.no_grad():
            lp0 = token_logprobs(ref, P, y).sum(-1)
            r = torch.from_numpy(score(rm, P, y) - rm_offset).float().to(lp.device) - kl_coef * (lp.detach() - lp0)
            if baseline == "rloo":
                r = r.view(batch_prompts, k)
                adv = (r - (r.sum(1, keepdim=True) - r) / (k - 1)).view(-1)
            else:
                adv = r - (r.sum() - r) / (len(r) - 1)
        _update(policy, opt, -(adv * lp).mean(), progress)
        if (step + 1) % every == 0:
            on_checkpoint(step + 1)


def dpo(policy, ref, prompts, chosen, rejected, *, beta: float, lr: float, batch: int, epochs: int, seed: int,
        on_checkpoint: Callable[[int], None], every: int, progress: Callable[[int], None] | None = None):
    """DPO: -log sigma(beta [(log pi - log pi0)(y_w) - (log pi - log pi0)(y_l)]) over the pairs."""
    torch = _torch()
    import torch.nn.functional as F

    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    step = 0
    with torch.no_grad():
        ref_w = token_logprobs(ref, prompts, chosen).sum(-1)
        ref_l = token_logprobs(ref, prompts, rejected).sum(-1)
    for _ in range(epochs):
        order = torch.randperm(len(prompts), generator=g).to(prompts.device)
        for i in range(0, len(order) - batch + 1, batch):
            idx = order[i:i + batch]
            lw = token_logprobs(policy, prompts[idx], chosen[idx]).sum(-1)
            ll = token_logprobs(policy, prompts[idx], rejected[idx]).sum(-1)
            _update(policy, opt, -F.logsigmoid(beta * ((lw - ref_w[idx]) - (ll - ref_l[idx]))).mean(), progress)
            step += 1
            if step % every == 0:
                on_checkpoint(step)
    return step


def batches(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))
