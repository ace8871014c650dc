"""What sweeps/finetune-cpu.yaml will cost, before it runs: its cells, and the CPU seconds of real cells.

    OMP_NUM_THREADS=1 python benchmarks/finetune_plan.py [--widths 32 64] [--out DIR]

Stand-in base models with the shapes of sweeps/base-finetune-cpu.yaml (random weights, saved with save_pretrained:
what a cell costs does not depend on them) are registered as a finished pretraining sweep under DIR (a temporary
folder by default); the fine-tuning definition is then loaded and expanded against them (every check it makes
before training runs), and cells of the smallest and largest D_f are fine-tuned, one thread, timed in CPU seconds
of this process (less sensitive to other load than wall time). The ratio column is each cell's CPU time against
full fine-tuning of the narrowest base model at the smallest D_f, measured in the same process. The estimate
fits a line (seconds = overhead + per-step x steps) per width and method, and sums it over the sweep's cells.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parents[1] / "scaling" / "sweep_defs"


def stand_in_bases(root: Path) -> None:
    import torch

    from scaling.sweep import expand, load_spec
    from scaling.sweep.store import Store
    from scaling.sweep.train import build_model

    runs = expand(load_spec(HERE / "base-finetune-cpu.yaml"))
    store = Store(root / "base-finetune-cpu" / "sweep.sqlite")
    store.sync(runs)
    for cfg in runs:
        folder = root / "base-finetune-cpu" / "runs" / cfg["run_id"] / "model"
        if not (folder / "config.json").exists():
            torch.manual_seed(0)
            build_model(cfg).save_pretrained(folder)
        store.set_status(cfg["run_id"], "done", result={"status": "done"})


def steps_of(cell: dict) -> int:
    return max(int(cell["min_steps"]), math.ceil(float(cell["epochs"]) * cell["D_f"] / int(cell["tokens_per_step"])))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--out", help="where the stand-in base models go (default: a temporary folder)")
    args = ap.parse_args()
    import transformers

    from scaling.finetune import expand, load_spec
    from scaling.finetune.cells import finetune

    transformers.utils.logging.disable_progress_bar()
    root = Path(args.out or tempfile.mkdtemp(prefix="finetune-plan-"))
    stand_in_bases(root)
    definition = yaml.safe_load((HERE / "finetune-cpu.yaml").read_text())
    definition["base"]["root"] = str(root)
    cells = expand(load_spec(definition))
    settings = sorted({(c["method"], c["rank"], c["virtual_tokens"]) for c in cells}, key=str)
    print(f"sweeps/finetune-cpu.yaml: {len(cells)} cells = {len({c['base']['id'] for c in cells})} base models x "
          f"{len(settings)} method settings x {len({c['D_f'] for c in cells})} D_f x {len(definition['seeds'])} seed(s); "
          f"{sum(steps_of(c) for c in cells):,} steps")
    lo, hi = min(c["D_f"] for c in cells), max(c["D_f"] for c in cells)
    dp = max(c["D_pretrain"] for c in cells)
    # the downstream corpus is generated (and cached) once, outside the timings
    from scaling.sweep.corpus import load_corpus

    load_corpus(cells[0]["downstream"])
    timed, base_s = {}, None
    print("\n| d_model | method | D_f | steps | CPU s | ratio |\n|---|---|---|---|---|---|")
    for width in args.widths:
        for method, rank, vt in [("full", None, None), ("lora", 4, None), ("prompt", None, 16)]:
            for D_f in (lo, hi):
                cell = next(c for c in cells if c["base"]["d_model"] == width and c["D_f"] == D_f and c["D_pretrain"] == dp
                            and c["method"] == method and c["rank"] == rank and c["virtual_tokens"] == vt)
                t = time.process_time()
                r = finetune(cell, None, threads=1)
                s = time.process_time() - t
                base_s = base_s or s
                timed[(width, method, D_f)] = (r["steps"], s)
                print(f"| {width} | {method} | {D_f} | {r['steps']} | {s:.2f} | {s / base_s:.2f} |")
    # seconds = overhead + per_step x steps, per (width, method); widths between the measured ones interpolated
    total = 0.0
    for c in cells:
        w = c["base"]["d_model"]
        near = min(args.widths, key=lambda x: abs(x - w))
        ws = [x for x in args.widths if x != near]
        lines = []
        for x in [near] + ws[:1]:
            (s1, t1), (s2, t2) = timed[(x, c["method"], lo)], timed[(x, c["method"], hi)]
            per = (t2 - t1) / (s2 - s1)
            lines.append((x, t1 - per * s1, per))
        if len(lines) == 2 and lines[0][0] != lines[1][0]:
            (x1, o1, p1), (x2, o2, p2) = lines
            f = (w - x1) / (x2 - x1)
            over, per = o1 + f * (o2 - o1), p1 + f * (p2 - p1)
        else:
            _, over, per = lines[0]
        total += max(over, 0.0) + per * steps_of(c)
    print(f"\nestimate: {total:,.0f} CPU seconds for the {len(cells)} cells ({total / 2 / 60:.1f} minutes on 2 free "
          "workers), plus each worker's start (imports, the corpus: seconds)")


if __name__ == "__main__":
    main()
