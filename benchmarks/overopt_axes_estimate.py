"""How long sweeps/overopt-axes-cpu.yaml's RL cells take: one RL step per policy shape and samples per prompt.

    python benchmarks/overopt_axes_estimate.py [--steps 3] [--definition sweeps/overopt-axes-cpu.yaml]

For each policy on the definition's ``policy.shapes`` axis and each k of its ``rl.samples_per_prompt``,
the mean time of an RL step (``scaling.overopt.models.rl``: generate batch_prompts x k completions,
score them with the definition's reward model, log-probs under policy and reference, update) on one thread.
The ratio column is against k = 1 of the same policy, measured in the same process. The last lines multiply
the per-step times by the definition's steps, KL penalties and seeds to give the RL cells' total worker time.
That total leaves out checkpoint evaluation, pretraining, data, reward models and best-of-n. Numbers taken
while other jobs share the cores are inflated; the ratios are the comparable part.
"""

from __future__ import annotations

import argparse
import time

import torch

from scaling.overopt import load_spec
from scaling.overopt import models as M


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--definition", default="sweeps/overopt-axes-cpu.yaml")
    args = ap.parse_args()
    torch.set_num_threads(1)
    spec = load_spec(args.definition)
    r, V = spec["rl"], spec["policy"]["vocab"]
    L = spec["prompt_len"] + spec["completion_len"] + 1
    torch.manual_seed(0)
    rm = M.build_reward_model(V, *spec["reward_models"]["shapes"][0], L).eval()
    prompts = torch.randint(0, V, (512, spec["prompt_len"]))
    ks = r["samples_per_prompt"] if isinstance(r["samples_per_prompt"], list) else [r["samples_per_prompt"]]
    total = 0.0
    print(f"{'policy':<14}{'k':>4}{'batch':>7}{'s/step':>9}{'vs k=1':>8}")
    for sh in spec["policy"].get("shapes") or [[spec["policy"][k] for k in ("d_model", "n_layer", "n_head")]]:
        pol, ref = M.build_policy(V, *sh, L), M.build_policy(V, *sh, L).eval()
        base = None
        for k in ks:
            M.rl(pol, ref, rm, prompts, spec["completion_len"], steps=1, kl_coef=0.0, lr=float(r["lr"]),
                 batch_prompts=r["batch_prompts"], samples_per_prompt=k, rm_offset=0.0, seed=1,
                 on_checkpoint=lambda s: None, every=10**9, baseline=r.get("baseline") or "rloo")  # warm-up
            t0 = time.perf_counter()
            M.rl(pol, ref, rm, prompts, spec["completion_len"], steps=args.steps, kl_coef=0.0, lr=float(r["lr"]),
                 batch_prompts=r["batch_prompts"], samples_per_prompt=k, rm_offset=0.0, seed=0,
                 on_checkpoint=lambda s: None, every=10**9, baseline=r.get("baseline") or "rloo")
            t = (time.perf_counter() - t0) / args.steps
            base = base or t
            total += t
            print(f"{'d%d-l%d-h%d' % tuple(sh):<14}{k:>4}{r['batch_prompts'] * k:>7}{t:>9.3f}{t / base:>8.2f}",
                  flush=True)
    runs = r["steps"] * len(r["kl_penalty"]) * len(spec["seeds"])
    print(f"RL steps of every (policy, k) once: {total:.2f} s; x {r['steps']} steps x {len(r['kl_penalty'])} KL "
          f"penalties x {len(spec['seeds'])} seeds = {total * runs / 60:.1f} worker-minutes of RL steps "
          f"({total * runs / 120:.1f} min on 2 workers)")


if __name__ == "__main__":
    main()
