"""One cell of an overoptimization sweep: ``run_cell(cell, sweep_dir)`` is what every executor calls.

A cell reads what the cells it needs left on disk (the policy's weights, the
data, a reward model), does its work and writes ``cells/<id>/result.json``
atomically. A finished cell is never redone; a killed one restarts from scratch
(cells take seconds to a minute).

Gold and proxy are reported relative to the initial policy: gold minus the mean
gold of the initial policy's samples for the same prompt, proxy minus the reward
model's mean over the initial policy's samples (so both are 0 at KL = 0).

With the RLHF axes (``policy.shapes``), a cell's ``policy``/``policy_shape`` name the policy it optimises;
one other than the sweep's own is pretrained by its own policy cell, which also draws its bank of samples
(``policies/<name>.pt``), and the reward model's offset is then its mean over that policy's bank.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import SettingsError
from ..sweep.graph import run_once
from ..sweep.train import load_checkpoint
from . import models as M
from .estimators import bon_curve, bon_kl_analytic, bon_kl_empirical
from .gold import get_gold
from .spec import base_shape


def _gold(spec):
    g = dict(spec["gold"])
    return get_gold(g.pop("name"), vocab=spec["policy"]["vocab"], **g)


def _device():
    """One GPU per worker when present (the executors set CUDA_VISIBLE_DEVICES), else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _to(obj, device):
    """Tensors in (nested) dicts moved to ``device``."""
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj.to(device) if hasattr(obj, "to") and hasattr(obj, "device") else obj


def _cpu_state(model) -> dict:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _load(path: Path):
    """Tensors, numeric arrays and plain values only (``weights_only``): a crafted file cannot run code."""
    return load_checkpoint(path, "cpu")


def _save(obj, path: Path) -> None:
    import torch

    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _policy(spec, base: Path, cell=None):
    """The initial policy: this sweep's, another sweep's directory (policy.pt), or a save_pretrained directory;
    for a cell on the ``policy.shapes`` axis, that policy (pretrained by its own policy cell)."""
    p = spec["policy"]
    if cell is not None and _other_policy(spec, cell):
        sh = cell["policy_shape"]
        model = M.build_policy(p["vocab"], *sh, spec["prompt_len"] + spec["completion_len"] + 1)
        model.load_state_dict(_load(base / "policies" / f"{cell['policy']}.pt")["model"])
        return model.to(_device()).eval()
    if p["dir"] and (Path(p["dir"]) / "config.json").exists():
        import transformers

        model = transformers.AutoModelForCausalLM.from_pretrained(p["dir"])
        if model.config.vocab_size != p["vocab"]:
            raise SettingsError(f"the policy in {p['dir']} has a vocabulary of {model.config.vocab_size} tokens; the "
                             f"sweep's language and gold reward use policy.vocab = {p['vocab']}")
        return model.to(_device()).eval()
    src = Path(p["dir"]) / "policy.pt" if p["dir"] else base / "policy.pt"
    if not src.exists():
        raise FileNotFoundError(f"no initial policy at {src} (policy.dir must hold policy.pt from another "
                                "overopt sweep, or a save_pretrained directory)")
    model = M.build_policy(p["vocab"], p["d_model"], p["n_layer"], p["n_head"],
                           spec["prompt_len"] + spec["completion_len"] + 1)
    model.load_state_dict(_load(src)["model"])
    return model.to(_device()).eval()


def _other_policy(spec, cell) -> bool:
    """Whether the cell optimises a policy of the ``policy.shapes`` axis other than the sweep's own."""
    return "policy_shape" in cell and list(cell["policy_shape"]) != base_shape(spec)


def _bank(spec, base: Path, cell, data=None) -> dict:
    """The cell's policy's samples on the held-out prompts: ``bank`` (prompts, samples, T) and ``bank_gold``."""
    if _other_policy(spec, cell):
        d = _load(base / "policies" / f"{cell['policy']}.pt")
    else:
        d = data if data is not None else _load(base / "data.pt")
    return {"bank": d["bank"], "bank_gold": d["bank_gold"]}


def _bank_scores(spec, base: Path, cell, rm, state, data) -> tuple[np.ndarray, float]:
    """The reward model's scores of the cell's policy's bank and their mean (its offset: proxy 0 at KL 0)."""
    if not _other_policy(spec, cell):
        return np.asarray(state["bank_scores"]), float(state["offset"])
    bank = _bank(spec, base, cell)["bank"].long().to(data["eval_prompts"].device)
    P, S = data["eval_prompts"], bank.shape[1]
    scores = M.score(rm, P.repeat_interleave(S, 0), bank.reshape(-1, bank.shape[-1])).reshape(len(P), S)
    return scores, float(scores.mean())


def _policy_info(spec, cell, model=None) -> dict:
    """The export's policy columns for a cell on the ``policy.shapes`` axis: its name and non-embedding
    parameter count (the embedding is tied to the output layer); nothing without the axis."""
    if "policy" not in cell:
        return {}
    sh = cell["policy_shape"]
    if model is None:
        model = M.build_policy(spec["policy"]["vocab"], *sh, spec["prompt_len"] + spec["completion_len"] + 1)
    return {"policy": cell["policy"],
            "policy_params": M.n_params(model) - int(model.get_input_embeddings().weight.numel())}


def _rm(spec, base: Path, rid: str, shape=None):
    state = _load(base / "rms" / f"{rid}.pt")
    shape = state["shape"]
    model = M.build_reward_model(spec["policy"]["vocab"], *shape, spec["prompt_len"] + spec["completion_len"] + 1)
    model.load_state_dict(state["model"])
    return model.to(_device()).eval(), state


def run_cell(cell: dict, sweep_dir: str, threads: int = 1) -> dict:
    import torch

    torch.set_num_threads(max(1, threads))
    base = Path(sweep_dir)
    return run_once(base / "cells" / cell["id"], lambda: STAGES[cell["stage"]](cell, cell["spec"], base))


# -------------------------------------------------------------------- stages
def stage_policy(cell, spec, base: Path) -> dict:
    import torch

    p = spec["policy"]
    if "shape" in cell:
        return _stage_axis_policy(cell, spec, base)
    if p["dir"]:
        model = _policy(spec, base)
        return {"policy_params": M.n_params(model), "source": str(p["dir"])}
    lang = M.language(p["vocab"], p["states"], p["seed"])
    toks = _corpus(spec, base)
    torch.manual_seed(p["seed"])
    model = M.build_policy(p["vocab"], p["d_model"], p["n_layer"], p["n_head"],
                           spec["prompt_len"] + spec["completion_len"] + 1).to(_device())
    loss = M.pretrain(model, toks, steps=p["pretrain_steps"], batch=p["batch"],
                      seq_len=spec["prompt_len"] + spec["completion_len"], lr=float(p["lr"]), seed=p["seed"])
    _save({"model": _cpu_state(model)}, base / "policy.pt")
    return {"policy_params": M.n_params(model), "pretrain_loss": loss, "entropy_rate": lang.entropy_rate()}


def _stage_axis_policy(cell, spec, base: Path) -> dict:
    """A policy of the ``policy.shapes`` axis: pretrained like the sweep's own (same language, corpus, steps and
    seed), then its bank of samples on the held-out prompts (best-of-n, and gold and proxy at KL = 0)."""
    import torch

    p, sh = spec["policy"], cell["shape"]
    toks = _corpus(spec, base)
    torch.manual_seed(p["seed"])
    model = M.build_policy(p["vocab"], *sh, spec["prompt_len"] + spec["completion_len"] + 1).to(_device())
    loss = M.pretrain(model, toks, steps=p["pretrain_steps"], batch=p["batch"],
                      seq_len=spec["prompt_len"] + spec["completion_len"], lr=float(p["lr"]), seed=p["seed"])
    model.eval()
    bank, bank_gold = _sample_bank(spec, model, _gold(spec), toks)
    (base / "policies").mkdir(exist_ok=True)
    _save({"model": _cpu_state(model), "bank": bank, "bank_gold": bank_gold}, base / "policies" / f"{cell['policy']}.pt")
    info = _policy_info(spec, {"policy": cell["policy"], "policy_shape": sh}, model)
    return {**info, "pretrain_loss": loss, "gold_std": float(bank_gold.std())}


def _sample_bank(spec, pol, gold, toks, generator=None):
    """bon.samples completions from ``pol`` for each held-out prompt, and their gold (prompts, samples)."""
    import torch

    b, T, PL = spec["bon"], spec["completion_len"], spec["prompt_len"]
    dev = _device()
    g = generator if generator is not None else torch.Generator(device=dev).manual_seed(123)
    eval_prompts = _prompts(toks, b["prompts"], PL, 2)
    bank = []
    for j in range(len(eval_prompts)):
        P = eval_prompts[j:j + 1].expand(b["samples"], PL).to(dev)
        bank.append(M.sample(pol, P, T, generator=g)[0].cpu())
    bank = torch.stack(bank)  # (prompts, samples, T)
    bank_gold = gold(bank.reshape(-1, T).numpy()).reshape(len(eval_prompts), -1)
    return (bank.to(torch.uint8) if spec["policy"]["vocab"] <= 256 else bank), bank_gold


def _corpus(spec, base: Path) -> np.ndarray:
    """The policy's language as tokens (prompts come from it), cached beside the sweep's store."""
    path = base / "corpus.npy"
    if path.exists():
        return np.load(path)
    p = spec["policy"]
    toks = M.language(p["vocab"], p["states"], p["seed"]).sample(int(p["corpus_tokens"]), seed=p["seed"])
    np.save(path, toks)
    return toks


def _prompts(toks: np.ndarray, n: int, length: int, seed: int):
    import torch

    rng = np.random.default_rng([seed, 11])
    s = rng.integers(0, len(toks) - length, n)
    return torch.from_numpy(np.stack([toks[i:i + length] for i in s]).astype(np.int64))


def stage_data(cell, spec, base: Path) -> dict:
    """Preference pairs (train + held-out) and the bank of initial-policy samples on the evaluation prompts."""
    import torch

    pol = _policy(spec, base)
    gold = _gold(spec)
    toks = _corpus(spec, base)
    pr, T, PL = spec["preferences"], spec["completion_len"], spec["prompt_len"]
    n_pairs = max(pr["pairs"]) + pr["eval_pairs"]
    prompts = _prompts(toks, n_pairs, PL, 1)
    dev = _device()
    g = torch.Generator(device=dev).manual_seed(123)
    y1 = torch.cat([M.sample(pol, prompts[s].to(dev), T, generator=g)[0].cpu() for s in M.batches(n_pairs, 4096)])
    y2 = torch.cat([M.sample(pol, prompts[s].to(dev), T, generator=g)[0].cpu() for s in M.batches(n_pairs, 4096)])
    g1, g2 = gold(y1.numpy()), gold(y2.numpy())
    rng = np.random.default_rng([spec["gold"]["seed"], 13])
    if pr["labels"] == "deterministic":
        first = g1 > g2
        keep = g1 != g2  # exact ties carry no preference
    else:
        z = (g1 - g2) / pr["temperature"]
        first = rng.random(n_pairs) < 1 / (1 + np.exp(-z))
        keep = np.ones(n_pairs, bool)
    if keep[:-pr["eval_pairs"]].sum() < 8 or keep[-pr["eval_pairs"]:].sum() < 8:
        raise SettingsError(f"degenerate preference data: {int((~keep).sum())} of {n_pairs} pairs tie under the gold "
                         "reward, leaving too few to train or judge a reward model (is the gold reward constant?)")
    flip = rng.random(n_pairs) < pr["label_noise"]
    first = first ^ flip
    f = torch.from_numpy(first)[:, None]
    chosen, rejected = torch.where(f, y1, y2), torch.where(f, y2, y1)
    keep_t = torch.from_numpy(keep)
    n_eval = pr["eval_pairs"]
    train_keep, eval_keep = keep_t[:-n_eval], keep_t[-n_eval:]
    data = {
        "train": {k: v[:-n_eval][train_keep] for k, v in (("prompts", prompts), ("chosen", chosen), ("rejected", rejected))},
        "eval": {k: v[-n_eval:][eval_keep] for k, v in (("prompts", prompts), ("chosen", chosen), ("rejected", rejected))},
    }
    # bank: bon.samples completions per held-out prompt from the initial policy (best-of-n and recentring)
    bank, bank_gold = _sample_bank(spec, pol, gold, toks, generator=g)
    data.update(eval_prompts=_prompts(toks, spec["bon"]["prompts"], PL, 2), bank=bank, bank_gold=bank_gold)
    _save(data, base / "data.pt")
    ties = int((~keep).sum())
    return {"pairs": int(train_keep.sum()), "eval_pairs": int(eval_keep.sum()), "ties_dropped": ties,
            "gold_std": float(bank_gold.std()), "label_noise": pr["label_noise"]}


def stage_rm(cell, spec, base: Path) -> dict:
    import torch

    dev = _device()
    data = _to(_load(base / "data.pt"), dev)
    tr = data["train"]
    n = min(cell["pairs"], len(tr["prompts"]))
    if n < 8:
        raise SettingsError(f"only {n} usable preference pairs (after dropping ties): cannot train a reward model")
    torch.manual_seed(cell["seed"])
    shape = cell["shape"]
    rm = M.build_reward_model(spec["policy"]["vocab"], *shape, spec["prompt_len"] + spec["completion_len"] + 1).to(dev)
    r = spec["reward_models"]
    loss = M.train_reward_model(rm, tr["prompts"][:n], tr["chosen"][:n], tr["rejected"][:n], lr=float(r["lr"]),
                                batch=r["batch"], seed=cell["seed"])
    rm.eval()
    ev = data["eval"]
    acc = float((M.score(rm, ev["prompts"], ev["chosen"]) > M.score(rm, ev["prompts"], ev["rejected"])).mean())
    bank, P = data["bank"].long(), data["eval_prompts"]
    S = bank.shape[1]
    scores = M.score(rm, P.repeat_interleave(S, 0), bank.reshape(-1, bank.shape[-1])).reshape(len(P), S)
    offset = float(scores.mean())
    (base / "rms").mkdir(exist_ok=True)
    _save({"model": _cpu_state(rm), "shape": shape, "offset": offset, "bank_scores": scores}, base / "rms" / f"{cell['id']}.pt")
    return {"rm_params": M.n_params(rm), "rm_data": n, "rm_accuracy": acc, "rm_n_eval": int(len(ev["prompts"])),
            "train_loss": loss, "offset": offset}


def _rm_info(base: Path, rid: str) -> dict:
    return json.loads((base / "cells" / rid / "result.json").read_text())


def stage_bon(cell, spec, base: Path) -> dict:
    data = _load(base / "data.pt")
    info = _rm_info(base, cell["rm"])
    if _other_policy(spec, cell):  # the RM's scores of this policy's bank
        rm, state = _rm(spec, base, cell["rm"])
        scores, offset = _bank_scores(spec, base, cell, rm, state, _to(data, _device()))
    else:
        state = _load(base / "rms" / f"{cell['rm']}.pt")
        scores, offset = state["bank_scores"], state["offset"]
    bank_gold = _bank(spec, base, cell, data)["bank_gold"]
    proxy = scores - offset
    gold = bank_gold - bank_gold.mean(axis=1, keepdims=True)
    ns = np.array(sorted(set(int(n) for n in spec["bon"]["n"])))
    curve = bon_curve(proxy, gold, ns)
    kl_emp = np.array([[bon_kl_empirical(proxy[j], int(n)) for n in ns] for j in range(len(proxy))])
    kl = bon_kl_analytic(ns)
    rows, prompt_rows = [], []
    for i, n in enumerate(ns):
        rows.append({"n": int(n), "kl": float(kl[i]), "kl_empirical": float(kl_emp[:, i].mean()),
                     "gold": float(curve["gold"][:, i].mean()), "proxy": float(curve["proxy"][:, i].mean()),
                     "gold_se": float(curve["gold"][:, i].std(ddof=1) / math.sqrt(len(proxy)))})
        prompt_rows += [{"n": int(n), "prompt": j, "kl": float(kl[i]), "gold": float(curve["gold"][j, i]),
                         "proxy": float(curve["proxy"][j, i])} for j in range(len(proxy))]
    return {"rm": cell["rm"], **{k: info[k] for k in ("rm_params", "rm_data", "rm_accuracy", "rm_n_eval")},
            **_policy_info(spec, cell), "rows": rows, "prompt_rows": prompt_rows}


def _checkpoint_rows(ev: dict, step: int) -> tuple[dict, list[dict]]:
    row = {"step": step, "kl": float(ev["kl"].mean()), "kl_sampled": float(ev["kl_sampled"].mean()),
           "gold": float(ev["gold"].mean()), "proxy": float(ev["proxy"].mean()),
           "gold_se": float(ev["gold"].std(ddof=1) / math.sqrt(len(ev["gold"])))}
    prompt_rows = [{"step": step, "prompt": j, "kl": float(ev["kl"][j]), "gold": float(ev["gold"][j]),
                    "proxy": float(ev["proxy"][j])} for j in range(len(ev["kl"]))]
    return row, prompt_rows


class _Tuning:
    """What RL and DPO share: the data, a frozen reference, a trainable copy, and held-out checkpoints."""

    def __init__(self, cell, spec, base: Path, rm=None, rm_state=None):
        import torch

        self.cell, self.spec = cell, spec
        self.data = _to(_load(base / "data.pt"), _device())
        self.ref = _policy(spec, base, cell)
        torch.manual_seed(cell["seed"])
        self.pi = copy.deepcopy(self.ref).train()
        for p_ in self.ref.parameters():
            p_.requires_grad_(False)
        self.rm, self.rm_offset = rm, 0.0
        if rm is not None:
            self.rm_offset = _bank_scores(spec, base, cell, rm, rm_state, self.data)[1]
        self.gold = _gold(spec)
        self.base_gold = _bank(spec, base, cell, self.data)["bank_gold"].mean(axis=1)  # per held-out prompt
        self.rows, self.prompt_rows = [], []

    def checkpoint(self, step: int) -> None:
        self.pi.eval()
        ev = M.evaluate_policy(self.pi, self.ref, self.rm, self.gold, self.data["eval_prompts"],
                               self.spec["completion_len"], rm_offset=self.rm_offset,
                               seed=1000 + self.cell["seed"], per_prompt=self.spec["rl"]["eval_samples"])
        self.pi.train()
        ev["gold"] = ev["gold"] - self.base_gold
        if self.rm is None:  # DPO: its implicit reward, beta * log(pi / pi0), up to the prompt's constant
            ev["proxy"] = self.cell["beta"] * ev["kl_sampled"]
        row, pr = _checkpoint_rows(ev, step)
        self.rows.append(row)
        self.prompt_rows.extend(pr)


def stage_rl(cell, spec, base: Path) -> dict:
    rm, state = _rm(spec, base, cell["rm"])
    info = _rm_info(base, cell["rm"])
    t = _Tuning(cell, spec, base, rm=rm, rm_state=state)
    r = spec["rl"]
    t.checkpoint(0)
    M.rl(t.pi, t.ref, rm, t.data["train"]["prompts"], spec["completion_len"], steps=r["steps"],
         kl_coef=cell["kl_penalty"], lr=float(r["lr"]), batch_prompts=r["batch_prompts"],
         samples_per_prompt=cell.get("samples_per_prompt", r["samples_per_prompt"]), rm_offset=t.rm_offset,
         seed=cell["seed"], on_checkpoint=t.checkpoint, every=r["every"], baseline=r.get("baseline") or "rloo")
    return {"rm": cell["rm"], "kl_penalty": cell["kl_penalty"],
            **{k: info[k] for k in ("rm_params", "rm_data", "rm_accuracy", "rm_n_eval")},
            **_policy_info(spec, cell, t.ref), "rows": t.rows, "prompt_rows": t.prompt_rows}


def stage_dpo(cell, spec, base: Path) -> dict:
    """DPO on the gold-labelled pairs; 'proxy' is DPO's implicit reward beta * log(pi / pi0) of the samples."""
    t = _Tuning(cell, spec, base)
    tr = t.data["train"]
    n = min(cell["pairs"], len(tr["prompts"]))
    o = spec["dpo"]
    t.checkpoint(0)
    M.dpo(t.pi, t.ref, tr["prompts"][:n], tr["chosen"][:n], tr["rejected"][:n], beta=cell["beta"], lr=float(o["lr"]),
          batch=o["batch"], epochs=o["epochs"], seed=cell["seed"], on_checkpoint=t.checkpoint, every=o["every"])
    return {"beta": cell["beta"], "rm_data": n, **_policy_info(spec, cell, t.ref), "rows": t.rows,
            "prompt_rows": t.prompt_rows}


STAGES = {"policy": stage_policy, "data": stage_data, "rm": stage_rm, "bon": stage_bon, "rl": stage_rl,
          "dpo": stage_dpo}
