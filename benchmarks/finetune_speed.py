"""Fine-tuning speed: a training step of each method, as a ratio to full fine-tuning of the same base model.

    python benchmarks/finetune_speed.py [--steps 30] [--threads 1]

For base Llamas of several widths (2 layers, 4 heads, vocabulary 256, context 128), the time of one
training step of the package's fine-tuning cell (``scaling.finetune.cells``: forward over
``tokens_per_step`` tokens in ``seq_len`` windows, backward, clip, AdamW) for ``full``, ``lora``
(rank 4 on q and v) and ``prompt`` (8 virtual tokens), measured in the same process; the baseline
of each row is full fine-tuning of that base. The ratios, and the steps a second, size the CPU
fine-tuning sweep (sweeps/finetune-cpu.yaml).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from scaling.finetune.cells import _token_losses, trainable, wrap
from scaling.finetune.spec import read_base
from scaling.sweep.train import _batch, llama_config

SEQ, TPS = 64, 1024
CASES = [("full", {}), ("lora", {"rank": 4}), ("prompt", {"virtual_tokens": 8})]


def time_steps(model, steps: int) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    data = np.random.default_rng(0).integers(0, 256, 200_000).astype(np.uint8)
    n_seq = TPS // SEQ
    model.train()
    for step in range(3):  # warm up
        _token_losses(model, _batch(data, 0, step, n_seq, SEQ), SEQ).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    t = time.perf_counter()
    for step in range(steps):
        loss = _token_losses(model, _batch(data, 0, step, n_seq, SEQ), SEQ).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--widths", default="32,64,96")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    tmp = Path(tempfile.mkdtemp())
    print(f"{'d_model':>8} {'N':>9} {'method':>7} {'tuned':>9} {'ms/step':>9} {'steps/s':>8} {'vs full':>8}")
    for width in (int(w) for w in args.widths.split(",")):
        folder = tmp / f"d{width}"
        torch.manual_seed(0)
        transformers.LlamaForCausalLM(llama_config(256, width, 2, 4, 128)).save_pretrained(folder)
        base = read_base(folder, D_pretrain=1.0)
        full = None
        for method, extra in CASES:
            model = transformers.AutoModelForCausalLM.from_pretrained(folder)
            model = wrap(model, {"method": method, "seed": 0, **extra}, base)
            sec = time_steps(model, args.steps)
            full = sec if method == "full" else full
            print(f"{width:>8} {base['N']:>9,} {method:>7} {trainable(model):>9,} {1000 * sec:>9.1f} "
                  f"{1 / sec:>8.1f} {sec / full:>8.2f}")


if __name__ == "__main__":
    main()
