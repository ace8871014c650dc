"""Overoptimization speed: one RL step and best-of-n scoring, package vs a plain-torch Llama of the same shapes.

    python benchmarks/overopt_speed.py [--repeats 5]

Package: ``scaling.overopt.models`` (Hugging Face LlamaForCausalLM /
LlamaForSequenceClassification; generation with the KV cache, batched over all
prompts). Baseline: a hand-written Llama block stack (RMSNorm, rotary
embeddings, SDPA attention, SwiGLU, tied embeddings) with its own KV cache, the
same parameter count, in the same process. An RL step is generation (batch x 16
tokens), proxy scoring, log-probs under the policy and the reference, and the
RLOO update. Also shown: generation without a KV cache (recomputing the prefix
every token), the cost the cache removes.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from scaling.overopt import models as M

V, PL, T = 32, 8, 16


def rope(x, pos, base=10000.0):
    d = x.shape[-1]
    inv = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    ang = pos[:, None].float() * inv[None]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.n1, self.n2 = nn.RMSNorm(d, eps=1e-5), nn.RMSNorm(d, eps=1e-5)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.gate, self.up, self.down = nn.Linear(d, 4 * d, bias=False), nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x, pos, cache=None):
        B, L, C = x.shape
        hx = self.n1(x)
        q, k, v = (f(hx).view(B, L, self.h, C // self.h).transpose(1, 2) for f in (self.q, self.k, self.v))
        q, k = rope(q, pos), rope(k, pos)
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=L > 1).transpose(1, 2).reshape(B, L, C)
        x = x + self.o(y)
        hx = self.n2(x)
        return x + self.down(F.silu(self.gate(hx)) * self.up(hx))


class PlainLlama(nn.Module):
    def __init__(self, d, L, h, vocab=V, head=False):
        super().__init__()
        self.emb = nn.Embedding(vocab + int(head), d)
        self.blocks = nn.ModuleList(Block(d, h) for _ in range(L))
        self.norm = nn.RMSNorm(d, eps=1e-5)
        self.score = nn.Linear(d, 1, bias=False) if head else None

    def forward(self, idx, caches=None, start=0):
        x = self.emb(idx)
        pos = torch.arange(start, start + idx.shape[1])
        for i, b in enumerate(self.blocks):
            x = b(x, pos, None if caches is None else caches[i])
        x = self.norm(x)
        return self.score(x[:, -1])[:, 0] if self.score is not None else x @ self.emb.weight.T


def plain_sample(model, prompts, length, g, cache=True):
    with torch.no_grad():
        caches = [[] for _ in model.blocks] if cache else None
        logits = model(prompts, caches)[:, -1]
        seq = prompts
        out = []
        for t in range(length):
            nxt = torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=g)
            out.append(nxt)
            seq = torch.cat([seq, nxt], 1)
            if t + 1 < length:
                logits = (model(nxt, caches, start=seq.shape[1] - 1) if cache else model(seq))[:, -1]
    return torch.cat(out, 1)


def plain_logprobs(model, prompts, y):
    x = torch.cat([prompts, y], 1)
    logp = torch.log_softmax(model(x[:, :-1])[:, prompts.shape[1] - 1:].float(), -1)
    return logp.gather(2, y.unsqueeze(-1)).squeeze(-1)


def rl_step_package(pi, ref, rm, opt, P, g, k=4):
    y, _ = M.sample(pi, P, T, generator=g)
    lp = M.token_logprobs(pi, P, y).sum(-1)
    with torch.no_grad():
        lp0 = M.token_logprobs(ref, P, y).sum(-1)
        r = torch.from_numpy(M.score(rm, P, y)).float() - 0.05 * (lp.detach() - lp0)
        r = r.view(-1, k)
        adv = (r - (r.sum(1, keepdim=True) - r) / (k - 1)).view(-1)
    (-(adv * lp).mean()).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def rl_step_plain(pi, ref, rm, opt, P, g, k=4):
    y = plain_sample(pi, P, T, g)
    lp = plain_logprobs(pi, P, y).sum(-1)
    with torch.no_grad():
        lp0 = plain_logprobs(ref, P, y).sum(-1)
        r = rm(torch.cat([P, y], 1)) - 0.05 * (lp.detach() - lp0)
        r = r.view(-1, k)
        adv = (r - (r.sum(1, keepdim=True) - r) / (k - 1)).view(-1)
    (-(adv * lp).mean()).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def best_of(fn, repeats):
    fn()  # warm up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows, notes = [], []
    for (d, L, h), (rd, rL, rh), batch in [((64, 2, 4), (64, 2, 4), 64), ((128, 4, 4), (64, 2, 4), 64)]:
        pi, ref = M.build_policy(V, d, L, h, 32).eval(), M.build_policy(V, d, L, h, 32).eval()
        rm = M.build_reward_model(V, rd, rL, rh, 32).eval()
        ppi, pref, prm = PlainLlama(d, L, h).eval(), PlainLlama(d, L, h).eval(), PlainLlama(rd, rL, rh, head=True).eval()
        assert sum(p.numel() for p in ppi.parameters()) == M.n_params(pi)
        assert sum(p.numel() for p in prm.parameters()) == M.n_params(rm)
        P = torch.randint(0, V, (batch, PL))
        opt = torch.optim.Adam(pi.parameters(), lr=1e-5)
        popt = torch.optim.Adam(ppi.parameters(), lr=1e-5)
        g = torch.Generator().manual_seed(0)
        t_pkg = best_of(lambda: rl_step_package(pi, ref, rm, opt, P, g), args.repeats)
        t_pl = best_of(lambda: rl_step_plain(ppi, pref, prm, popt, P, g), args.repeats)
        t_gen = best_of(lambda: M.sample(pi, P, T, generator=g), args.repeats)
        t_gen_pl = best_of(lambda: plain_sample(ppi, P, T, g), args.repeats)
        t_nocache = best_of(lambda: plain_sample(ppi, P, T, g, cache=False), args.repeats)
        rows.append((f"RL step, policy {M.n_params(pi):,} / RM {M.n_params(rm):,}, batch {batch}", t_pkg, t_pl))
        rows.append((f"  generation only ({batch} x {T} tokens, KV cache)", t_gen, t_gen_pl))
        notes.append(f"plain generation of {batch} x {T} tokens, policy {M.n_params(pi):,}: {t_nocache:.4f} s without "
                     f"a KV cache, {t_gen_pl:.4f} s with it ({t_nocache / t_gen_pl:.1f}x)")
    # best-of-n scoring: 1,000 samples for one prompt through each reward model
    for rd, rL, rh in [(16, 1, 2), (64, 2, 4)]:
        rm = M.build_reward_model(V, rd, rL, rh, 32).eval()
        prm = PlainLlama(rd, rL, rh, head=True).eval()
        X = torch.randint(0, V, (1000, PL + T))
        t_pkg = best_of(lambda: M.score(rm, X[:, :PL], X[:, PL:]), args.repeats)
        t_pl = best_of(lambda: torch.no_grad()(prm)(X), args.repeats)
        rows.append((f"BoN scoring, RM {M.n_params(rm):,}: 1,000 sequences/s = {1000 / t_pkg:,.0f} (package)", t_pkg, t_pl))
    print(f"{'case':<74}{'package s':>11}{'plain s':>10}{'plain/pkg':>11}")
    for name, a, b in rows:
        print(f"{name:<74}{a:11.4f}{b:10.4f}{b / a:11.2f}")
    for n in notes:
        print(n)


if __name__ == "__main__":
    main()
