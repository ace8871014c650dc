"""Sweep definitions: YAML in, a validated list of run configs out.

Everything is checked before anything trains: unknown keys, impossible shapes,
budgets too small for a single step.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..counting import count_params
from ..errors import ScalingError, ScalingWarning
from .corpus import CORPORA, check_tokens, token_folder


class SpecError(ScalingError, ValueError):
    """The sweep definition is invalid."""


DEFAULTS: dict[str, Any] = {
    "name": None,
    "trainer": "transformer",
    # vocab_size None: the corpus's (256 for the byte corpora)
    "model": {"family": "llama", "sizes": None, "shapes": None, "seq_len": 128, "vocab_size": None, "head_dim": 16},
    # lr, warmup, batch_tokens: hyperparameter axes (lists), crossed with the N x D or IsoFLOP grid and the seeds;
    # grid.lr lists absolute learning rates, grid.lr_mult multiplies each run's own learning rate (optimizer.lr's
    # value or rule, or the shape's lr), grid.batch_tokens is batch.tokens_per_step given as a list
    "grid": {"tokens": None, "compute": None, "min_steps": 20, "min_tokens_per_param": None,
             "max_tokens_per_param": None, "lr": None, "lr_mult": None, "warmup": None, "batch_tokens": None,
             # adaptive: {rounds, target_ci_a, add_per_budget}: grow an IsoFLOP grid in rounds (sweep/adaptive.py)
             "adaptive": None,
             # around: {C, N, a} or {from: FIT.json, key}, with sizes, ratio and shift: each IsoFLOP budget trains
             # the `sizes` shapes nearest a guess of its optimum, spaced `ratio` apart in N (see centre_budgets)
             "around": None},
    "seeds": [0],
    # lr: a number, {base, ref_width, exponent} (lr = base * (d_model / ref_width)^exponent), or {from: FIT.json}
    # (eta_opt of a fitted hparams law at the run's N and D); a model.shapes entry's own lr overrides it
    "optimizer": {"lr": 3e-3, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95, "grad_clip": 1.0},
    # wsd: cooldown (the share of the run cooling down; decay_frac is its older name), shape (linear or 1-sqrt),
    # branches: one warmup-stable run per size with a cooldown branch per D (scaling/sweep/branches.py)
    "schedule": {"type": "cosine", "warmup": 0.05, "final_lr_frac": 0.1, "decay_frac": 0.2, "cooldown": None,
                 "shape": None, "branches": False},
    # one batch size for the whole sweep, so every run of a seed reads the same stream of batches (runs at one
    # budget differ only in the model: common random numbers); "auto" is the per-run rule clip(D/256, 1024, 8192),
    # a list makes it an axis of the grid
    "batch": {"tokens_per_step": 2048},
    "corpus": {"name": "python-stdlib", "states": 256, "branching": 4, "concentration": 1.0, "seed": 0,
               "shift_seed": None, "tokens": 8_000_000, "max_bytes": 24_000_000, "val_fraction": 0.05, "path": None, "dtype": None,
               "vocab_size": None},
    # tokens: the final evaluation's fixed sample of held-out windows, spread over the whole split (capped by
    # the split); curve_tokens: the evaluations during the run, an evenly spaced subset of the same windows
    "eval": {"every": 0.1, "tokens": 1048576, "curve_tokens": 32768},
    "checkpoint": {"every": 0.25},
    "retries": 2,
    "threads_per_worker": 1,
    # where runs train (execution settings: they may change between invocations of a sweep and are not in the ids).
    # type auto: a GPU when torch sees one; precision auto: bf16 autocast on a GPU from d_model 256 (float32 with
    # tf32 matmuls below, faster there); sync_every: steps between host syncs (32 on a GPU, 1 on the CPU)
    "device": {"type": "auto", "precision": "auto", "sync_every": None},
    # small models leave a GPU idle: this many workers (runs) share each GPU
    "workers_per_gpu": 1,
    # keep each finished run's final model as runs/<run_id>/model (save_pretrained): base models for
    # `scaling finetune run`; in a run's config (and so its id) only when true
    "save_model": False,
    "toy": {"E": 1.7, "A": 400.0, "B": 1500.0, "alpha": 0.33, "beta": 0.30, "noise": 0.002,
            "fail_once": False, "nan_at": None, "step_sleep": 0.0},
}
SCHEDULES = ("cosine", "wsd", "constant")
FAMILIES = ("llama", "gpt2")
TRAINERS = ("transformer", "toy")


def _merge(base: dict, override: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        where = f"{path}{k}"
        if k not in base:
            allowed = ", ".join(sorted(base))
            raise SpecError(f"unknown key {where!r} in sweep definition; allowed here: {allowed}")
        if isinstance(base[k], dict) and base[k] and not isinstance(v, dict):
            raise SpecError(f"{where!r} must be a mapping with keys {sorted(base[k])}")
        if isinstance(base[k], dict) and base[k]:
            out[k] = _merge(base[k], v, where + ".")
        else:
            out[k] = v
    return out


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading 3e-3 as the number it is: YAML 1.1 (what PyYAML implements) takes a float
    without a dot for text, so ``lr: 3e-3`` became the string '3e-3', was recorded as text and compared unequal to
    the same 0.003. (YAML 1.2 reads it as a number; quoted, "3e-3" stays text.)"""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def read_yaml(text: str):
    """A YAML document as PyYAML's safe loader reads it, but 1e-3 is a number (:class:`_Loader`)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def read_definition(source: str | Path | dict, error=None) -> tuple[dict, str]:
    """(raw mapping, where it came from) from a YAML path or a dict; the name defaults to the file's stem."""
    error = error or SpecError
    if isinstance(source, dict):
        raw, origin = dict(source), "<dict>"
    else:
        path = Path(source)
        if not path.exists():
            raise error(f"no such sweep file: {path}")
        try:
            raw = read_yaml(path.read_text())
        except yaml.YAMLError as exc:
            raise error(f"{path} is not valid YAML: {exc}") from None
        origin = str(path)
        if isinstance(raw, dict):
            raw.setdefault("name", path.stem)
    if not isinstance(raw, dict):
        raise error(f"{origin}: a sweep definition is a mapping of keys")
    return raw, origin


def load_spec(source: str | Path | dict) -> dict:
    """Read and validate a sweep definition (path to YAML, or a dict)."""
    raw, origin = read_definition(source)
    if isinstance(raw.get("corpus"), dict) and "fingerprint" in raw["corpus"]:  # a loaded spec, passed back in
        raw["corpus"] = {k: v for k, v in raw["corpus"].items() if k != "fingerprint"}
    lr = raw.get("optimizer", {}).get("lr") if isinstance(raw.get("optimizer"), dict) else None
    if isinstance(lr, dict) and "fitted" in lr:  # likewise: the fit's parameters are read again from its file
        raw["optimizer"] = {**raw["optimizer"], "lr": {k: v for k, v in lr.items() if k != "fitted"}}
    tps = raw.get("batch", {}).get("tokens_per_step") if isinstance(raw.get("batch"), dict) else None
    if isinstance(tps, dict) and "fitted" in tps:
        raw["batch"] = {**raw["batch"], "tokens_per_step": {k: v for k, v in tps.items() if k != "fitted"}}
    if {"reward_models", "gold", "bon", "rl", "dpo"} & set(raw):
        raise SpecError(f"{origin} defines a reward-model overoptimization sweep: run it with `scaling overopt run`")
    if {"base", "downstream", "D_f"} & set(raw):
        raise SpecError(f"{origin} defines a fine-tuning sweep: run it with `scaling finetune run`")
    grid = raw.get("grid")
    if isinstance(grid, dict) and isinstance(grid.get("around"), dict) and "N_opt" in grid["around"]:
        # likewise: the guessed optima are worked out again (from the fit file, for a `from`)
        grid = raw["grid"] = {**grid, "around": {k: v for k, v in grid["around"].items() if k != "N_opt"}}
    if isinstance(grid, dict) and grid.get("batch_tokens") is not None:  # an alias of a batch.tokens_per_step list
        check_numbers({"grid": {"batch_tokens": grid["batch_tokens"]}}, {"grid.batch_tokens": ("list", 0, False)})
        if len(set(map(float, grid["batch_tokens"]))) < len(grid["batch_tokens"]):
            raise SpecError(f"grid.batch_tokens lists a value twice: {grid['batch_tokens']}")
        batch = raw.get("batch") if isinstance(raw.get("batch"), dict) else {}
        if batch.get("tokens_per_step") is not None:
            raise SpecError("grid.batch_tokens and batch.tokens_per_step both set the batch; give one "
                            "(grid.batch_tokens is batch.tokens_per_step as a list: an axis of the grid)")
        raw = {**raw, "grid": {**grid, "batch_tokens": None},
               "batch": {**batch, "tokens_per_step": grid["batch_tokens"]}}
    spec = _merge(DEFAULTS, raw)
    _validate(spec, folder=Path(origin).parent if origin != "<dict>" else None)
    return spec


def _validate(spec: dict, folder: Path | None = None) -> None:
    if not spec["name"] or not str(spec["name"]).replace("-", "").replace("_", "").isalnum():
        raise SpecError(f"name {spec['name']!r} must be letters, digits, '-' or '_'")
    if spec["trainer"] not in TRAINERS:
        raise SpecError(f"trainer must be one of {TRAINERS}, got {spec['trainer']!r}")
    m = spec["model"]
    if m["family"] not in FAMILIES:
        raise SpecError(f"model.family must be one of {FAMILIES}, got {m['family']!r}")
    if (m["sizes"] is None) == (m["shapes"] is None):
        raise SpecError("give exactly one of model.sizes (target non-embedding parameter counts) or model.shapes")
    g = spec["grid"]
    if (g["tokens"] is None) == (g["compute"] is None):
        raise SpecError("give exactly one of grid.tokens (an N x D grid) or grid.compute (IsoFLOP budgets)")
    for key in ("tokens", "compute"):  # one value twice would give two runs one id
        values = g[key]
        if isinstance(values, list) and all(_as_number(v) is not None for v in values) and \
                len({float(v) for v in values}) < len(values):
            raise SpecError(f"grid.{key} lists a value twice: {values}")
    from .train import DEVICE_TYPES, PRECISIONS

    for key, allowed in (("type", DEVICE_TYPES), ("precision", PRECISIONS)):
        if spec["device"][key] not in allowed:
            raise SpecError(f"device.{key} must be one of {allowed}, got {spec['device'][key]!r}")
    if spec["schedule"]["type"] not in SCHEDULES:
        raise SpecError(f"schedule.type must be one of {SCHEDULES}, got {spec['schedule']['type']!r}")
    if not isinstance(spec["seeds"], list) or not spec["seeds"]:
        raise SpecError("seeds must be a non-empty list of integers")
    if len(set(map(str, spec["seeds"]))) < len(spec["seeds"]):  # one run per seed: a repeat would be the same run
        raise SpecError(f"seeds lists a value twice: {spec['seeds']}")
    if not isinstance(spec["save_model"], bool):
        raise SpecError(f"save_model is true or false, got {spec['save_model']!r}")
    if spec["save_model"] and spec["trainer"] != "transformer":
        raise SpecError("save_model keeps a trained transformer; the toy trainer has no model to save")
    lr_rule = isinstance(spec["optimizer"]["lr"], dict)
    check_numbers(spec, {k: v for k, v in SWEEP_NUMBERS.items() if not (lr_rule and k == "optimizer.lr")})
    for section, key in (("eval", "every"), ("checkpoint", "every"), ("schedule", "warmup")):
        v = (spec.get(section) or {}).get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1 and v != int(v):
            raise SpecError(f"{section}.{key} is {v}: give a fraction of the run below 1 (e.g. 0.25) or a whole "
                            f"number of steps (e.g. {int(round(v))})")
    _check_axes(spec)
    if lr_rule:
        _check_lr_rule(spec, folder)
    elif float(spec["optimizer"]["lr"]) > MAX_LR:
        raise SpecError(f"optimizer.lr is {spec['optimizer']['lr']}; {LR_RANGE}")
    tps = spec["batch"]["tokens_per_step"]
    if isinstance(tps, dict):  # {from: FIT.json}: B_opt of a fitted hparams law at each run's N and D
        if "from" not in tps or set(tps) - {"from", "unit"}:
            raise SpecError(f"batch.tokens_per_step is a number, a list (an axis), \"auto\" or {{from: FIT.json}} "
                            f"(with unit: tokens or sequences, the unit of the fit's batch); got the keys {sorted(tps)}")
        unit = tps.get("unit", "tokens")
        if unit not in BATCH_UNITS:
            raise SpecError(f"batch.tokens_per_step.unit is the unit of the fitted batch, one of {list(BATCH_UNITS)}; "
                            f"got {unit!r}")
        path, law = _from_fit(tps["from"], folder, "batch.tokens_per_step")
        spec["batch"]["tokens_per_step"] = {"from": str(path), "fitted": {
            "form": law.form, "params": {k: float(v) for k, v in law.params_.items()}},
            **({"unit": unit} if unit != "tokens" else {})}  # the default left out: earlier runs keep their ids
    elif isinstance(tps, list):  # an axis of the grid
        check_numbers({"batch": {"tokens_per_step": tps}}, {"batch.tokens_per_step": ("list", 0, False)})
        if len(set(map(float, tps))) < len(tps):
            raise SpecError(f"batch.tokens_per_step lists a value twice: {tps}")
    else:
        check_numbers(spec, {"batch.tokens_per_step": ("number|auto", 0, False)})
    if spec["corpus"]["name"] not in CORPORA:
        raise SpecError(f"corpus.name must be one of {', '.join(CORPORA)}; got {spec['corpus']['name']!r}")
    _check_corpus(spec, folder)
    from .branches import check_schedule

    check_schedule(spec)
    from .adaptive import check_adaptive

    check_adaptive(spec)
    _check_around(spec, folder)
    shapes(spec, warn=False)  # raises on impossible shapes (expand warns about the sizes, once)


AROUND = ("a mapping {C: C_REF, N: N_REF, a: EXPONENT} (the optimum guessed as N_REF (C / C_REF)^a) or "
          "{from: FIT.json} (a fit that allocates compute; key: NAME picks one from a file of several, such as a "
          "sweep's fits.json), with sizes (per budget, >= 3; default 5), ratio (between neighbouring sizes' N, > 1; "
          "default 1.8) and shift (where the sizes sit about the guess, in steps of ratio; default 0)")


def _check_around(spec: dict, folder: Path | None = None) -> None:
    """Check ``grid.around`` and write it in full, with the guessed optimum N at each budget (``N_opt``; for a
    ``from``, read from the fit file once). ``load_spec`` drops ``N_opt`` from a spec passed back in and works it
    out again."""
    g = spec["grid"]
    a = g.get("around")
    if a is None:
        return
    if not isinstance(a, dict):
        raise SpecError(f"grid.around is {AROUND}; got {a!r}")
    if g.get("compute") is None:
        raise SpecError("grid.around centres each IsoFLOP budget's sizes on its optimum: it needs grid.compute "
                        "(IsoFLOP budgets), not grid.tokens")
    unknown = set(a) - {"C", "N", "a", "from", "key", "sizes", "ratio", "shift"}
    if unknown:
        raise SpecError(f"unknown key(s) {sorted(unknown)} in grid.around; it is {AROUND}")
    a = {"sizes": 5, "ratio": 1.8, "shift": 0.0, **a}
    check_numbers({"around": a}, {"around.sizes": ("int", 3, True), "around.ratio": ("number", 1, False)},
                  error=lambda msg: SpecError(f"grid.{msg}"))
    if _as_number(a["shift"]) is None or abs(float(a["shift"])) > 3:
        raise SpecError(f"grid.around.shift must be a number of steps of ratio between -3 and 3 (0: the sizes centred "
                        f"on the guess; 0.5: half a step above it); got {a['shift']!r}")
    budgets = [float(C) for C in g["compute"]]
    if "from" in a:
        if {"C", "N", "a"} & set(a):
            raise SpecError("grid.around takes either {C, N, a} or {from: FIT.json}, not both")
        path, N_opt = _allocation_from_fit(a["from"], folder, budgets, a.get("key"))
        out = {"from": str(path), **({"key": str(a["key"])} if a.get("key") is not None else {})}
    elif "key" in a:
        raise SpecError("grid.around.key picks a fit from a `from` file; it needs grid.around.from")
    else:
        missing = [k for k in ("C", "N", "a") if k not in a]
        if missing:
            raise SpecError(f"grid.around is missing {', '.join(missing)}; it is {AROUND}")
        check_numbers({"around": a}, {"around.C": ("number", 0, False), "around.N": ("number", 0, False),
                                      "around.a": ("number", 0, False)}, error=lambda msg: SpecError(f"grid.{msg}"))
        if float(a["a"]) > 1.5:
            raise SpecError(f"grid.around.a is {a['a']}: the exponent of N_opt in C is about 0.5 (0.73 in Kaplan "
                            "et al.); a value above 1.5 is likely a typo")
        out = {"C": float(a["C"]), "N": float(a["N"]), "a": float(a["a"])}
        N_opt = [out["N"] * (C / out["C"]) ** out["a"] for C in budgets]
    g["around"] = {**out, "sizes": int(float(a["sizes"])), "ratio": float(a["ratio"]), "shift": float(a["shift"]),
                   "N_opt": [float(f"{n:.6g}") for n in N_opt]}


def _allocation_from_fit(given, folder: Path | None, budgets: list[float], key=None) -> tuple[Path, list[float]]:
    """(absolute path, N_opt at each budget) of ``grid.around.from``: a fit whose law allocates compute (``key``:
    which fit of a file that holds several, as a sweep's fits.json)."""
    path, also = _beside(given, folder)
    if not path.is_file():
        raise SpecError(f"grid.around.from: no such fit file {path}{also}; write one with "
                        f"`scaling fit RUNS --law isoflop --out {path}` (or chinchilla)")
    from ..laws import Law

    try:
        fit = Law.load(path, key=None if key is None else str(key))
        N_opt = fit.compute_optimal(budgets, interval=False)["N_opt"].to_numpy(float)
    except ScalingError as exc:
        msg = str(exc)
        if key is None and ": load one with" in msg:  # a sweep's fits.json: the way to pick one here is key
            msg = msg.split(": load one with")[0] + "; pick one with grid.around.key (e.g. key: isoflop)"
        raise SpecError(f"grid.around.from: {msg}") from None
    if not np.all(np.isfinite(N_opt) & (N_opt > 0)):
        raise SpecError(f"grid.around.from: the fit in {path} gives no usable N_opt at the budgets {budgets}")
    return path, N_opt.tolist()


def pick_sizes(have: list, N_opt: float, k: int, ratio: float, shift: float = 0.0) -> list:
    """The sizes (of ``have``, sorted) nearest the targets N_opt * ratio^(j - (k - 1) / 2 + shift), j = 0 .. k - 1:
    each target in turn, the middle ones first, takes the nearest size in log N not yet taken (so a ladder coarser
    than ``ratio`` still gives k sizes where it has them)."""
    lN = np.log(np.array(have, float))
    offsets = np.arange(k) - (k - 1) / 2
    taken: set = set()
    for j in sorted(range(k), key=lambda j: (abs(offsets[j]), j)):
        t = np.log(N_opt) + np.log(ratio) * (offsets[j] + shift)
        free = [i for i in np.argsort(np.abs(lN - t), kind="stable") if i not in taken]
        if free:
            taken.add(int(free[0]))
    return [have[i] for i in sorted(taken)]


def centre_budgets(spec: dict, runs: list[dict], listed: list[dict]) -> list[dict]:
    """The runs of ``grid.around``: at each budget, the ``sizes`` sizes (:func:`pick_sizes`) around its guessed
    optimum among the sizes the budget allows (tokens per parameter, steps); shapes of one N count as one size.

    Why: a parabola's vertex is pinned by sizes on both sides of it, well apart; a fixed band of tokens per
    parameter drifts off the optimum as the budget grows (N_opt grows faster than C^0.5), which left the old
    quickstart's largest budget's minimum near the edge of its sizes (benchmarks/RESULTS.md, the quickstart's
    design). A budget left with fewer than 3 sizes (no parabola) is an error; fewer than ``sizes``, a warning.
    ``listed``: the definition's shapes (:func:`shapes`)."""
    g = spec["grid"]["around"]
    k, ratio, shift = g["sizes"], g["ratio"], g["shift"]
    listed = sorted({sh["N"] for sh in listed})
    keep: dict = {}
    for C, N_opt in zip(spec["grid"]["compute"], g["N_opt"]):
        C = float(C)
        have = sorted({r["N"] for r in runs if r["budget"] == C})
        refused = [n for n in listed if n not in have]
        why = (f"; {len(refused)} of the {len(listed)} listed sizes are refused at this budget (fewer than "
               f"grid.min_steps steps at this batch, or outside grid.min/max_tokens_per_param)" if refused else "")
        picked = pick_sizes(have, N_opt, k, ratio, shift) if have else []
        if len(picked) < 3:
            raise SpecError(f"grid.around: the budget C={C:.3g} can train {len(picked)} size(s) around N_opt = "
                            f"{N_opt:.3g}, and a parabola needs 3{why}; list more shapes, lower batch.tokens_per_step, "
                            "or drop the budget")
        if len(picked) < k:
            warnings.warn(f"grid.around: the budget C={C:.3g} gets {len(picked)} sizes, not {k}: it allows only "
                          f"{len(have)} (N {have[0]:,}-{have[-1]:,}){why}", ScalingWarning, stacklevel=3)
        if not (have[0] < N_opt < have[-1]):
            side = "below" if N_opt <= have[0] else "above"
            fix = (why.lstrip("; ") + " at that end") if any((n < have[0]) if side == "below" else (n > have[-1])
                                                             for n in refused) else "list shapes on that side"
            warnings.warn(f"grid.around: the guessed optimum of C={C:.3g} (N = {N_opt:.3g}) is {side} the sizes it "
                          f"allows (N {have[0]:,}-{have[-1]:,}), so its minimum will not be bracketed: {fix}",
                          ScalingWarning, stacklevel=3)
        keep[C] = set(picked)
    return [r for r in runs if r["N"] in keep.get(r["budget"], ())]


def _check_axes(spec: dict) -> None:
    """grid.lr and grid.warmup: lists of distinct values (learning rates > 0; warmups >= 0, as schedule.warmup)."""
    g = spec["grid"]
    check_numbers(spec, {"grid.lr": ("list?", 0, False), "grid.lr_mult": ("list?", 0, False),
                         "grid.warmup": ("list?", 0, True)})
    for key in ("lr", "lr_mult", "warmup"):
        if g[key] is not None and len(set(map(float, g[key]))) < len(g[key]):
            raise SpecError(f"grid.{key} lists a value twice: {g[key]}")
    for v in map(float, g["warmup"] or []):
        if v >= 1 and v != int(v):
            raise SpecError(f"grid.warmup lists {v:g}: give fractions of the run below 1 (e.g. 0.05) or whole numbers "
                            f"of steps (e.g. {int(round(v))}), as schedule.warmup")
    if g["lr"] is not None and max(map(float, g["lr"])) > MAX_LR:
        raise SpecError(f"grid.lr lists {max(map(float, g['lr'])):g}; {LR_RANGE}")
    if g["lr"] is not None and isinstance(spec["optimizer"]["lr"], dict):
        raise SpecError("optimizer.lr is a rule and grid.lr lists the learning rates of every run (absolute values, "
                        "not multipliers); drop one of them, or give grid.lr_mult: multipliers of the rule's value")
    if g["lr"] is not None and g["lr_mult"] is not None:
        raise SpecError("grid.lr (absolute learning rates) and grid.lr_mult (multipliers of each run's own learning "
                        "rate) both set the learning-rate axis; give one")


LR_RULE = "a number, {base, ref_width, exponent} (lr = base * (d_model / ref_width)^exponent) or {from: FIT.json}"


def _check_lr_rule(spec: dict, folder: Path | None = None) -> None:
    """Check a learning-rate rule and write it in full: the exponent's default (-1), or the fitted parameters
    of a ``from`` fit (so that a changed fit file shows as a changed setting of the sweep).

    A relative ``from`` path is read beside the definition's YAML file (``folder``), else in the current
    directory; the spec records the absolute path it was read from."""
    rule = spec["optimizer"]["lr"]
    keys = set(rule)
    if "from" in keys:
        if keys != {"from"}:
            raise SpecError(f"optimizer.lr is {LR_RULE}; 'from' takes no other keys, got {sorted(keys - {'from'})}")
        path, law = _from_fit(rule["from"], folder, "optimizer.lr")
        spec["optimizer"]["lr"] = {"from": str(path), "fitted": {"form": law.form, "params": {
            k: float(v) for k, v in law.params_.items()}}}
        return
    unknown, missing = keys - {"base", "ref_width", "exponent"}, {"base", "ref_width"} - keys
    if unknown or missing:
        what = f"unknown key(s) {sorted(unknown)}" if unknown else f"missing {sorted(missing)}"
        raise SpecError(f"optimizer.lr is {LR_RULE}; {what}")
    rule = {"exponent": -1.0, **rule}
    check_numbers({"optimizer": {"lr": rule}}, {"optimizer.lr.base": ("number", 0, False),
                                                "optimizer.lr.ref_width": ("number", 0, False)})
    if _as_number(rule["exponent"]) is None:
        raise SpecError(f"optimizer.lr.exponent must be a number; got {rule['exponent']!r}")
    spec["optimizer"]["lr"] = {k: float(rule[k]) for k in ("base", "ref_width", "exponent")}


def _beside(given, folder: Path | None) -> tuple[Path, str]:
    """(absolute path, ' (nor OTHER)' when neither exists) of a file named in a definition: a relative path is
    read beside the definition's YAML file (``folder``), else in the current directory."""
    given = Path(os.path.expanduser(str(given)))
    tried = [given] if given.is_absolute() or folder is None else [folder / given, given]
    path = next((p for p in tried if p.is_file()), tried[0]).resolve()
    other = tried[-1].resolve()
    return path, f" (nor {other})" if other != path and not path.is_file() else ""


def _from_fit(given, folder: Path | None, key: str):
    """(absolute path, fitted hparams law) of a ``{from: FIT.json}`` setting ``key`` (a path as :func:`_beside`)."""
    path, also = _beside(given, folder)
    return path, _lr_fit(path, also, key)


def _lr_fit(path: Path, also: str = "", key: str = "optimizer.lr"):
    """The fitted hparams law in ``path``, read with the package's own fit loading (numpy and pandas, no torch)."""
    if not path.is_file():
        raise SpecError(f"{key}.from: no such fit file {path}{also}; write one with "
                        f"`scaling fit RUNS --law hparams --out {path}`")
    from ..laws import Law

    try:
        law = Law.load(path)
    except ScalingError as exc:
        raise SpecError(f"{key}.from: {exc}") from None
    if law.name != "hparams":
        raise SpecError(f"{key}.from: {path} is a {law.name} fit, not an hparams law; fit one with "
                        "`scaling fit RUNS --law hparams --out FIT.json`")
    return law


def learning_rate(spec: dict, shape: dict, D: float, fit=None) -> float | None:
    """The learning rate of a run of ``shape`` on ``D`` tokens: the shape's own ``lr``, else the rule of
    ``optimizer.lr``; None when that is a plain number (the run keeps the sweep's optimizer settings as they are).

    ``fit``: the hparams law of a ``from`` rule, loaded once per expansion. Rounded to 10 significant digits,
    so that 3e-3 * 64 / 48 reads 0.004 in the runs table.
    """
    if "lr" in shape:
        return shape["lr"]
    rule = spec["optimizer"]["lr"]
    if not isinstance(rule, dict):
        return None
    if "from" in rule:
        X = {"N": float(shape["N"]), "D": float(D), "C": 6.0 * shape["N"] * D}
        lr = _fitted(fit, X, "lr")
        if not _sane_lr(lr):
            raise SpecError(f"optimizer.lr.from: the fit in {rule['from']} predicts lr = {lr:.4g} at N={shape['N']}, "
                            f"D={D:.4g}; {LR_RANGE}")
    else:
        try:
            lr = rule["base"] * (shape["d_model"] / rule["ref_width"]) ** rule["exponent"]
        except OverflowError:
            lr = math.inf
        if not _sane_lr(lr):
            raise SpecError(f"optimizer.lr {{base: {rule['base']:g}, ref_width: {rule['ref_width']:g}, exponent: "
                            f"{rule['exponent']:g}}} gives lr = {lr:.4g} for the shape n_layer={shape['n_layer']}, "
                            f"d_model={shape['d_model']} (N={shape['N']}); {LR_RANGE}")
    return float(f"{lr:.10g}")


#: the largest learning rate a run is started with: above it, a value is a mistake in the definition
MAX_LR = 10.0
LR_RANGE = f"a learning rate must be a finite number > 0 and at most {MAX_LR:g}"
#: the units a fitted hparams law's batch may be in (batch.tokens_per_step: {from: FIT.json, unit: ...})
BATCH_UNITS = ("tokens", "sequences")


def _sane_lr(lr: float) -> bool:
    return math.isfinite(lr) and 0 < lr <= MAX_LR


def _check_corpus(spec: dict, folder: Path | None = None) -> None:
    """Resolve the model's vocabulary from the corpus and check the corpus can be trained on, before any run.

    A ``tokens`` corpus is read here (ids scanned once, cached): ids >= vocab_size, a file that is not a whole
    number of tokens, an empty or too short split are errors now, not failures inside every worker.
    """
    c, m = spec["corpus"], spec["model"]
    seq = int(m["seq_len"])
    unused = [k for k, v in c.items() if k not in CORPUS_KEYS.get(c["name"], c) and k not in ("name", "fingerprint")
              and v != DEFAULTS["corpus"].get(k)]
    if unused:
        hint = (" (the tokens corpus trains on the folder's train and val files: re-split it with `scaling data "
                "prepare --val-fraction`)" if c["name"] == "tokens" and "val_fraction" in unused else "")
        # a warning, not an error: a sweep that ran with the key has it in its run ids, and must still resume
        warnings.warn(f"corpus.{', corpus.'.join(unused)} {'has' if len(unused) == 1 else 'have'} no effect on the "
                      f"{c['name']} corpus, which reads {', '.join(CORPUS_KEYS[c['name']])}{hint}; drop "
                      f"{'it' if len(unused) == 1 else 'them'} from new definitions", ScalingWarning, stacklevel=4)
    if c["name"] == "tokens" and c.get("path") and folder is not None:  # a relative path: beside the YAML first
        given = Path(os.path.expanduser(str(c["path"])))
        if not given.is_absolute():
            if (folder / given).exists():
                c["path"] = str((folder / given).resolve())
            elif not given.exists():
                raise SpecError(f"corpus.path {given} does not exist beside the definition ({folder.resolve() / given}) "
                                f"nor in the current directory ({given.resolve()}); prepare it with `scaling data "
                                f"prepare --text FILES --tokenizer TOKENIZER_DIR_OR_bytes --out {folder / given}`")
    if c["name"] != "tokens":
        if m["vocab_size"] is None:
            m["vocab_size"] = 256
        elif int(m["vocab_size"]) < 256:
            raise SpecError(f"model.vocab_size is {m['vocab_size']}, but the {c['name']} corpus is bytes (ids up to "
                            "255): drop model.vocab_size or make it at least 256")
        if not 0 < float(c["val_fraction"]) < 1:
            raise SpecError(f"corpus.val_fraction must be between 0 and 1 (exclusive); got {c['val_fraction']!r}")
        n = int(c["tokens"]) if c["name"] == "synthetic" else int(c["max_bytes"])
        held = n - int(n * (1 - float(c["val_fraction"])))
        if held < 2 * seq + 1:
            key = "corpus.tokens" if c["name"] == "synthetic" else "corpus.max_bytes"
            raise SpecError(f"{key} = {n} leaves {held} held-out tokens (corpus.val_fraction {c['val_fraction']}): "
                            f"too few to evaluate {seq}-token windows; raise {key} or corpus.val_fraction")
        return
    folder = token_folder(c)
    if m["vocab_size"] is None:
        if folder.vocab_size is None:
            raise SpecError(f"the tokens in {folder.path} come without a vocabulary size (no meta.json): set "
                            "corpus.vocab_size (the tokenizer's vocabulary; nanoGPT's GPT-2 files: 50257)")
        m["vocab_size"] = folder.vocab_size
    elif folder.vocab_size is not None and int(m["vocab_size"]) < folder.vocab_size:
        raise SpecError(f"model.vocab_size is {m['vocab_size']}, smaller than the corpus's vocabulary "
                        f"({folder.vocab_size}); drop model.vocab_size (the model then follows the corpus) or raise it")
    check_tokens(folder, int(m["vocab_size"]), seq)
    c["path"] = str(folder.path)  # absolute: workers may start elsewhere
    c["fingerprint"] = folder.fingerprint()  # re-preparing other data into the folder changes the sweep's settings


#: the corpus keys each corpus reads (a key another corpus reads, set to other than its default, is an error)
CORPUS_KEYS = {"synthetic": ("states", "branching", "concentration", "seed", "shift_seed", "tokens", "val_fraction"),
               "python-stdlib": ("max_bytes", "val_fraction"), "tokens": ("path", "dtype", "vocab_size")}

# key: (kind, lower bound, bound included); kinds: number, int, list (of numbers), list-int; "?": None allowed;
# "number|auto": a number or the word auto
SWEEP_NUMBERS = {
    "model.sizes": ("list", 0, False), "model.seq_len": ("int", 1, True), "model.vocab_size": ("int?", 2, True),
    "model.head_dim": ("int", 1, True), "grid.tokens": ("list", 0, False), "grid.compute": ("list", 0, False),
    "grid.min_steps": ("int", 1, True), "grid.min_tokens_per_param": ("number?", 0, False),
    "grid.max_tokens_per_param": ("number?", 0, False), "seeds": ("list-int", 0, True),
    "optimizer.lr": ("number", 0, False), "optimizer.weight_decay": ("number", 0, True),
    "optimizer.beta1": ("number", 0, True), "optimizer.beta2": ("number", 0, True),
    "optimizer.grad_clip": ("number", 0, True), "schedule.warmup": ("number", 0, True),
    "schedule.final_lr_frac": ("number", 0, True), "schedule.decay_frac": ("number", 0, False),
    "eval.every": ("number", 0, False), "eval.tokens": ("int", 1, True), "eval.curve_tokens": ("int", 1, True),
    "checkpoint.every": ("number", 0, False), "retries": ("int", 0, True),
    "threads_per_worker": ("int", 1, True), "workers_per_gpu": ("int", 1, True),
    "device.sync_every": ("int?", 1, True), "corpus.states": ("int", 1, True), "corpus.branching": ("int", 1, True),
    "corpus.concentration": ("number", 0, False), "corpus.seed": ("int", 0, True),
    "corpus.shift_seed": ("int?", 0, True), "corpus.tokens": ("int", 1, True),
    "corpus.max_bytes": ("int", 1, True), "corpus.vocab_size": ("int?", 2, True),
    "corpus.val_fraction": ("number", 0, False),
}


def _as_number(v, text_ok: bool = True) -> float | None:
    if isinstance(v, bool) or (isinstance(v, str) and not text_ok):
        return None
    try:
        f = float(v)  # YAML reads 1e-3 (no dot) as a string; float() takes it where the code converts
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def check_numbers(spec: dict, rules: dict, error=None, text_ok=True) -> None:
    """Each dotted key holds the kind of number its rule says, or the error names the key and what it takes.

    ``text_ok``: True, or the keys whose values may be numbers written as text (YAML reads 1e-3 as text).
    """
    error = error or SpecError
    for key, (kind, lo, closed) in rules.items():
        as_text = text_ok is True or key in text_ok
        v = spec
        for part in key.split("."):
            v = v[part]
        optional = kind.endswith("?")
        kind = kind.rstrip("?")
        if v is None and (optional or key in ("model.sizes", "grid.tokens", "grid.compute")):
            continue
        if kind == "number|auto" and v == "auto":
            continue
        bound = f"{'>=' if closed else '>'} {lo:g}"
        if kind.startswith("list"):
            what = f"a non-empty list of {'integers' if kind == 'list-int' else 'numbers'} {bound}"
            items = v if isinstance(v, list) and v else None
        else:
            what = f"{'an integer' if kind == 'int' else 'a number'} {bound}" + (" or 'auto'" if "auto" in kind else "")
            items = [v]
        ok = items is not None
        for x in items or []:
            f = _as_number(x, as_text)
            if f is None or (f < lo if closed else f <= lo) or (kind in ("int", "list-int") and not (
                    isinstance(x, int) if not as_text else f.is_integer())):
                ok = False
                break
        if not ok:
            raise error(f"{key} must be {what}; got {v!r}")


# what a sweep may change between invocations under one name: these only add (or drop) runs, or say how
# they are run; every other setting shapes the runs' results, so changing it would mix two experiments
EXTENSIBLE = ("name", "model.sizes", "model.shapes", "grid", "seeds", "retries", "threads_per_worker", "device",
              "workers_per_gpu")


#: settings compared whole: a learning-rate rule is one setting (a number replaced by a rule is a change)
WHOLE = ("optimizer.lr",)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and f"{prefix}{k}" not in WHOLE:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changed_settings(old: dict, new: dict, extensible=EXTENSIBLE) -> list[str]:
    """The settings that differ between two specs, leaving out ``extensible`` keys (and those under them);
    each as 'key: old -> new'."""
    a, b = _flat(json.loads(json.dumps(old, default=str))), _flat(json.loads(json.dumps(new, default=str)))

    def free(k):
        return any(k == e or k.startswith(e + ".") for e in extensible)

    def extended(k):  # a number made a list holding it (or a list grown): an axis through the sweep's value
        if k not in AXES:
            return False
        old, new = (v if isinstance(v, list) else [v] for v in (a[k], b[k]))
        try:
            return set(map(float, old)) <= set(map(float, new))
        except (TypeError, ValueError):  # "auto"
            return False

    def same(x, y):  # numbers as numbers: '3e-3' (how YAML 1.1 read it, and earlier stores hold it) is 0.003
        if x == y:
            return True
        try:
            return not isinstance(x, bool) and not isinstance(y, bool) and float(x) == float(y)
        except (TypeError, ValueError):
            return False

    def corpus_changed(k):  # a fingerprint from an earlier version of the package is recomputed as it was then
        if k != "corpus.fingerprint" or a[k] == b[k]:
            return a[k] != b[k]
        from .corpus import FINGERPRINT_PREFIX, same_tokens

        return str(a[k]).startswith(FINGERPRINT_PREFIX) or not same_tokens(a[k], new.get("corpus", {}))

    def said(k):
        if k == "corpus.fingerprint":
            return (f"corpus: the token files in {b.get('corpus.path', 'corpus.path')} are not those the sweep trained "
                    "on (other text, tokenizer or settings were prepared into the folder since)")
        return f"{k}: {a[k]!r} -> {b[k]!r}"

    # a key only one side has (a setting a later version of the package added) is not compared; the runs of a
    # value written another way keep their ids (Store.same_runs compares numbers as numbers too)
    return [said(k) for k in sorted(set(a) & set(b))
            if not free(k) and not same(a[k], b[k]) and not extended(k) and
            (k != "corpus.fingerprint" or corpus_changed(k))]


#: settings that may become an axis holding their value (or a longer list): the runs at that value are kept
AXES = ("batch.tokens_per_step",)


def _shape_for(target: float, family: str, head_dim: int, vocab: int, seq_len: int) -> dict:
    """The (n_layer, d_model) whose non-embedding count is closest to ``target``, with a moderate aspect ratio."""
    best = None
    for n_layer in range(2, 25):
        for d_model in range(head_dim, 2049, head_dim):
            aspect = d_model / n_layer
            if not 4 <= aspect <= 128:
                continue
            n = count_params(n_layer, d_model, n_head=d_model // head_dim, vocab_size=vocab, n_ctx=seq_len,
                             family=family).non_embedding
            # closest count first; among near-ties, depth grows with width (aspect ~ 16-32 at these sizes)
            score = abs(math.log(n / target)) + 0.15 * abs(math.log(aspect / 24))
            if best is None or score < best[0]:
                best = (score, {"n_layer": n_layer, "d_model": d_model, "n_head": d_model // head_dim})
    return best[1]


def shapes(spec: dict, warn: bool = True) -> list[dict]:
    """Model shapes with their exact parameter counts. ``warn``: say which ``model.sizes`` targets map to one shape,
    and which land far from their target (e.g. a target below the smallest shape model.head_dim allows)."""
    m = spec["model"]
    out = []
    raw = m["shapes"] or [_shape_for(float(t), m["family"], int(m["head_dim"]), int(m["vocab_size"]),
                                     int(m["seq_len"])) for t in m["sizes"]]
    for s in raw:
        if not isinstance(s, dict):
            raise SpecError(f"model.shapes entries are mappings like {{n_layer: 2, d_model: 64}}; got {s!r}")
        unknown = set(s) - {"n_layer", "d_model", "n_head", "lr"}
        if unknown:
            raise SpecError(f"model.shapes entries take n_layer, d_model, n_head, lr; unknown {sorted(unknown)}")
        n_layer, d_model = int(s["n_layer"]), int(s["d_model"])
        n_head = int(s.get("n_head") or max(1, d_model // int(m["head_dim"])))
        if n_layer < 1 or d_model < 1 or d_model % n_head:
            raise SpecError(f"impossible shape {s}: need n_layer >= 1 and d_model divisible by n_head")
        if m["family"] == "llama" and (d_model // n_head) % 2:
            if m["shapes"] is None:
                raise SpecError(f"model.head_dim is {m['head_dim']}: a Llama model's rotary embedding needs an even "
                                "head dimension; set an even model.head_dim")
            raise SpecError(f"impossible shape {s}: a Llama model's rotary embedding needs an even head dimension, "
                            f"and d_model / n_head = {d_model // n_head}; choose n_head so that it is even")
        c = count_params(n_layer, d_model, n_head=n_head, vocab_size=int(m["vocab_size"]), n_ctx=int(m["seq_len"]),
                         family=m["family"])
        shape = {"n_layer": n_layer, "d_model": d_model, "n_head": n_head, "N": c.non_embedding, "N_total": c.total}
        if s.get("lr") is not None:  # this shape's own learning rate, overriding optimizer.lr
            if m["shapes"] is not None and spec["grid"].get("lr") is not None:
                raise SpecError(f"model.shapes entry {s} sets lr, and grid.lr lists the learning rates of every run; "
                                "drop one of them")
            check_numbers({"lr": s["lr"]}, {"lr": ("number", 0, False)},
                          error=lambda msg: SpecError(f"model.shapes entry {s}: {msg}"))
            shape["lr"] = float(s["lr"])
            if shape["lr"] > MAX_LR:
                raise SpecError(f"model.shapes entry {s}: {LR_RANGE}")
        out.append(shape)
    unique = {(s["n_layer"], s["d_model"], s["n_head"]): s for s in out}
    if warn and m["shapes"] is None:
        targets = [float(t) for t in m["sizes"]]
        notes = []
        by_shape: dict[tuple, list[float]] = {}
        for t, sh in zip(targets, out):
            by_shape.setdefault((sh["n_layer"], sh["d_model"], sh["n_head"]), []).append(t)
        for key, ts in by_shape.items():
            if len(ts) > 1:
                notes.append(f"{' and '.join(f'{t:,.0f}' for t in ts)} map to one shape ({key[0]} layers x d_model "
                             f"{key[1]}, N={unique[key]['N']:,}), trained once")
        far = [(t, sh) for t, sh in zip(targets, out) if max(sh["N"] / t, t / sh["N"]) > 1.5]
        notes += [f"{t:,.0f} became N={sh['N']:,} ({sh['n_layer']} layers x d_model {sh['d_model']}; "
                  f"{max(sh['N'] / t, t / sh['N']):.1f}x {'above' if sh['N'] > t else 'below'} the target)"
                  for t, sh in far]
        if notes:
            warnings.warn("model.sizes: " + "; ".join(notes) + " (list exact shapes with model.shapes to choose them)",
                          ScalingWarning, stacklevel=3)
    return sorted(unique.values(), key=lambda s: s["N"])


def tokens_per_step(spec: dict, D: float, tps=None, *, N: float | None = None, fit=None) -> int:
    """The batch of a run, in tokens, rounded to whole sequences: the spec's fixed value (the default, one for the
    whole sweep), with ``"auto"`` the per-run rule clip(D / 256, 1024, 8192), or with ``{from: FIT.json}`` the
    optimal batch B_opt of that fitted hparams law (``fit``) at the run's ``N`` and D. ``tps``: one value of an
    axis."""
    seq = int(spec["model"]["seq_len"])
    tps = spec["batch"]["tokens_per_step"] if tps is None else tps
    if tps == "auto":
        tps = min(max(D / 256, 1024), 8192)
    elif isinstance(tps, dict):
        X = {"N": float(N), "D": float(D), "C": 6.0 * float(N) * float(D)}
        b = _fitted(fit, X, "batch")
        unit = tps.get("unit", "tokens")
        where = f"batch.tokens_per_step.from: the fit in {tps['from']} predicts a batch of {b:.4g} {unit}"
        if not (math.isfinite(b) and b > 0):
            raise SpecError(f"{where} at N={N}, D={D:.4g}; a batch must be > 0")
        tps = b * (seq if unit == "sequences" else 1)
        if tps < seq / 2:  # would round to no sequence at all: never clamp a wrong unit to one sequence silently
            hint = (" Was the fit's batch in sequences? Say so with unit: sequences." if unit == "tokens" else "")
            raise SpecError(f"{where} at N={N:.4g}, D={D:.4g}: {tps:.4g} tokens, less than one sequence of "
                            f"{seq}.{hint}")
    return max(seq, int(round(float(tps) / seq)) * seq)


def expand(spec: dict) -> list[dict]:
    """One config per run: the grid x hyperparameter axes x seeds, each with a stable id.

    Each run's ``optimizer.lr`` is a number: an axis value, the shape's own lr, or the sweep's rule resolved
    at the run's d_model (or N and D); ``D_grid`` is the grid's D of its cell (the run trains D, rounded to
    whole batches)."""
    runs = []
    grid = spec["grid"]
    rule = spec["optimizer"]["lr"]
    fit = _lr_fit(Path(rule["from"])) if isinstance(rule, dict) and "from" in rule else None
    axis = spec["batch"]["tokens_per_step"]
    batch_fit = _lr_fit(Path(axis["from"]), key="batch.tokens_per_step") if isinstance(axis, dict) else None
    lrs, warmups, mults = grid.get("lr"), grid.get("warmup"), grid.get("lr_mult")
    all_shapes = shapes(spec)
    for shape in all_shapes:
        cells = []
        if grid["tokens"] is not None:
            cells = [(float(D), None) for D in grid["tokens"]]
        else:
            cells = [(float(C) / (6.0 * shape["N"]), float(C)) for C in grid["compute"]]
        for D, budget in cells:
            tpp = D / shape["N"]
            lo, hi = grid["min_tokens_per_param"], grid["max_tokens_per_param"]
            if budget is not None and ((lo is not None and tpp < float(lo)) or (hi is not None and tpp > float(hi))):
                continue  # IsoFLOP: keep each budget's sizes near its optimum
            for tps_value in (axis if isinstance(axis, list) else [None]):
                tps = tokens_per_step(spec, D, tps_value, N=shape["N"], fit=batch_fit)
                steps = int(round(D / tps))
                if steps < int(grid["min_steps"]):
                    if budget is None:
                        raise SpecError(f"D={D:.3g} tokens is only {steps} steps of {tps} tokens for N={shape['N']}; "
                                        f"raise D or lower batch.tokens_per_step (grid.min_steps={grid['min_steps']})")
                    continue  # IsoFLOP: this size is too large for this budget
                own = learning_rate(spec, shape, steps * tps, fit)
                if lrs is not None:
                    settings = [(float(lr), None) for lr in lrs]
                elif mults is not None:
                    base = float(spec["optimizer"]["lr"]) if own is None else own
                    settings = [(float(f"{base * float(m):.10g}"), float(m)) for m in mults]
                else:
                    settings = [(own, None)]
                for lr, mult in settings:
                    if not _sane_lr(lr if lr is not None else 1.0):
                        raise SpecError(f"grid.lr_mult {mult:g} gives lr = {lr:.4g} for N={shape['N']}; {LR_RANGE}")
                    for warmup in (warmups if warmups is not None else [None]):
                        runs.extend(_cells(spec, shape, tps, steps, budget, isinstance(axis, list), D,
                                           lr=lr, warmup=None if warmup is None else float(warmup),
                                           lr_tagged=lrs is not None, warmup_tagged=warmups is not None,
                                           lr_mult=mult))
    if not runs:
        raise SpecError(_no_runs_reason(spec, all_shapes, axis, batch_fit))
    if grid.get("around"):
        runs = centre_budgets(spec, runs, all_shapes)
    elif grid["compute"] is not None:
        _warn_thin_budgets(spec, runs)
    _warn_rounded_batches(spec)
    _check_warmups(runs)
    if fit is not None:
        _warn_extrapolated(fit, runs, rule["from"], "optimizer.lr.from: the learning rates")
    if batch_fit is not None:
        _warn_extrapolated(batch_fit, runs, axis["from"], "batch.tokens_per_step.from: the batch sizes")
    if spec["schedule"].get("branches"):  # one stable run per size, a cooldown branch per D
        from .branches import branch_cells

        runs = branch_cells(spec, runs)
    return runs


def _check_warmups(runs: list[dict]) -> None:
    """Refuse runs whose warmup, given in steps, lasts the whole run: they never reach their peak learning rate
    and never decay, so their losses say nothing about the setting they are meant to measure."""
    from ..schedules import warmup_steps

    bad = [r for r in runs if warmup_steps(int(r["steps"]), r["schedule"]) >= int(r["steps"])]
    if bad:
        w = sorted({r["schedule"]["warmup"] for r in bad})
        steps = sorted(int(r["steps"]) for r in bad)
        raise SpecError(f"a warmup of {', '.join(f'{v:g}' for v in w)} step(s) lasts the whole run for {len(bad)} run(s) "
                        f"of {steps[0] if steps[0] == steps[-1] else f'{steps[0]}-{steps[-1]}'} steps: they would never reach their learning rate nor decay; give "
                        "warmup as a fraction of each run (e.g. schedule.warmup: 0.05) or fewer steps")


def _bounds_note(grid: dict) -> str:
    lo, hi = grid["min_tokens_per_param"], grid["max_tokens_per_param"]
    return "" if lo is None and hi is None else (f", or lies outside grid.min/max_tokens_per_param ({lo}, {hi})")


def _no_runs_reason(spec: dict, all_shapes: list[dict], axis, batch_fit) -> str:
    """Why an IsoFLOP grid produced no runs, with the budget the smallest size would need."""
    grid = spec["grid"]
    budgets = ", ".join(f"{float(C):.3g}" for C in grid["compute"] or [])
    small = min(all_shapes, key=lambda sh: sh["N"])
    try:
        C = max(float(c) for c in grid["compute"])
        tps = tokens_per_step(spec, C / (6 * small["N"]), axis[0] if isinstance(axis, list) else None, N=small["N"],
                              fit=batch_fit)
        need = f": the smallest size, N={small['N']:,}, needs C >= {6 * small['N'] * tps * int(grid['min_steps']):.3g} " \
               f"FLOPs to train grid.min_steps={grid['min_steps']} steps of {tps} tokens"
    except Exception:  # noqa: BLE001 - the reason is a courtesy; the error stands without it
        need = ""
    return (f"the grid produced no runs: every budget in grid.compute ({budgets}) is too small for every size"
            f"{need}{_bounds_note(grid)}")


def _warn_thin_budgets(spec: dict, runs: list[dict]) -> None:
    """One warning naming the IsoFLOP budgets left with no size, or with fewer than the 3 a parabola needs."""
    sizes: dict[float, set] = {float(C): set() for C in spec["grid"]["compute"]}
    for r in runs:
        if r.get("budget") is not None:
            sizes.setdefault(float(r["budget"]), set()).add(r["N"])
    none = [C for C, n in sizes.items() if not n]
    thin = [(C, sorted(n)) for C, n in sizes.items() if 0 < len(n) < 3]
    parts = []
    if none:
        parts.append(f"{', '.join(f'C={C:.3g}' for C in none)} get{'s' if len(none) == 1 else ''} no size (each would "
                     f"train fewer than grid.min_steps={spec['grid']['min_steps']} steps{_bounds_note(spec['grid'])}) "
                     f"and {'is' if len(none) == 1 else 'are'} left out")
    if thin:
        parts.append("; ".join(f"C={C:.3g} gets {len(n)} size(s) (N={', '.join(f'{x:,}' for x in n)})" for C, n in thin)
                     + ": an IsoFLOP profile needs 3 or more to locate its minimum (add sizes, or use grid.around)")
    if parts:
        warnings.warn("grid.compute: " + "; ".join(parts), ScalingWarning, stacklevel=3)


def _warn_rounded_batches(spec: dict) -> None:
    """One warning naming each batch.tokens_per_step value (not the "auto" rule, which rounds by design) that is
    not a whole number of sequences, and the batch its runs train instead."""
    axis = spec["batch"]["tokens_per_step"]
    seq = int(spec["model"]["seq_len"])
    if isinstance(axis, dict):  # a fitted rule: rounds by design, as "auto" does
        return
    rounded = [(v, tokens_per_step(spec, 0.0, v)) for v in (axis if isinstance(axis, list) else [axis])
               if v != "auto" and float(v) != tokens_per_step(spec, 0.0, v)]
    if rounded:
        what = "; ".join(f"{float(v):g} is not a whole number of {seq}-token sequences: its runs train {t} tokens "
                         "a step" for v, t in rounded)
        warnings.warn(f"batch.tokens_per_step {what} (a batch is whole sequences; write that value to silence this)",
                      ScalingWarning, stacklevel=3)


def _fitted(fit, X: dict, what: str) -> float:
    """A fitted hparams law's ``what`` (lr, batch) at one run's N, D and C, quietly: a sweep's runs outside the
    fitted range are said once for the whole sweep (:func:`_warn_extrapolated`), not once per run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fit.predict(**{k: X[k] for k in fit.inputs})[what].iloc[0])


def _warn_extrapolated(fit, runs: list[dict], path: str, what: str) -> None:
    """One warning when a ``from`` fit sets ``what`` (the learning rates, the batch sizes) of runs outside the
    range it was fitted on."""
    X = {"N": [r["N"] for r in runs], "D": [r["D"] for r in runs], "C": [r["C"] for r in runs]}
    out = []
    for k, (lo, hi) in (getattr(fit, "data_range_", None) or {}).items():
        if k in X and (min(X[k]) < lo / 1.1 or max(X[k]) > hi * 1.1):
            out.append(f"{k} {min(X[k]):.3g}-{max(X[k]):.3g} (fitted on {lo:.3g}-{hi:.3g})")
    if out:
        warnings.warn(f"{what} of this sweep extrapolate the fit in {path}: "
                      f"{'; '.join(out)}", ScalingWarning, stacklevel=3)


def _cells(spec: dict, shape: dict, tps: int, steps: int, budget, tagged: bool, D_grid: float, *,
           lr: float | None = None, warmup: float | None = None, lr_tagged: bool = False,
           warmup_tagged: bool = False, lr_mult: float | None = None) -> list[dict]:
    """One run per seed; every run of a seed reads the same batches (the trainer draws them from (seed, step)).

    ``lr``, ``warmup``: this run's values where they are not the sweep's (a rule's or an axis's); the id names
    the value of each axis (``-b``, ``-lr``, ``-x`` for an lr multiplier, ``-w``), and a run without axes keeps
    the id it always had. ``lr_mult``: the grid.lr_mult value that scaled this run's learning rate (recorded)."""
    runs = []
    optimizer = spec["optimizer"] if lr is None else {**spec["optimizer"], "lr": lr}
    schedule = spec["schedule"] if warmup is None else {**spec["schedule"], "warmup": warmup}
    # the WSD keys only where set: the ids of runs from before they existed stay as they were
    schedule = {k: v for k, v in schedule.items() if not (k in ("cooldown", "shape", "branches") and v in (None, False, "linear"))}
    tag = ((f"-b{tps}" if tagged else "") + (f"-lr{lr:g}" if lr_tagged else "")
           + (f"-x{lr_mult:g}" if lr_mult is not None else "")
           + (f"-w{warmup:g}" if warmup_tagged else ""))
    for seed in spec["seeds"]:
        cfg = {
            "sweep": spec["name"], "trainer": spec["trainer"], "family": spec["model"]["family"],
            **{k: shape[k] for k in ("n_layer", "d_model", "n_head", "N", "N_total")},
            "seq_len": int(spec["model"]["seq_len"]), "vocab_size": int(spec["model"]["vocab_size"]),
            "tokens_per_step": tps, "steps": steps, "D": float(steps * tps), "budget": budget,
            "seed": int(seed), "optimizer": optimizer, "schedule": schedule,
            # shift_seed only when set: the ids of runs from before the key existed stay as they were
            "corpus": {k: v for k, v in spec["corpus"].items() if not (k == "shift_seed" and v is None)},
            "eval": spec["eval"], "checkpoint": spec["checkpoint"],
            "toy": spec["toy"] if spec["trainer"] == "toy" else None,
        }
        cfg["C"] = 6.0 * cfg["N"] * cfg["D"]
        if lr_mult is not None:  # only then: the ids of runs without the axis stay as they were
            cfg["lr_mult"] = lr_mult
        if spec.get("save_model"):  # likewise: only a sweep that keeps its models has the key
            cfg["save_model"] = True
        digest = hashlib.sha1(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:8]
        cfg["run_id"] = f"N{shape['N']}-D{int(cfg['D'])}" + tag + f"-s{seed}-{digest}"
        cfg["D_grid"] = D_grid  # after the digest: the ids of runs from before this key existed stay as they were
        cfg["device"] = dict(spec["device"])  # where it trains is not what it is: not in the id
        runs.append(cfg)
    return runs
