"""One fine-tuning run: ``run_cell(cell, sweep_dir, threads)`` is what the graph runner's workers call.

A cell loads its base model (a ``save_pretrained`` folder), wraps it for its method, trains on the
first ``D_f`` tokens of the downstream corpus's training split and evaluates on a fixed sample of
windows of its held-out split, before and after:

- ``full``: every parameter is tuned.
- ``lora``: low-rank adapters (``peft``) of rank ``rank`` on the attention projections
  (``q_proj`` and ``v_proj`` for Llama, ``c_attn`` for GPT-2, or ``target_modules``); the
  base weights stay frozen.
- ``prompt``: ``virtual_tokens`` trainable input embeddings prepended to every sequence (``peft``
  prompt tuning), started from the embeddings of random vocabulary tokens; the model stays frozen.

``pet_params`` is the number of parameters the method trains (all of them for ``full``). Training
draws ``tokens_per_step // seq_len`` windows a step from (seed, step), so runs of one seed read the
same windows in the same order whatever their method; ``steps = max(min_steps, ceil(epochs * D_f /
tokens_per_step))``. The run writes ``runs/<run_id>/log.jsonl`` (per-step losses) and
``result.json`` (what the export reads); a finished cell is never redone, a killed one starts again
(cells take seconds to minutes).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from .._extras import require
from .._threads import limit_threads
from ..errors import DataError, MissingExtraError
from ..sweep.graph import run_once
from .spec import KIND, check_cell, downstream_vocab, read_base

#: LoRA's default target modules by model type (peft's own defaults for these architectures)
LORA_TARGETS = {"llama": ["q_proj", "v_proj"], "gpt2": ["c_attn"]}


#: the one line a missing peft is
NO_PEFT = "LoRA and prompt tuning need peft: pip install 'scaling[train]' (or pip install peft)"


def _peft():
    try:
        import peft
    except ImportError:
        raise MissingExtraError(NO_PEFT, name="peft") from None
    return peft


def run_cell(cell: dict, sweep_dir: str, threads: int = 1) -> dict:
    """Run (or return the finished result of) one fine-tuning cell under ``sweep_dir/runs/<run_id>``."""
    d = Path(sweep_dir) / "runs" / cell["run_id"]

    def work() -> dict:
        with limit_threads(max(1, threads)):  # numpy's BLAS too: a 256-state eig took 3.7 s on 2 busy cores, not 0.08
            return finetune(cell, d, threads=threads)

    return run_once(d, work)


def wrap(model, cell: dict, base: dict):
    """The model as its method trains it (peft for lora and prompt), and the parameters it trains."""
    method = cell["method"]
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    peft = _peft()
    if method == "lora":
        targets = cell.get("target_modules") or LORA_TARGETS.get(base["model_type"], LORA_TARGETS["llama"])
        rank = int(cell["rank"])
        conf = peft.LoraConfig(r=rank, lora_alpha=float(cell.get("lora_alpha") or rank), lora_dropout=0.0,
                               target_modules=list(targets), bias="none", task_type="CAUSAL_LM")
        return _get_peft_model(peft, model, conf)
    import torch

    n_virtual = int(cell["virtual_tokens"])
    conf = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n_virtual,
                                   prompt_tuning_init=peft.PromptTuningInit.RANDOM)
    emb = model.get_input_embeddings().weight.detach()
    wrapped = _get_peft_model(peft, model, conf)
    # start from real token embeddings (a common initialisation), not N(0, 1) vectors far from the model's scale
    ids = torch.randint(0, emb.shape[0], (n_virtual,), generator=torch.Generator().manual_seed(int(cell["seed"])))
    layer = wrapped.prompt_encoder[wrapped.active_adapter].embedding
    with torch.no_grad():
        layer.weight.copy_(emb[ids])
    return wrapped


def _get_peft_model(peft, model, conf):
    import warnings

    with warnings.catch_warnings():  # transformers' deprecation notes about peft's own calls: not the user's to fix
        warnings.simplefilter("ignore", FutureWarning)
        return peft.get_peft_model(model, conf)


def trainable(model) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _window_losses(model, tokens: np.ndarray, starts: np.ndarray, seq_len: int, batch: int = 64) -> np.ndarray:
    """Mean next-token loss of each window (the last ``seq_len`` logits: a soft prompt's positions are left out)."""
    import torch

    out = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(starts), batch):
            x = np.stack([np.asarray(tokens[s:s + seq_len + 1]) for s in starts[i:i + batch]])
            x = torch.from_numpy(x.astype(np.int64))
            out.append(_token_losses(model, x, seq_len).mean(dim=1).double().numpy())
    model.train()
    return np.concatenate(out)


def _token_losses(model, x, seq_len: int):
    import torch.nn.functional as F

    logits = model(input_ids=x[:, :-1]).logits[:, -seq_len:]
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                           reduction="none").view(x.shape[0], -1)


def finetune(cell: dict, d: Path | None = None, threads: int = 1) -> dict:
    """Fine-tune one cell's base model by its method on D_f downstream tokens; the result row's values."""
    require("torch", "transformers")
    if cell["method"] != "full":
        _peft()
    import torch
    import transformers

    from ..schedules import lr_at
    from ..sweep.corpus import load_corpus
    from ..sweep.train import _batch, eval_windows, mean_and_se

    torch.set_num_threads(max(1, threads))
    transformers.utils.logging.disable_progress_bar()  # a worker's log is no place for loading bars
    t0 = time.perf_counter()
    # the folder is read again: refuse one that changed since the sweep was planned
    base = read_base(cell["base"]["path"], cell["D_pretrain"], cell["N"])
    seq = int(cell["seq_len"])
    check_cell(base, cell["method"], rank=cell.get("rank"), virtual_tokens=cell.get("virtual_tokens"),
               seq_len=seq, vocab=downstream_vocab(cell["downstream"]))
    train_tok, eval_tok, _ = load_corpus(cell["downstream"])
    D_f = int(cell["D_f"])
    if D_f > len(train_tok):
        raise DataError(f"D_f = {D_f:,} tokens, but the downstream corpus's training split holds "
                         f"{len(train_tok):,}: lower D_f or use a larger corpus")
    data = np.asarray(train_tok[:D_f])
    torch.manual_seed(int(cell["seed"]))
    model = transformers.AutoModelForCausalLM.from_pretrained(base["path"])
    model.config.use_cache = False
    model = wrap(model, cell, base)
    pet_params = trainable(model)
    windows = eval_windows(len(eval_tok), seq, int(cell["eval"]["tokens"]))
    base_loss, _ = mean_and_se(_window_losses(model, eval_tok, windows, seq))
    steps = max(int(cell["min_steps"]), math.ceil(float(cell["epochs"]) * D_f / int(cell["tokens_per_step"])))
    n_seq = max(1, int(cell["tokens_per_step"]) // seq)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": float(cell["weight_decay"])},
                             {"params": rest, "weight_decay": 0.0}], lr=float(cell["lr"]))
    log = open(d / "log.jsonl", "w") if d is not None else None
    common = {"method": cell["method"], "N": cell["N"], "D_pretrain": cell["D_pretrain"], "pet_params": pet_params,
              "D_f": D_f, "seed": int(cell["seed"]), "rank": cell.get("rank"),
              "virtual_tokens": cell.get("virtual_tokens"), "steps": steps, "lr": float(cell["lr"]),
              "base_loss": base_loss}
    try:
        model.train()
        for step in range(steps):
            lr = lr_at(step, steps, {"lr": cell["lr"]}, cell["schedule"])
            for g in opt.param_groups:
                g["lr"] = lr
            x = _batch(data, int(cell["seed"]), step, n_seq, seq)
            loss = _token_losses(model, x, seq).mean()
            value = float(loss.detach())
            if log is not None:
                log.write(json.dumps({"step": step, "tokens": (step + 1) * n_seq * seq, "lr": lr,
                                      "train_loss": value if math.isfinite(value) else None}) + "\n")
            if not math.isfinite(value):
                return {"status": "diverged", **common, "loss": None, "step": step}
            loss.backward()
            if float(cell["grad_clip"]) > 0:
                torch.nn.utils.clip_grad_norm_(params, float(cell["grad_clip"]))
            opt.step()
            opt.zero_grad(set_to_none=True)
        final, se = mean_and_se(_window_losses(model, eval_tok, windows, seq))
        if log is not None:
            log.write(json.dumps({"step": steps, "tokens": steps * n_seq * seq, "lr": 0.0, "eval_loss": final}) + "\n")
    finally:
        if log is not None:
            log.close()
    return {"status": "done", **common, "loss": final, "eval_se": se, "eval_tokens": int(len(windows) * seq),
            "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------ export
#: the export's columns, in order (then the settings)
COLUMNS = ["run_id", "method", "N", "D_pretrain", "pet_params", "D_f", "loss", "seed"]


def rows(cell: dict, result: dict, record, **_) -> list[dict]:
    """A finished cell's row of the export: the columns the finetune law reads, then its settings."""
    if record.status != "done" or not result:
        return []
    return [{"run_id": cell["run_id"], "method": cell["method"], "N": cell["N"], "D_pretrain": cell["D_pretrain"],
             "pet_params": result["pet_params"], "D_f": cell["D_f"], "loss": result["loss"], "seed": cell["seed"],
             "rank": cell.get("rank"), "virtual_tokens": cell.get("virtual_tokens"), "lr": cell["lr"],
             "steps": result["steps"], "base_loss": result["base_loss"], "eval_se": result.get("eval_se"),
             "base_d_model": cell["base"]["d_model"], "base_n_layer": cell["base"]["n_layer"],
             "base_id": cell["base"].get("id")}]


def _log(cell: dict, base: Path) -> Path:
    return Path(base) / "runs" / cell["run_id"] / "log.jsonl"


def _tokens(cell: dict) -> float:
    steps = max(int(cell["min_steps"]), math.ceil(float(cell["epochs"]) * cell["D_f"] / int(cell["tokens_per_step"])))
    return float(steps * (int(cell["tokens_per_step"]) // int(cell["seq_len"])) * int(cell["seq_len"]))


def cell_kind():
    """The graph runner's description of a fine-tuning cell (register it with ``register_cell_kind``)."""
    from ..sweep.graph import CellKind

    return CellKind(name=KIND, run=run_cell, rows=rows, log=_log, tokens=_tokens)
