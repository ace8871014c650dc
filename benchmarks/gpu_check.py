"""The sweep trainer on one GPU: tokens/s and model FLOPs utilisation per size, what bf16, the fused AdamW and
fewer host syncs buy, and what several workers per GPU buy for small models.

    python benchmarks/gpu_check.py [--out DIR] [--quick]

Every number comes from the package's own training path (``scaling.sweep.train.run_worker`` and
``scaling.sweep.run_sweep``), not a stand-in. The baseline, measured in the same process first, is a large bf16
matrix product: MFU is reported against it and against the device's data-sheet peak where the script knows it.

Model FLOPs per trained token: 6 * N_total (every weight matrix, the tied output layer included) plus Kaplan et al.'s
attention term 6 * n_layer * seq_len * d_model. Needs a CUDA GPU; prints one line and exits 0 where there is none.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: dense bf16 tensor-core peaks from the vendors' data sheets (FLOP/s), matched on the device name
DATASHEET_BF16 = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12, "L40S": 362.05e12, "A10G": 70e12,
                  "L4": 121e12, "RTX 4090": 165.2e12}


def matmul_peak(torch, n: int = 8192, reps: int = 10) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def base_spec(shapes, seq_len, tps, steps, name="gpu-check"):
    return {"name": name, "model": {"family": "llama", "shapes": shapes, "seq_len": seq_len},
            "grid": {"tokens": [steps * tps], "min_steps": 1}, "batch": {"tokens_per_step": tps},
            "corpus": {"name": "synthetic", "tokens": 32_000_000}, "schedule": {"type": "cosine", "warmup": 0.05},
            "optimizer": {"lr": 1e-3},
            # only the final evaluation, on a small sample; no checkpoints during these short runs
            "eval": {"every": steps + 1, "tokens": 65536, "curve_tokens": 65536},
            "checkpoint": {"every": steps + 1}}


def model_flops_per_token(cfg) -> float:
    return 6.0 * cfg["N_total"] + 6.0 * cfg["n_layer"] * cfg["seq_len"] * cfg["d_model"]


def train_once(cfg, device=None, patch_plan=None):
    """One run through the package's trainer in this process; returns its result."""
    from scaling.sweep import train

    cfg = {**cfg, "device": device or {}}
    real = train.device_plan
    if patch_plan:
        train.device_plan = lambda c, t: {**real(c, t), **patch_plan}
    try:
        with tempfile.TemporaryDirectory() as d:
            return train.run_worker(cfg, d)
    finally:
        train.device_plan = real


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder for gpu_check.json (and the printed table as .txt)")
    ap.add_argument("--quick", action="store_true", help="fewer sizes and steps (a smoke test)")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing to measure")
        return 0
    from scaling.sweep.spec import expand, load_spec

    name = torch.cuda.get_device_name(0)
    sheet = next((v for k, v in DATASHEET_BF16.items() if k in name), None)
    lines, report = [], {"device": name, "torch": torch.__version__, "python": platform.python_version(),
                         "date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count()}

    def say(text=""):
        print(text, flush=True)
        lines.append(text)

    peak = matmul_peak(torch)
    report["matmul_bf16_flops"] = peak
    say(f"{name}, torch {torch.__version__}; bf16 8192^3 matmul in this process: {peak / 1e12:.0f} TFLOP/s"
        + (f" (data sheet {sheet / 1e12:.0f})" if sheet else ""))

    # 1. tokens/s and MFU per size (bf16, fused AdamW, a host sync every 32 steps: the trainer's GPU defaults)
    sizes = [(128, 4, 4), (256, 6, 4), (512, 8, 8), (768, 12, 12), (1024, 16, 16)]
    if args.quick:
        sizes = sizes[:2]
    seq, tps, steps = 512, 65536, 12 if args.quick else 40
    # one untimed run first: CUDA's lazy start-up and kernel selection would otherwise be charged to the first size
    train_once(expand(load_spec(base_spec([{"n_layer": 2, "d_model": 128, "n_head": 4}], seq, tps, 10)))[0])
    say("\n1. one run per size with the trainer's GPU defaults (seq 512, 65,536 tokens per step, fused AdamW, a host "
        "sync every 32 steps, bf16 autocast from d_model 256, float32 with tf32 matmuls below)")
    say(f"{'d_model':>7} {'layers':>6} {'N_total':>12} {'tokens/s':>12} {'TFLOP/s':>8} {'MFU(matmul)':>11} "
        f"{'MFU(sheet)':>10} {'loss':>7}")
    rows = []
    for d, L, H in sizes:
        cfg = expand(load_spec(base_spec([{"n_layer": L, "d_model": d, "n_head": H}], seq, tps, steps)))[0]
        res = train_once(cfg)
        fl = model_flops_per_token(cfg) * res["tokens_per_s"]
        row = {"d_model": d, "n_layer": L, "N": cfg["N"], "N_total": cfg["N_total"], "tokens_per_s": res["tokens_per_s"],
               "model_flops": fl, "mfu_vs_matmul": fl / peak, "mfu_vs_datasheet": fl / sheet if sheet else None,
               "final_eval_loss": res["final_eval_loss"], "steps": steps}
        rows.append(row)
        say(f"{d:>7} {L:>6} {cfg['N_total']:>12,} {res['tokens_per_s']:>12,.0f} {fl / 1e12:>8.1f} "
            f"{fl / peak:>11.1%} {(fl / sheet if sheet else float('nan')):>10.1%} {res['final_eval_loss']:>7.3f}")
    report["sizes"] = rows

    # 2. what each GPU setting buys, at a small and a mid size
    say("\n2. each GPU setting against its alternative (tokens/s, ratio = first / second)")
    variants = [("bf16 autocast vs fp32 (tf32 matmuls)", {"precision": "bf16"}, {"precision": "fp32"}, None),
                ("fused AdamW vs the for-each AdamW", None, None, {"fused_adamw": False}),
                ("sync every 32 steps vs every step", None, {"sync_every": 1}, None)]
    abl = []
    for d, L, H, tps_a, steps_a in [(128, 2, 4, 16384, 60 if not args.quick else 20),
                                    (768, 12, 12, 65536, 20 if not args.quick else 8)]:
        cfg = expand(load_spec(base_spec([{"n_layer": L, "d_model": d, "n_head": H}], seq, tps_a, steps_a)))[0]
        for label, first, device, patch in variants:
            default = train_once(cfg, device=first)["tokens_per_s"]
            alt = train_once(cfg, device=device, patch_plan=patch)["tokens_per_s"]
            abl.append({"d_model": d, "n_layer": L, "setting": label, "default_tokens_per_s": default,
                        "alternative_tokens_per_s": alt, "ratio": default / alt})
            say(f"  d_model {d:>4}, {L:>2} layers: {label:<38} {default:>12,.0f} vs {alt:>12,.0f}  x{default / alt:.2f}")
    report["settings"] = abl

    # 3. several small runs sharing the GPU: a sweep of 8 runs with 1, 2, 4 workers per GPU
    from scaling.sweep import run_sweep

    say("\n3. a sweep of 8 small runs (d_model 64-128, 2 layers, seq 128) with k workers per GPU")
    shapes = [{"n_layer": 2, "d_model": dm, "n_head": 4} for dm in (64, 96, 128, 112)]
    wrows = []
    for k in (1, 2, 4) if not args.quick else (1, 2):
        spec = base_spec(shapes, 128, 8192, 150, name=f"gpu-check-w{k}")
        spec["seeds"] = [0, 1]
        with tempfile.TemporaryDirectory() as root:
            t = time.perf_counter()
            runs = run_sweep(spec, root=root, progress=False, workers_per_gpu=k)
            wall = time.perf_counter() - t
        done = runs[runs["status"] == "done"]
        tokens = float(sum(json.loads(c)["D"] for c in done["config"]))
        per_run = [json.loads(r)["tokens_per_s"] for r in done["result"]]
        wrows.append({"workers_per_gpu": k, "runs": len(done), "wall_s": wall, "tokens_per_s_total": tokens / wall,
                      "tokens_per_s_per_run_mean": sum(per_run) / len(per_run)})
        say(f"  {k} worker(s) per GPU: {len(done)} runs in {wall:6.1f} s, {tokens / wall:>12,.0f} tokens/s over the sweep, "
            f"{wrows[-1]['tokens_per_s_per_run_mean']:>10,.0f} per run while training"
            + (f"  (x{wrows[0]['wall_s'] / wall:.2f} faster than 1)" if k > 1 else ""))
    report["workers_per_gpu"] = wrows

    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
        (out / "gpu_check.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
