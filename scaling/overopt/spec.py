"""Overoptimization sweep definitions: YAML in, a validated plan of cells out.

A sweep is a small dependency graph of cells: the initial policy, the data
(preference pairs and a bank of samples on held-out prompts), one reward model
per (size, data size, seed), then best-of-n per reward model, RL per (reward
model, KL penalty) and DPO per beta. Everything is checked before anything
trains.
"""

from __future__ import annotations

import copy
from typing import Any

from ..sweep.spec import SpecError, _merge, check_numbers, read_definition


class OveroptSpecError(SpecError):
    """The overoptimization sweep definition is invalid."""


DEFAULTS: dict[str, Any] = {
    "name": None,
    "methods": ["bon", "rl"],
    "seeds": [0],
    "policy": {"vocab": 32, "states": 64, "d_model": 64, "n_layer": 2, "n_head": 4, "pretrain_steps": 300,
               "batch": 32, "lr": 3e-3, "corpus_tokens": 300_000, "seed": 0, "dir": None},
    "prompt_len": 8,
    "completion_len": 16,
    "gold": {"name": "features", "satiation": 10.0, "satiation_at": 0.3, "pairs_per_token": 3.0,
             "w_unigram": 1.0, "w_bigram": 1.0, "w_repetition": 0.25, "free_repeats": 2, "seed": 0},
    "preferences": {"pairs": [48000], "eval_pairs": 2000, "labels": "deterministic", "temperature": 0.1,
                    "label_noise": 0.0},
    "reward_models": {"shapes": [[4, 1, 1], [8, 1, 2], [16, 1, 2], [32, 2, 4], [64, 2, 4]], "lr": 3e-3,
                      "batch": 32},
    "bon": {"prompts": 64, "samples": 1000, "n": [1, 2, 3, 5, 8, 13, 20, 32, 50, 80, 128, 200, 320, 500, 800, 1000]},
    "rl": {"kl_penalty": [0.0, 0.02, 0.1], "steps": 400, "lr": 2e-5, "batch_prompts": 16, "samples_per_prompt": 4,
           "every": 20, "eval_samples": 4},
    "dpo": {"beta": [0.05, 0.2], "lr": 1e-4, "batch": 32, "epochs": 1, "every": 50},
    "threads_per_worker": 1,
    "retries": 1,
}
METHODS = ("bon", "rl", "dpo")


def load_spec(definition) -> dict:
    """A validated spec from a YAML path or a dict."""
    raw, _ = read_definition(definition, OveroptSpecError)
    try:
        spec = _merge(DEFAULTS, raw)
    except OveroptSpecError:
        raise
    except SpecError as exc:
        raise OveroptSpecError(str(exc)) from None
    _validate(spec)
    return spec


def _validate(s: dict) -> None:
    if not s["name"] or not str(s["name"]).replace("-", "").replace("_", "").isalnum():
        raise OveroptSpecError("the sweep needs a 'name' of letters, digits, '-' and '_'")
    bad = [m for m in s["methods"] if m not in METHODS]
    if bad or not s["methods"]:
        raise OveroptSpecError(f"methods must be a non-empty list from {list(METHODS)}; got {s['methods']}")
    check_numbers(s, NUMBERS, OveroptSpecError, text_ok=("policy.lr", "reward_models.lr", "rl.lr", "dpo.lr"))
    shapes = s["reward_models"]["shapes"]
    if not shapes:
        raise OveroptSpecError("reward_models.shapes needs at least one [d_model, n_layer, n_head]")
    for sh in shapes:
        if not (isinstance(sh, (list, tuple)) and len(sh) == 3 and all(isinstance(v, int) and v > 0 for v in sh)):
            raise OveroptSpecError(f"each reward model shape is [d_model, n_layer, n_head] of positive ints; got {sh}")
        if sh[0] % sh[2]:
            raise OveroptSpecError(f"reward model d_model {sh[0]} is not divisible by n_head {sh[2]}")
    p = s["policy"]
    if p["d_model"] % p["n_head"]:
        raise OveroptSpecError(f"policy d_model {p['d_model']} is not divisible by n_head {p['n_head']}")
    if s["prompt_len"] < 1 or s["completion_len"] < 2:
        raise OveroptSpecError("prompt_len must be >= 1 and completion_len >= 2")
    pr = s["preferences"]
    if not pr["pairs"] or min(pr["pairs"]) < 8:
        raise OveroptSpecError(f"preferences.pairs must list training-set sizes of at least 8 pairs; got {pr['pairs']}")
    if pr["labels"] not in ("deterministic", "bradley-terry"):
        raise OveroptSpecError("preferences.labels is 'deterministic' (the higher gold wins) or 'bradley-terry'")
    if not 0 <= pr["label_noise"] < 0.5:
        raise OveroptSpecError("preferences.label_noise (probability of flipping a label) must be in [0, 0.5)")
    if pr["eval_pairs"] < 20:
        raise OveroptSpecError("preferences.eval_pairs must be at least 20 to judge an RM's accuracy")
    b = s["bon"]
    if "bon" in s["methods"]:
        if max(b["n"]) > b["samples"] or min(b["n"]) < 1:
            raise OveroptSpecError(f"bon.n must lie in [1, bon.samples={b['samples']}] (the unbiased estimator "
                                   f"needs at least n samples per prompt); got up to {max(b['n'])}")
    r = s["rl"]
    if "rl" in s["methods"]:
        if any(k < 0 for k in r["kl_penalty"]) or not r["kl_penalty"]:
            raise OveroptSpecError("rl.kl_penalty is a non-empty list of coefficients >= 0")
        if r["samples_per_prompt"] < 2:
            raise OveroptSpecError("rl.samples_per_prompt must be >= 2 (RLOO's baseline uses the other samples)")
        if r["every"] < 1 or r["steps"] < r["every"]:
            raise OveroptSpecError("rl.every must be >= 1 and no more than rl.steps")
    if "dpo" in s["methods"] and (not s["dpo"]["beta"] or min(s["dpo"]["beta"]) <= 0):
        raise OveroptSpecError("dpo.beta is a non-empty list of positive values")


NUMBERS = {  # key: (kind, lower bound, bound included); see scaling.sweep.spec.check_numbers
    "seeds": ("list-int", 0, True), "policy.vocab": ("int", 2, True), "policy.states": ("int", 1, True),
    "policy.d_model": ("int", 1, True), "policy.n_layer": ("int", 1, True), "policy.n_head": ("int", 1, True),
    "policy.pretrain_steps": ("int", 1, True), "policy.batch": ("int", 1, True), "policy.lr": ("number", 0, False),
    "policy.corpus_tokens": ("int", 1, True), "policy.seed": ("int", 0, True), "prompt_len": ("int", 1, True),
    "completion_len": ("int", 2, True), "gold.seed": ("int", 0, True), "preferences.pairs": ("list-int", 0, False),
    "preferences.eval_pairs": ("int", 1, True), "preferences.temperature": ("number", 0, False),
    "preferences.label_noise": ("number", 0, True), "reward_models.lr": ("number", 0, False),
    "reward_models.batch": ("int", 1, True), "bon.prompts": ("int", 1, True), "bon.samples": ("int", 1, True),
    "bon.n": ("list-int", 1, True), "rl.kl_penalty": ("list", 0, True), "rl.steps": ("int", 1, True),
    "rl.lr": ("number", 0, False), "rl.batch_prompts": ("int", 1, True), "rl.samples_per_prompt": ("int", 1, True),
    "rl.every": ("int", 1, True), "rl.eval_samples": ("int", 1, True), "dpo.beta": ("list", 0, False),
    "dpo.lr": ("number", 0, False), "dpo.batch": ("int", 1, True), "dpo.epochs": ("int", 1, True),
    "dpo.every": ("int", 1, True), "threads_per_worker": ("int", 1, True), "retries": ("int", 0, True),
}


def rm_id(shape, pairs: int, seed: int) -> str:
    return f"rm-d{shape[0]}-l{shape[1]}-h{shape[2]}-p{pairs}-s{seed}"


def cells(spec: dict) -> list[dict]:
    """Every cell of the sweep in dependency order: (id, stage, settings, needs)."""
    out = [{"id": "policy", "stage": "policy", "needs": []},
           {"id": "data", "stage": "data", "needs": ["policy"]}]
    rms = []
    for seed in spec["seeds"]:
        for pairs in spec["preferences"]["pairs"]:
            for shape in spec["reward_models"]["shapes"]:
                rid = rm_id(shape, pairs, seed)
                rms.append(rid)
                out.append({"id": rid, "stage": "rm", "shape": list(shape), "pairs": pairs, "seed": seed,
                            "needs": ["data"]})
    for c in [c for c in out if c["stage"] == "rm"]:
        if "bon" in spec["methods"]:
            out.append({"id": f"bon-{c['id']}", "stage": "bon", "rm": c["id"], "seed": c["seed"], "needs": [c["id"]]})
        if "rl" in spec["methods"]:
            for kl in spec["rl"]["kl_penalty"]:
                out.append({"id": f"rl-{c['id']}-kl{kl:g}", "stage": "rl", "rm": c["id"], "kl_penalty": float(kl),
                            "seed": c["seed"], "needs": [c["id"]]})
    if "dpo" in spec["methods"]:
        for seed in spec["seeds"]:
            for pairs in spec["preferences"]["pairs"]:
                for beta in spec["dpo"]["beta"]:
                    out.append({"id": f"dpo-p{pairs}-b{beta:g}-s{seed}", "stage": "dpo", "pairs": pairs,
                                "beta": float(beta), "seed": seed, "needs": ["data"]})
    return [dict(c, spec=copy.deepcopy(spec)) for c in out]
