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

from ..sweep.definition import merged_definition
from ..sweep.spec import SpecError, check_numbers


class OveroptSpecError(SpecError):
    """The overoptimization sweep definition is invalid."""


DEFAULTS: dict[str, Any] = {
    "name": None,
    "methods": ["bon", "rl"],
    "seeds": [0],
    "policy": {"vocab": 32, "states": 64, "d_model": 64, "n_layer": 2, "n_head": 4, "pretrain_steps": 300,
               "batch": 32, "lr": 3e-3, "corpus_tokens": 300_000, "seed": 0, "dir": None,
               "shapes": None},
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
           "every": 20, "eval_samples": 4, "baseline": None},
    "dpo": {"beta": [0.05, 0.2], "lr": 1e-4, "batch": 32, "epochs": 1, "every": 50},
    "threads_per_worker": 1,
    "retries": 1,
}
METHODS = ("bon", "rl", "dpo")
#: RL baselines: leave-one-out among a prompt's own samples (RLOO, k >= 2), or among the whole batch (k >= 1)
BASELINES = ("rloo", "batch")
#: settings added with the RLHF axes (issue 14): left out of a spec unless set, so older stores' specs and cell
#: configs are unchanged by them
OPTIONAL = (("policy", "shapes"), ("rl", "baseline"))


def load_spec(definition) -> dict:
    """A validated spec from a YAML path or a dict."""
    spec, _ = merged_definition(definition, DEFAULTS, OveroptSpecError)
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
        _check_samples(r)
        if r["every"] < 1 or r["steps"] < r["every"]:
            raise OveroptSpecError("rl.every must be >= 1 and no more than rl.steps")
    if "dpo" in s["methods"] and (not s["dpo"]["beta"] or min(s["dpo"]["beta"]) <= 0):
        raise OveroptSpecError("dpo.beta is a non-empty list of positive values")
    if p["shapes"] is not None:
        _check_policy_shapes(p["shapes"])
    for outer, key in OPTIONAL:  # unset: not in the spec at all (see OPTIONAL)
        if s[outer].get(key, 0) is None:
            del s[outer][key]


def _check_samples(r: dict) -> None:
    """rl.samples_per_prompt: a number, or a list of them (an axis); k = 1 needs the batch baseline."""
    ks, baseline = r["samples_per_prompt"], r.get("baseline") or "rloo"
    if baseline not in BASELINES:
        raise OveroptSpecError(f"rl.baseline is one of {list(BASELINES)}; got {baseline!r}")
    listed = ks if isinstance(ks, list) else [ks]
    if not listed or not all(isinstance(k, int) and not isinstance(k, bool) for k in listed):
        raise OveroptSpecError(f"rl.samples_per_prompt is an integer or a non-empty list of integers; got {ks!r}")
    if len(set(listed)) != len(listed):
        raise OveroptSpecError(f"rl.samples_per_prompt lists a value twice: {ks}")
    if min(listed) < 1:
        raise OveroptSpecError(f"rl.samples_per_prompt must be >= 1 (completions drawn per prompt); got {ks}")
    if baseline == "rloo" and min(listed) < 2:
        raise OveroptSpecError(f"rl.samples_per_prompt must be >= 2 with RLOO (its baseline for a sample is the "
                               f"mean of the other samples of the same prompt); got {ks}. For k = 1 set "
                               "rl.baseline: batch (leave-one-out over the whole batch)")
    if min(listed) * r["batch_prompts"] < 2:
        raise OveroptSpecError("rl.batch_prompts x rl.samples_per_prompt must be >= 2: the batch baseline "
                               "leaves each sample out of the mean of the others")


def _check_policy_shapes(shapes) -> None:
    """policy.shapes: the policies optimised, each [d_model, n_layer, n_head] that a Llama can be built with."""
    if not isinstance(shapes, list) or not shapes:
        raise OveroptSpecError("policy.shapes is a non-empty list of [d_model, n_layer, n_head] (the policies to "
                               f"optimise); got {shapes!r}")
    for sh in shapes:
        if not (isinstance(sh, (list, tuple)) and len(sh) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sh)):
            raise OveroptSpecError(f"each policy shape is [d_model, n_layer, n_head] of positive ints; got {sh!r}")
        if sh[0] % sh[2] or (sh[0] // sh[2]) % 2:
            raise OveroptSpecError(f"policy shape {list(sh)} cannot be built: d_model must split into n_head heads "
                                   "of an even size (rotary embeddings rotate pairs of dimensions)")
    if len({tuple(sh) for sh in shapes}) != len(shapes):
        raise OveroptSpecError(f"policy.shapes lists a shape twice: {shapes}")


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
    "rl.lr": ("number", 0, False), "rl.batch_prompts": ("int", 1, True),
    "rl.every": ("int", 1, True), "rl.eval_samples": ("int", 1, True), "dpo.beta": ("list", 0, False),
    "dpo.lr": ("number", 0, False), "dpo.batch": ("int", 1, True), "dpo.epochs": ("int", 1, True),
    "dpo.every": ("int", 1, True), "threads_per_worker": ("int", 1, True), "retries": ("int", 0, True),
}


def rm_id(shape, pairs: int, seed: int) -> str:
    return f"rm-d{shape[0]}-l{shape[1]}-h{shape[2]}-p{pairs}-s{seed}"


def policy_name(shape) -> str:
    """A policy on the ``policy.shapes`` axis, by shape: ``d64-l2-h4``."""
    return f"d{shape[0]}-l{shape[1]}-h{shape[2]}"


def base_shape(spec: dict) -> list[int]:
    p = spec["policy"]
    return [p["d_model"], p["n_layer"], p["n_head"]]


def axes(spec: dict) -> dict:
    """The RLHF axes of a sweep: ``policies`` (shapes; None: the sweep's one policy, as before the axes) and
    ``samples_per_prompt`` (a list; one value when not an axis); ``on``: whether any axis is set."""
    shapes = spec["policy"].get("shapes")
    ks = spec["rl"]["samples_per_prompt"]
    k_axis = isinstance(ks, list)
    return {"policies": [list(sh) for sh in shapes] if shapes else None, "samples_per_prompt": ks if k_axis else [ks],
            "on": bool(shapes) or k_axis, "k_axis": k_axis}


def cells(spec: dict) -> list[dict]:
    """Every cell of the sweep in dependency order: (id, stage, settings, needs).

    With ``policy.shapes`` each optimisation cell (best-of-n, RL, DPO) is repeated per policy and named with its
    shape (``-d64-l2-h4``); a shape other than the sweep's own policy gets a ``policy`` cell that pretrains it and
    draws its bank of samples. With a list of ``rl.samples_per_prompt`` each RL cell is repeated per k (``-k4``).
    The preference data and reward models always come from the sweep's own policy, so every policy is optimised
    against the same reward models. Without the axes, the cells are exactly those of a sweep before them."""
    ax = axes(spec)
    out = [{"id": "policy", "stage": "policy", "needs": []},
           {"id": "data", "stage": "data", "needs": ["policy"]}]
    pols = [None]  # None: the sweep's own policy, cell fields as before the axes
    if ax["policies"]:
        pols = []
        for sh in ax["policies"]:
            name = policy_name(sh)
            own = sh == base_shape(spec)
            if not own:  # the language's corpus is written by the first policy cell: the others wait for it
                out.append({"id": f"policy-{name}", "stage": "policy", "shape": sh, "policy": name,
                            "needs": ["policy"]})
            pols.append({"policy": name, "policy_shape": sh, "policy_cell": "data" if own else f"policy-{name}"})
    elif ax["on"] and not spec["policy"]["dir"]:  # only the k axis: the sweep's own policy, named in the export
        pols = [{"policy": policy_name(base_shape(spec)), "policy_shape": base_shape(spec), "policy_cell": "data"}]
    rms = []
    for seed in spec["seeds"]:
        for pairs in spec["preferences"]["pairs"]:
            for shape in spec["reward_models"]["shapes"]:
                rid = rm_id(shape, pairs, seed)
                rms.append(rid)
                out.append({"id": rid, "stage": "rm", "shape": list(shape), "pairs": pairs, "seed": seed,
                            "needs": ["data"]})

    def tag(pol):
        if pol is None:
            return "", {}, []
        return (f"-{pol['policy']}" if ax["policies"] else "", {k: pol[k] for k in ("policy", "policy_shape")},
                [pol["policy_cell"]] if pol["policy_cell"] != "data" else [])

    for c in [c for c in out if c["stage"] == "rm"]:
        for pol in pols:
            sfx, extra, needs = tag(pol)
            if "bon" in spec["methods"]:
                out.append({"id": f"bon-{c['id']}{sfx}", "stage": "bon", "rm": c["id"], "seed": c["seed"], **extra,
                            "needs": [c["id"]] + needs})
            if "rl" in spec["methods"]:
                for kl in spec["rl"]["kl_penalty"]:
                    for k in ax["samples_per_prompt"]:
                        ksfx, kext = (f"-k{k}", {}) if ax["k_axis"] else ("", {})
                        if ax["on"]:
                            kext = {"samples_per_prompt": int(k)}
                        out.append({"id": f"rl-{c['id']}-kl{kl:g}{ksfx}{sfx}", "stage": "rl", "rm": c["id"],
                                    "kl_penalty": float(kl), "seed": c["seed"], **extra, **kext,
                                    "needs": [c["id"]] + needs})
    if "dpo" in spec["methods"]:
        for seed in spec["seeds"]:
            for pairs in spec["preferences"]["pairs"]:
                for beta in spec["dpo"]["beta"]:
                    for pol in pols:
                        sfx, extra, needs = tag(pol)
                        out.append({"id": f"dpo-p{pairs}-b{beta:g}-s{seed}{sfx}", "stage": "dpo", "pairs": pairs,
                                    "beta": float(beta), "seed": seed, **extra, "needs": ["data"] + needs})
    return [dict(c, spec=copy.deepcopy(spec)) for c in out]
