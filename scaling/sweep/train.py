"""Train one run: ``run_worker(cfg, run_dir)`` is what every executor calls.

The transformer trainer is one readable loop: a Hugging Face model built from a
config (no downloaded weights), AdamW, warmup + cosine/WSD/constant schedule,
gradient clipping, evaluation on held-out tokens at a fixed cadence and at the
end, and checkpoints so a killed run resumes where it stopped. Batches depend
only on (seed, step), so a resumed run sees exactly the batches an unbroken one
would. Each logged step is one JSON line in ``run_dir/log.jsonl``; the result is
``run_dir/result.json``, written atomically.

WSD cooldown branches (``schedule.branches``, scaling/sweep/branches.py): a *stable* run (``cfg["stable"]``)
trains warmup + constant learning rate to its last branch point and keeps a checkpoint at each branch point
(``keep-<step>.pt``); a *branch* (``cfg["branch"]``) starts from its stable run's checkpoint at its cooldown's
first step, with the stable run's log up to there as the start of its own, and cools down to its own length.
Batches still come from (seed, step), so a branch reads exactly the batches the stable run would have read
next: it is the run an unbroken WSD schedule of its length would have trained.

This module never imports the fitting side.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ScalingError, ScalingWarning
from ..schedules import lr_at, steps_of
from .graph import atomic_json, run_once


class CheckpointError(ScalingError):
    """A checkpoint file cannot be read (cut short, damaged, or not a checkpoint)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds objects other than tensors and plain values: loading it could run code."""


def _numpy_globals() -> list:
    """What plain numeric numpy arrays need under ``weights_only`` (the overopt cells save some)."""
    kinds = (np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64)
    return [np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct,
            np.ndarray, np.dtype, *{type(np.dtype(k)) for k in kinds}]


def load_checkpoint(path, map_location="cpu"):
    """``torch.load`` with ``weights_only=True``: tensors, numeric numpy arrays and plain Python values only.

    A file that would need anything else (a pickle that runs code) raises :class:`UnsafeCheckpointError`;
    one cut short or damaged raises :class:`CheckpointError`. Neither runs anything from the file.
    """
    import pickle
    import re
    import zipfile

    import torch

    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" in text:
            found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"got <class '([\w.]+)'>", text)
            what = found.group(1) if found else "an object that is not a tensor or a plain value"
            raise UnsafeCheckpointError(
                f"refusing to load {path}: it is not a plain checkpoint (it asks for {what}), and loading it "
                "could run code. The package's own checkpoints hold only tensors and plain values; delete the "
                "file if you did not write it yourself") from None
        raise CheckpointError(f"cannot read {path}: {text.splitlines()[0] if text else type(exc).__name__}") from None
    except (EOFError, RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError,
            zipfile.BadZipFile) as exc:
        raise CheckpointError(f"cannot read {path}: it is cut short or damaged "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


def _set_aside(path: Path, why: Exception) -> str:
    """Move an unreadable checkpoint out of the way (``ckpt.pt.corrupt``); the run starts from scratch."""
    import warnings

    bad = path.with_name(path.name + ".corrupt")
    os.replace(path, bad)
    msg = f"{why}; moved it to {bad.name} and restarted the run from scratch"
    warnings.warn(msg, ScalingWarning, stacklevel=2)
    return msg


def keep_path(run_dir: Path, step: int, suffix: str = ".pt") -> Path:
    """A stable run's checkpoint kept at a branch point (``keep-<step>.pt``; the toy trainer's ``.json``)."""
    return Path(run_dir) / f"keep-{int(step)}{suffix}"


def _branch_source(cfg: dict, d: Path, suffix: str) -> Path:
    """The stable run's checkpoint this branch starts from; a clear error when it is missing."""
    b = cfg["branch"]
    src = keep_path(d.parent / b["stable"], b["start"], suffix)
    if not src.exists():
        raise CheckpointError(f"branch {cfg['run_id']} starts from its stable run's checkpoint at step {b['start']}, "
                              f"and {src} is missing: run the sweep again (the stable run {b['stable']} trains again "
                              "if its checkpoints are gone)")
    return src


def _start_branch_log(cfg: dict, d: Path) -> None:
    """A branch's log starts as its stable run's log before the branch point (the last record of a step wins, as
    the store reads it), written atomically over whatever an earlier attempt left."""
    b = cfg["branch"]
    recs = {}
    src = d.parent / b["stable"] / "log.jsonl"
    for line in (src.read_text().splitlines() if src.exists() else []):
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if int(r["step"]) < int(b["start"]):
            recs[int(r["step"])] = line
    tmp = d / "log.jsonl.tmp"
    tmp.write_text("".join(recs[k] + "\n" for k in sorted(recs)))
    os.replace(tmp, d / "log.jsonl")


def _stable_keeps_missing(cfg: dict, d: Path, start: int, suffix: str) -> bool:
    """Whether a stable run resuming at ``start`` lacks a kept checkpoint it passed (then it starts over)."""
    return any(not keep_path(d, s, suffix).exists() for s in cfg["stable"]["keep"] if s <= start)


def _stop_step(cfg: dict) -> int:
    """Where a run's loop ends: a stable run at its last branch point, any other run at its last step."""
    return int(cfg["stable"]["until"]) if cfg.get("stable") else int(cfg["steps"])


class _Log:
    def __init__(self, path: Path):
        self.f = open(path, "a", buffering=1)

    def write(self, **rec) -> None:
        self.f.write(json.dumps(rec) + "\n")

    def close(self) -> None:
        self.f.close()


def run_worker(cfg: dict, run_dir: str, threads: int = 1) -> dict:
    """Run (or resume, or return the finished result of) one training run."""
    d = Path(run_dir)

    def train() -> dict:
        (d / "config.json").write_text(json.dumps(cfg, indent=1, default=str))
        return TRAINERS[cfg["trainer"]](cfg, d, threads)

    return run_once(d, train)


def run_cell(cfg: dict, sweep_dir: str, threads: int = 1) -> dict:
    """A pretraining cell (an independent run, a stable run or a branch) of a sweep: its run directory is
    ``sweep_dir/runs/<run_id>``. What the graph runner calls (scaling/sweep/graph.py)."""
    return run_worker(cfg, str(Path(sweep_dir) / "runs" / cfg["run_id"]), threads)


# ------------------------------------------------------------------ toy trainer
def train_toy(cfg: dict, d: Path, threads: int = 1) -> dict:
    """Curves from a known Chinchilla law in milliseconds, for testing the sweep machinery.

    ``toy.fail_once`` makes the first attempt raise; ``toy.nan_at`` (a fraction)
    makes the loss NaN there; ``toy.step_sleep`` slows each step (kill tests; the environment variable
    ``SCALING_TOY_STEP_SLEEP`` overrides it).
    """
    toy = cfg["toy"]
    t0 = time.time()
    steps, tps, N = cfg["steps"], cfg["tokens_per_step"], cfg["N"]
    if toy.get("fail_once") and not (d / "failed_once").exists():
        (d / "failed_once").write_text("1")
        raise RuntimeError("toy trainer: deliberate first-attempt failure")
    # SCALING_TOY_DIE_ONCE: the first attempt's worker process dies (killed, out of memory); tests of the driver
    if os.environ.get("SCALING_TOY_DIE_ONCE") and not (d / "died_once").exists():
        (d / "died_once").write_text("1")
        os._exit(1)
    ckpt = d / "ckpt.json"
    start, restarted = 0, None
    if ckpt.exists():
        try:
            start = int(json.loads(ckpt.read_text())["step"])
        except (ValueError, KeyError, TypeError) as exc:
            restarted = _set_aside(ckpt, CheckpointError(f"cannot read {ckpt}: {type(exc).__name__}: {exc}"))
    if cfg.get("stable") and _stable_keeps_missing(cfg, d, start, ".json"):
        start = 0
    if start == 0 and cfg.get("branch"):  # the stable run's state at the branch point (the toy's is its step)
        start = int(json.loads(_branch_source(cfg, d, ".json").read_text())["step"])
        _start_branch_log(cfg, d)
    stop = _stop_step(cfg)
    keep = set(cfg["stable"]["keep"]) if cfg.get("stable") else set()
    rng = np.random.default_rng([cfg["seed"], 12345])
    noise = rng.standard_normal(steps + 1) * float(toy.get("noise", 0.0))

    def law(tokens):
        return toy["E"] + toy["A"] / N ** toy["alpha"] + toy["B"] / tokens ** toy["beta"]

    log = _Log(d / "log.jsonl")
    every = steps_of(cfg["checkpoint"]["every"], steps)
    # SCALING_TOY_STEP_SLEEP overrides it without changing the definition (a kill test's resume runs at full speed)
    sleep = float(os.environ.get("SCALING_TOY_STEP_SLEEP") or toy.get("step_sleep") or 0.0)
    # tests: a run that kills its worker each time it logs (1), or only on its first attempt ("once")
    die_after_log = os.environ.get("SCALING_TOY_DIE_AFTER_LOG", "") not in ("", "0")
    if os.environ.get("SCALING_TOY_DIE_N") == str(N):  # tests: the runs of one size kill their worker every time
        die_after_log = True
    if os.environ.get("SCALING_TOY_DIE_AFTER_LOG") == "once":
        die_after_log = not (d / "died_after_log").exists()
        (d / "died_after_log").write_text("1")
    for step in range(start, stop):
        tokens = (step + 1) * tps
        loss = law(tokens) * math.exp(noise[step])
        if toy.get("nan_at") is not None and step >= toy["nan_at"] * steps:
            log.write(step=step, tokens=tokens, lr=lr_at(step, steps, cfg["optimizer"], cfg["schedule"]), train_loss=float("nan"))
            log.close()
            return {"status": "diverged", "step": step, "final_eval_loss": None}
        log.write(step=step, tokens=tokens, lr=lr_at(step, steps, cfg["optimizer"], cfg["schedule"]), train_loss=loss)
        if die_after_log:
            log.close()
            os._exit(1)
        if sleep:
            time.sleep(sleep)
        if step + 1 in keep:  # a branch point: kept before the rolling checkpoint can pass it
            atomic_json(keep_path(d, step + 1, ".json"), {"step": step + 1})
        if (step + 1) % every == 0:
            atomic_json(ckpt, {"step": step + 1})
    if cfg.get("stable"):
        log.close()
        return {"status": "done", "steps": stop, "kept": sorted(keep), "resumed_from": start}
    final = law(steps * tps) * math.exp(noise[steps])
    log.write(step=steps, tokens=steps * tps, lr=0.0, eval_loss=final)
    log.close()
    out = {"status": "done", "final_eval_loss": final, "resumed_from": start, "tokens_per_s": None,
           "seconds": time.time() - t0}
    return out if restarted is None else {**out, "checkpoint_set_aside": restarted}


# ----------------------------------------------------------- transformer trainer
def llama_config(vocab: int, d_model: int, n_layer: int, n_head: int, max_len: int, **overrides):
    """The package's Llama shape: 4x MLP, full multi-head attention, no dropout, no special tokens."""
    import transformers

    kw = dict(vocab_size=vocab, hidden_size=d_model, intermediate_size=4 * d_model, num_hidden_layers=n_layer,
              num_attention_heads=n_head, num_key_value_heads=n_head, max_position_embeddings=max_len,
              tie_word_embeddings=True, rms_norm_eps=1e-5, attention_dropout=0.0, use_cache=False,
              bos_token_id=None, eos_token_id=None, pad_token_id=None)
    return transformers.LlamaConfig(**{**kw, **overrides})


def build_model(cfg: dict):
    """A freshly initialised Hugging Face causal LM (LlamaConfig by default, GPT-2 as an option)."""
    import transformers

    d, L, H = cfg["d_model"], cfg["n_layer"], cfg["n_head"]
    if cfg["family"] == "llama":
        return transformers.LlamaForCausalLM(llama_config(cfg["vocab_size"], d, L, H, cfg["seq_len"]))
    conf = transformers.GPT2Config(vocab_size=cfg["vocab_size"], n_embd=d, n_layer=L, n_head=H,
                                   n_positions=cfg["seq_len"], n_inner=4 * d, resid_pdrop=0.0,
                                   embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True, use_cache=False,
                                   activation_function="gelu_pytorch_tanh",  # fused kernel, same function as gelu_new
                                   bos_token_id=None, eos_token_id=None, pad_token_id=None)
    return transformers.GPT2LMHeadModel(conf)


def _batch(tokens: np.ndarray, seed: int, step: int, n_seq: int, seq_len: int):
    import torch

    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(tokens) - seq_len - 1, size=n_seq)
    x = np.stack([tokens[s:s + seq_len + 1] for s in starts]).astype(np.int64)
    return torch.from_numpy(x)


def _loss(model, x, amp):
    import torch
    import torch.nn.functional as F

    with amp():
        logits = model(input_ids=x[:, :-1]).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))


def eval_windows(n_tokens_split: int, seq_len: int, n_tokens: int) -> np.ndarray:
    """Start offsets of the fixed evaluation sample: ``n_tokens // seq_len`` windows of ``seq_len + 1`` tokens,
    evenly spaced over the whole held-out split (not its first part), never overlapping; every window the
    split holds when it holds fewer. The same for every run of a sweep, so runs are compared on one sample."""
    cap = (n_tokens_split - 1) // seq_len  # non-overlapping windows that fit
    n = max(1, min(cap, n_tokens // seq_len))
    if n >= cap - 1:
        return np.arange(cap, dtype=np.int64) * seq_len
    return np.round(np.linspace(0, n_tokens_split - seq_len - 1, n)).astype(np.int64)


def mean_and_se(window_losses: np.ndarray) -> tuple[float, float]:
    """Mean of per-window losses and its standard error, std / sqrt(windows).

    The windows are a systematic sample spread evenly over the held-out split. Against the loss of the whole
    split this standard error is conservative: neighbouring windows (one source file, one story) have similar
    losses, and an evenly spread sample averages over them like a stratified one (on the Python standard library,
    spread samples of 1,024 windows scattered 0.54% around the whole split's loss, this formula says 0.70%). It does not
    cover which documents the split holds; every run of a sweep shares that.
    """
    x = np.asarray(window_losses, float)
    if len(x) < 2:
        return float(x.mean()), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))


def evaluate(model, eval_tokens: np.ndarray, seq_len: int, n_tokens: int, device, amp, batch: int = 64,
             starts: np.ndarray | None = None) -> tuple[float, float, int]:
    """(mean next-token loss in nats, its standard error, windows) over the fixed evaluation sample.

    ``starts``: the windows' offsets (default :func:`eval_windows` for ``n_tokens``).
    """
    if starts is None:
        starts = eval_windows(len(eval_tokens), seq_len, n_tokens)
    mean, se = mean_and_se(window_losses(model, eval_tokens, seq_len, starts, device, amp, batch))
    return mean, se, len(starts)


def window_losses(model, eval_tokens: np.ndarray, seq_len: int, starts: np.ndarray, device, amp,
                  batch: int = 64) -> np.ndarray:
    """Mean next-token loss (nats) of each window starting at ``starts``, in that order."""
    import torch
    import torch.nn.functional as F

    losses = []
    model.eval()
    with torch.inference_mode():  # 20-30% faster than no_grad for these small models on a CPU
        for i in range(0, len(starts), batch):
            x = np.stack([np.asarray(eval_tokens[s:s + seq_len + 1]) for s in starts[i:i + batch]])
            x = torch.from_numpy(x.astype(np.int64)).to(device)
            with amp():
                logits = model(input_ids=x[:, :-1]).logits
            tok = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none")
            losses.append(tok.view(x.shape[0], -1).mean(dim=1).double().cpu().numpy())
    model.train()
    return np.concatenate(losses)


#: steps between host syncs on a GPU: losses stay on the device and are read (and checked for NaN) in one transfer
GPU_SYNC_EVERY = 32
#: narrowest model that ``precision: auto`` trains in bf16 on a GPU. Measured on an H200 (benchmarks/RESULTS.md):
#: at d_model 128 bf16 autocast ran at 0.57-0.79x the speed of float32 with tf32 matmuls (its casts cost more than
#: the small matmuls gain); from d_model 256 on it ran 1.16-1.8x faster
BF16_MIN_WIDTH = 256
DEVICE_TYPES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")


def device_plan(cfg: dict, torch) -> dict:
    """Where and how a run trains, from ``cfg["device"]`` (``type: auto|cpu|cuda``, ``precision: auto|bf16|fp32``,
    ``sync_every``) and what the machine has.

    On a GPU: bf16 autocast where the device supports it and the model is at least :data:`BF16_MIN_WIDTH` wide
    (narrower ones train in float32 with tf32 matmuls, which is faster there), the fused AdamW, and one host sync
    every :data:`GPU_SYNC_EVERY` steps (the per-step losses are still all logged). On the CPU: float32, the fused AdamW
    too (11-17% faster steps for the quickstart's 2-layer models than the default, benchmarks/RESULTS.md), and a loss
    read every step (a host sync costs nothing there). ``torch`` is passed in so tests can hand a stand-in.
    """
    want = dict(cfg.get("device") or {})
    kind = want.get("type", "auto") or "auto"
    precision = want.get("precision", "auto") or "auto"
    if kind not in DEVICE_TYPES:
        raise ScalingError(f"device.type {kind!r}: use auto, cpu or cuda")
    if precision not in PRECISIONS:
        raise ScalingError(f"device.precision {precision!r}: use auto, bf16 or fp32")
    has_cuda = bool(torch.cuda.is_available())
    if kind == "cuda" and not has_cuda:
        raise ScalingError("device.type is cuda, but torch sees no GPU on this machine (torch.cuda.device_count() "
                           "is 0): use device.type auto (the CPU here) or run the sweep where the GPUs are")
    if precision == "bf16" and kind == "cpu":
        raise ScalingError("device.precision bf16 needs a GPU, and device.type is cpu: use device.precision auto "
                           "or fp32, or device.type auto or cuda")
    if precision == "bf16" and not has_cuda:
        raise ScalingError("device.precision bf16 needs a GPU, and torch sees none on this machine: use "
                           "device.precision auto or fp32")
    cuda = has_cuda and kind != "cpu"
    bf16_ok = cuda and bool(torch.cuda.is_bf16_supported())
    if precision == "bf16" and not bf16_ok:
        raise ScalingError("device.precision bf16 needs a GPU that supports bfloat16, and this machine's does "
                           "not: use device.precision auto or fp32")
    sync = want.get("sync_every")
    sync = int(sync) if sync else (GPU_SYNC_EVERY if cuda else 1)
    if sync < 1:
        raise ScalingError(f"device.sync_every must be a positive number of steps, got {sync}")
    wide = int(cfg.get("d_model") or 0) >= BF16_MIN_WIDTH
    bf16 = bf16_ok and (precision == "bf16" or (precision == "auto" and wide))
    # the CPU's fused AdamW kernel came with torch 2.4 (the package allows 2.3)
    version = tuple(int(x) for x in re.findall(r"\d+", str(getattr(torch, "__version__", "0")))[:2])
    return {"device": "cuda" if cuda else "cpu", "bf16": bf16, "fused_adamw": cuda or version >= (2, 4),
            "sync_every": sync}


def _save_state(model, opt, step: int, path: Path) -> None:
    """Model, optimizer and step, written through a temporary file (a kill leaves the old file or the new one)."""
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": step}, tmp)
    os.replace(tmp, path)


def save_final_model(model, d: Path) -> Path:
    """``d/model`` as ``save_pretrained`` writes it, through ``d/model.tmp``: a run killed while saving leaves no
    half-written folder that looks like a model (the run is redone: it has no result yet)."""
    import shutil

    import transformers

    transformers.utils.logging.disable_progress_bar()  # a worker's log is no place for a bar
    tmp, out = d / "model.tmp", d / "model"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def train_transformer(cfg: dict, d: Path, threads: int = 1) -> dict:
    import contextlib

    import torch

    from .corpus import load_corpus

    torch.set_num_threads(max(1, threads))
    plan = device_plan(cfg, torch)
    device = torch.device(plan["device"])
    amp: Callable = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if plan["bf16"]
                     else contextlib.nullcontext)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # float32 work that autocast leaves (norms, the loss) on tensor cores
        torch.backends.cudnn.allow_tf32 = True
    train_tok, eval_tok, _ = load_corpus(cfg["corpus"])
    steps, seq = cfg["steps"], cfg["seq_len"]
    n_seq = cfg["tokens_per_step"] // seq
    o = cfg["optimizer"]

    def fresh():
        torch.manual_seed(cfg["seed"])
        model = build_model(cfg).to(device)
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": float(o["weight_decay"])},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=float(o["lr"]),
                                betas=(float(o["beta1"]), float(o["beta2"])),
                                **({"fused": True} if plan["fused_adamw"] else {}))
        return model, opt

    model, opt = fresh()
    ckpt = d / "ckpt.pt"
    start, restarted = 0, None
    if ckpt.exists():
        try:  # refuses (raises) a file that could run code; one cut short is set aside below
            state = load_checkpoint(ckpt, device)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optim"])
            start = int(state["step"])
        except UnsafeCheckpointError:
            raise
        except (CheckpointError, KeyError, TypeError, ValueError, RuntimeError) as exc:
            why = exc if isinstance(exc, CheckpointError) else CheckpointError(
                f"cannot use {ckpt}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
            restarted = _set_aside(ckpt, why)
            model, opt = fresh()  # a failed load may have changed some weights
            start = 0
    stable = cfg.get("stable")
    if stable and start and _stable_keeps_missing(cfg, d, start, ".pt"):
        model, opt = fresh()  # a kept checkpoint it passed is gone: train the stable run again
        start = 0
    if start == 0 and cfg.get("branch"):  # the stable run's model and optimizer at the branch point
        state = load_checkpoint(_branch_source(cfg, d, ".pt"), device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        start = int(state["step"])
        _start_branch_log(cfg, d)
    stop = _stop_step(cfg)
    keep = set(stable["keep"]) if stable else set()
    stable_evals = set(stable.get("evals") or []) if stable else set()
    ev = cfg["eval"]
    final_windows = eval_windows(len(eval_tok), seq, int(ev["tokens"]))
    # evaluations during the run: an evenly spaced subset of the final sample's windows
    n_curve = max(1, int(ev.get("curve_tokens") or ev["tokens"]) // seq)
    curve_stride = max(1, math.ceil(len(final_windows) / n_curve))
    curve_windows = final_windows[::curve_stride]
    eval_every = steps_of(ev["every"], steps)
    ckpt_every = steps_of(cfg["checkpoint"]["every"], steps)
    log = _Log(d / "log.jsonl")
    t0, tok0, eval_s = time.perf_counter(), 0, 0.0
    pending: list = []  # (record, loss on the device) of steps not yet read back
    tps = cfg["tokens_per_step"]

    def flush() -> dict | None:
        """Read the pending losses in one transfer and log them; the first non-finite one ends the run."""
        if not pending:
            return None
        values = torch.stack([loss for _, loss in pending]).float().cpu().tolist()
        recs = [rec for rec, _ in pending]
        pending.clear()
        for rec, value in zip(recs, values):
            if not math.isfinite(value):
                log.write(step=rec["step"], tokens=rec["tokens"], lr=rec["lr"], train_loss=float("nan"))
                log.close()
                return {"status": "diverged", "step": rec["step"], "final_eval_loss": None}
            log.write(**{**rec, "train_loss": value})
        return None

    for step in range(start, stop):
        lr = lr_at(step, steps, o, cfg["schedule"])
        for g in opt.param_groups:
            g["lr"] = lr
        x = _batch(train_tok, cfg["seed"], step, n_seq, seq)
        x = x.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else x
        loss = _loss(model, x, amp)
        loss.backward()
        if float(o["grad_clip"]) > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(o["grad_clip"]))
        opt.step()
        opt.zero_grad(set_to_none=True)
        tok0 += tps
        pending.append(({"step": step, "tokens": (step + 1) * tps, "lr": lr}, loss.detach()))
        # a stable run evaluates where any of its branches would (their curves start with its log)
        evaluate_now = (step + 1 in stable_evals if stable else (step + 1) % eval_every == 0) and step + 1 < steps
        save_now = (step + 1) % ckpt_every == 0 and step + 1 < stop
        keep_now = step + 1 in keep
        if len(pending) >= plan["sync_every"] or evaluate_now or save_now or keep_now:
            last = pending[-1][0]
            if evaluate_now:
                t_ev = time.perf_counter()
                last["eval_loss"], last["eval_se"], _ = evaluate(model, eval_tok, seq, 0, device, amp,
                                                                 starts=curve_windows)
                eval_s += time.perf_counter() - t_ev
            last["tokens_per_s"] = tok0 / (time.perf_counter() - t0 - eval_s)
            stopped = flush()  # a NaN is caught before a checkpoint could keep it
            if stopped:
                return stopped
        if keep_now:  # a branch point: kept before the rolling checkpoint can pass it
            _save_state(model, opt, step + 1, keep_path(d, step + 1))
        if save_now:
            _save_state(model, opt, step + 1, ckpt)
    stopped = flush()
    if stopped:
        return stopped
    if stable:  # no cooldown, no final evaluation: its branches do both
        log.close()
        secs = time.perf_counter() - t0
        return {"status": "done", "steps": stop, "kept": sorted(keep), "resumed_from": start, "device": device.type,
                "tokens_per_s": tok0 / (secs - eval_s) if secs > eval_s else None, "seconds": secs}
    t_ev = time.perf_counter()
    per_window = window_losses(model, eval_tok, seq, final_windows, device, amp)
    final, se = mean_and_se(per_window)
    n_win = len(final_windows)
    final_s = time.perf_counter() - t_ev
    # The curve's last point is read on the same windows as its earlier ones (a subset of the final sample, whose
    # loss can sit a few percent from the whole sample's): a curve keeps one yardstick to its end, with no step at
    # its last point. The whole sample's loss, the runs table's `loss`, is logged beside it.
    end, end_se = mean_and_se(per_window[::curve_stride])
    log.write(step=steps, tokens=steps * cfg["tokens_per_step"], lr=0.0, eval_loss=end, eval_se=end_se,
              final_eval_loss=final, final_eval_se=se)
    log.close()
    if cfg.get("save_model"):  # the final model, a base for `scaling finetune run` (a stable run has none)
        save_final_model(model, d)
    secs = time.perf_counter() - t0
    train_s = secs - eval_s - final_s
    out = {"status": "done", "final_eval_loss": final, "eval_se": se, "eval_tokens": int(n_win * seq),
           "resumed_from": start, "device": device.type, "tokens_per_s": tok0 / train_s if train_s > 0 else None,
           "seconds": secs, "eval_seconds": eval_s + final_s, "final_eval_seconds": final_s}
    return out if restarted is None else {**out, "checkpoint_set_aside": restarted}


TRAINERS: dict[str, Callable] = {"transformer": train_transformer, "toy": train_toy}
