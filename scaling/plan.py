"""Before launch: the predicted loss curve of a planned run, with a band, and whether it is compute-optimal.

A plan is plain JSON (``scaling predict FIT.json --model ... --tokens ... --out plan.json``)
that ``scaling watch`` and :class:`scaling.monitor.Monitor` check a live run against.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .counting import count_params
from .diagnostics import check_extrapolation
from .errors import DataError, ScalingWarning
from .schedules import schedule


_CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
_ACCEPTED = (" (--model takes a shape like n_layer=4,d_model=128, or a JSON/YAML model config: a Hugging Face "
             "config.json, or one with n_layer and d_model)")


def _read_model_file(p: Path) -> dict:
    """A model config file, or one clear error saying it is not one and what is accepted."""
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise DataError(f"{p} is a directory without a config.json{_ACCEPTED}")
        p = p / "config.json"
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise DataError(f"{p} is not a model config: it is binary data{_ACCEPTED}") from None
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            d = yaml.safe_load(text)
        else:
            d = json.loads(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError: the file is something else (a CSV, a log)
        kind = "YAML" if p.suffix in (".yaml", ".yml") else "JSON"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{p} is not a model config: it is not valid {kind} ({first}){_ACCEPTED}") from None
    if not isinstance(d, dict):
        raise DataError(f"{p} is not a model config: it holds a {type(d).__name__}, not a mapping of settings{_ACCEPTED}")
    return d


def parse_model(spec: str | dict | None) -> dict:
    """A model shape from 'n_layer=4,d_model=128,...', a JSON/YAML file (ours or a HF config.json), or a dict."""
    if spec is None:
        raise DataError("give the model: --model n_layer=4,d_model=128 (or a config file), or --N")
    if isinstance(spec, dict):
        d = dict(spec)
    elif Path(spec).exists():
        d = _read_model_file(Path(spec))
    else:
        if "=" not in spec and (spec.endswith(_CONFIG_SUFFIXES + (".csv",)) or "/" in spec):
            raise DataError(f"no such model config file: {spec}{_ACCEPTED}")
        d = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            if "=" not in part:
                raise DataError(f"--model entry {part!r} is not KEY=VALUE (e.g. n_layer=4,d_model=128)")
            k, v = part.split("=", 1)
            d[k.strip()] = v.strip()
    hf = {"num_hidden_layers": "n_layer", "hidden_size": "d_model", "num_attention_heads": "n_head",
          "n_embd": "d_model", "n_positions": "seq_len", "max_position_embeddings": "seq_len"}
    for a, b in hf.items():
        if a in d and b not in d:
            d[b] = d[a]
    if "model_type" in d and "family" not in d:
        d["family"] = "gpt2" if d["model_type"] == "gpt2" else "llama"
    missing = [k for k in ("n_layer", "d_model") if k not in d]
    if missing:
        raise DataError(f"the model spec lacks {missing}; give n_layer and d_model (n_head, family, vocab_size optional)")
    def whole(key, default=None):
        v = d.get(key, default)
        try:
            f = float(v)
            if not f.is_integer() or f < 1:
                raise ValueError
        except (TypeError, ValueError):
            raise DataError(f"the model's {key} is {v!r}; it must be a positive whole number") from None
        return int(f)

    out = {"n_layer": whole("n_layer"), "d_model": whole("d_model"),
           "n_head": whole("n_head") if d.get("n_head") else max(1, whole("d_model") // 64),
           "family": d.get("family", "llama"), "vocab_size": whole("vocab_size", 256), "seq_len": whole("seq_len", 128)}
    c = count_params(out["n_layer"], out["d_model"], n_head=out["n_head"], vocab_size=out["vocab_size"],
                     n_ctx=out["seq_len"], family=out["family"])
    out.update(N=c.non_embedding, N_total=c.total)
    return out


#: a plan draws a curve: fewer optimizer steps than this is not a training run to plan
MIN_PLAN_STEPS = 10
#: a plan works out the schedule's areas at every step; past this many steps (a batch far smaller than the run's
#: real one, e.g. the default 4,096 tokens a step for a run of tens of billions of tokens) it would take minutes and
#: gigabytes, and the step count is almost surely not the run's
MAX_PLAN_STEPS = 2_000_000


def _check_schedule(sched: dict, steps: int) -> None:
    """Schedule settings a run could follow, or one line naming the one it could not."""
    warm, final, decay = sched.get("warmup", 0), sched.get("final_lr_frac", 0.1), sched.get("decay_frac", 0.2)
    if warm < 0 or (warm >= 1 and warm >= steps):
        raise DataError(f"--warmup {warm:g} must be a fraction of the run (< 1) or fewer steps than the run's {steps}")
    if not 0 <= final <= 1:
        raise DataError(f"--final-lr-frac {final:g} must be in [0, 1] (the final learning rate over the peak)")
    if sched.get("type") == "wsd" and not 0 < decay <= 1:
        raise DataError(f"--decay-frac {decay:g} must be in (0, 1] (the share of the run that decays)")


def _curve_inputs(N, tokens, tokens_per_step, sched, lr=1.0):
    """Steps, per-step learning rates and the curve laws' inputs (S1, S2, eta) at every step."""
    from .curves import schedule_features

    steps = max(1, int(round(tokens / tokens_per_step)))
    lrs = schedule(steps, {"lr": lr}, sched)
    return steps, lrs, schedule_features(lrs, tokens_per_step)


def curve_at(law, N: float, feats: dict, idx: np.ndarray, interval: bool = False, level: float = 0.9):
    """A curve law's prediction at steps ``idx`` (0-based, increasing) of a run with per-step inputs ``feats``.

    Whichever curve law the fit holds: ``tissue`` reads each point's own inputs; ``mpl`` also reads the
    learning rate before each point from the points given, so ``idx`` should sample the whole run
    (points from its start, dense enough to follow the schedule's drops).
    """
    X = {"N": np.full(idx.size, float(N)), **{c: feats[c][idx] for c in law.inputs if c != "N"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the first points of any curve lie before the fitted range
        mean = np.asarray(law.predict(**X), float)
        if not interval:
            return mean
        if getattr(law, "bootstrap_theta_", None) is None:
            return mean, mean, mean
        lo, hi = law.predict_interval(**X, level=level)
    return mean, np.asarray(lo, float), np.asarray(hi, float)


def _history_steps(steps: int, n: int = 200) -> np.ndarray:
    """Steps (0-based) spread over a whole run, for a law that reads the schedule before each point."""
    return np.unique(np.round(np.linspace(0, steps - 1, min(n, steps))).astype(int))


def make_plan(law, *, tokens: float, model: dict | None = None, N: float | None = None,
              schedule_spec: dict | None = None, tokens_per_step: int = 4096, level: float = 0.9,
              points: int = 200) -> dict[str, Any]:
    """Predicted curve (with a band for a new run) and final loss of one planned run under a curve law."""
    if not law.curve_law:
        from .laws import available_laws, get_law

        curve = [n for n in available_laws() if get_law(n).curve_law]
        raise DataError(f"planning a whole curve needs a loss-curve fit (--law {' or '.join(curve)}), not {law.name}")
    sched = {"type": "cosine", "warmup": 0.05, "final_lr_frac": 0.1, "decay_frac": 0.2, **(schedule_spec or {})}
    shape = parse_model(model) if model is not None else None
    if shape is None and N is None:
        raise DataError("give the model (--model) or its non-embedding parameter count (--N)")
    N = float(shape["N"]) if shape else float(N)
    n_steps = round(tokens / tokens_per_step)
    _check_schedule(sched, n_steps)
    if n_steps < MIN_PLAN_STEPS:
        raise DataError(f"{tokens:.3g} tokens at {tokens_per_step:,} tokens per step is {n_steps} "
                        f"optimizer step(s); a plan needs at least {MIN_PLAN_STEPS} (more --tokens, or a smaller "
                        "--tokens-per-step)")
    if n_steps > MAX_PLAN_STEPS:
        raise DataError(f"{tokens:.3g} tokens at {tokens_per_step:,} tokens per step is {n_steps:,} "
                        f"optimizer steps; plans are worked out step by step up to {MAX_PLAN_STEPS:,}: give the run's "
                        "real batch in tokens (--tokens-per-step; e.g. 1048576 for a batch of 1M tokens)")
    steps, lrs, feats = _curve_inputs(N, tokens, tokens_per_step, sched)
    S1 = feats["S1"]
    # the curve starts where the law has data (its fits use losses from ~10% of each run on): the
    # first steps, warmup included, are not something it can vouch for
    s1_min = getattr(law, "data_range_", {}).get("S1", [0.0])[0]
    first = max(int(0.1 * steps), int(np.searchsorted(S1, s1_min)), 1)
    first = min(first, steps - 1)
    idx = np.unique(np.clip(np.round(np.geomspace(first, steps, points)).astype(int) - 1, 0, steps - 1))
    notes = check_extrapolation(law.name, {"N": np.array([N]), "S1": S1[-1:]}, getattr(law, "data_range_", None))
    for note in law.law._input_notes(law, {"N": np.array([N])}):
        warnings.warn(note, ScalingWarning, stacklevel=2)
        notes.append(note)
    every = np.union1d(idx, _history_steps(steps)) if "eta" in law.inputs else idx
    mean, lo, hi = (a[np.isin(every, idx)] for a in curve_at(law, N, feats, every, interval=True, level=level))
    C = 6.0 * N * steps * tokens_per_step
    plan = {
        "N": N, "N_total": shape["N_total"] if shape else None, "model": shape, "tokens": float(steps * tokens_per_step),
        "tokens_per_step": int(tokens_per_step), "steps": int(steps), "C": C, "schedule": sched, "level": level,
        "final_loss": float(mean[-1]), "final_interval": [float(lo[-1]), float(hi[-1])],
        # no bootstrap in the fit: lo = hi = the curve, a band of width 0 that `watch` must not judge drift by
        "band": getattr(law, "bootstrap_theta_", None) is not None,
        "curve": {"step": (idx + 1).tolist(), "tokens": ((idx + 1) * tokens_per_step).astype(float).tolist(),
                  "loss": mean.tolist(), "lo": np.asarray(lo).tolist(), "hi": np.asarray(hi).tolist()},
        "compute_optimal": _optimality(law, N, C, tokens_per_step, sched),
        # how much of a live run's offset from this curve lasts to its end, learnt from the fit's own runs
        "reforecast": law._state.get("reforecast_"),
        "warnings": notes,
        "fit": law.to_dict(),
    }
    return plan


def _optimality(law, N, C, tokens_per_step, sched) -> dict:
    """Final loss at this C for sizes around N (same schedule shape), within the fitted range of the law."""
    rng = getattr(law, "data_range_", {})
    n_lo, n_hi = (rng.get("N", [0, np.inf])[0] / 10, rng.get("N", [0, np.inf])[1] * 10)
    s_hi = rng.get("S1", [0, np.inf])[1] * 10
    s2_hi = rng.get("S2", [0, np.inf])[1] * 2  # the annealing term extrapolates worst: stay near the data
    sizes = N * np.geomspace(1 / 30, 30, 61)
    finals = np.full(sizes.size, np.inf)
    for i, n in enumerate(sizes):
        D = C / (6 * n)
        if not MIN_PLAN_STEPS * tokens_per_step <= D <= MAX_PLAN_STEPS * tokens_per_step or not n_lo <= n <= n_hi:
            continue
        if law.law._input_notes(law, {"N": np.array([n])}):
            continue  # a size the fit's own settings cannot vouch for (mpl's decay_by_size beyond its sizes)
        steps, _, feats = _curve_inputs(n, D, tokens_per_step, sched)
        if feats["S1"][-1] > s_hi or feats["S2"][-1] > s2_hi:
            continue
        at = _history_steps(steps) if "eta" in law.inputs else np.array([steps - 1])
        finals[i] = float(curve_at(law, n, feats, at)[-1])
    here = float(finals[30]) if np.isfinite(finals[30]) else float("nan")
    if not np.isfinite(finals).any() or not np.isfinite(here):
        return {"N_opt": None, "D_opt": None, "loss_at_opt": None, "loss_here": None, "is_optimal": None,
                "note": "the planned run lies outside the fitted range; no allocation advice"}
    j = int(np.nanargmin(finals))
    ok = here - finals[j] <= 0.002 * finals[j]
    return {"N_opt": float(sizes[j]), "D_opt": float(C / (6 * sizes[j])), "loss_at_opt": float(finals[j]),
            "loss_here": here, "is_optimal": bool(ok),
            "note": "within 0.2% of the best size for this compute (searched where the fit has data)" if ok
            else f"a {sizes[j] / N:.2g}x {'larger' if sizes[j] > N else 'smaller'} model on {C / (6 * sizes[j]):.3g} "
                 f"tokens would reach {finals[j]:.4f} instead of {here:.4f} at the same compute"}


def save_plan(plan: dict, path) -> None:
    Path(path).write_text(json.dumps(plan, indent=1))


def load_plan(path) -> dict:
    from .data import read_json_file

    plan = read_json_file(path, "plan file", " (make one with `scaling predict FIT --model ... --out plan.json`)")
    if not isinstance(plan, dict) or "curve" not in plan:
        raise DataError(f"{path} is not a plan file written by `scaling predict --out`")
    return validate_plan(plan, str(path))


def validate_plan(plan: dict, source: str = "the plan") -> dict:
    """Check a plan before it is used: one error naming what is wrong (a curve cut short, a NaN, ...)."""
    hint = "; write it again with `scaling predict FIT --model ... --out plan.json`"
    if not isinstance(plan, dict):
        raise DataError(f"{source} is not a plan (a JSON object written by `scaling predict --out`){hint}")
    missing = [k for k in ("curve", "tokens_per_step", "tokens") if k not in plan]
    if missing:
        raise DataError(f"{source} lacks {', '.join(missing)}{hint}")
    for k in ("tokens_per_step", "tokens"):
        v = plan[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
            raise DataError(f"{source}: {k} is {v!r}, not a positive number{hint}")
    c = plan["curve"]
    keys = ("tokens", "loss", "lo", "hi")
    if not isinstance(c, dict) or any(k not in c for k in keys):
        have = sorted(c) if isinstance(c, dict) else type(c).__name__
        raise DataError(f"{source}: the curve needs {', '.join(keys)} (it has {have}){hint}")
    arrays = {}
    for k in keys:
        try:
            arrays[k] = np.asarray(c[k], dtype=float)
        except (TypeError, ValueError):
            raise DataError(f"{source}: curve {k} is not a list of numbers{hint}") from None
        if arrays[k].ndim != 1:
            raise DataError(f"{source}: curve {k} is not a list of numbers{hint}")
    lengths = {k: a.size for k, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{source}: the curve was cut short: its arrays differ in length "
                        f"({', '.join(f'{k} {n}' for k, n in lengths.items())}){hint}")
    if lengths["tokens"] < 2:
        raise DataError(f"{source}: the curve has {lengths['tokens']} point(s); it needs at least 2{hint}")
    for k, a in arrays.items():
        bad = np.flatnonzero(~np.isfinite(a) | (a <= 0))
        if bad.size:
            raise DataError(f"{source}: curve {k}[{bad[0]}] is {a[bad[0]]!r}; every value must be a positive "
                            f"finite number{hint}")
    back = np.flatnonzero(np.diff(arrays["tokens"]) <= 0)
    if back.size:
        i = back[0]
        raise DataError(f"{source}: curve tokens do not increase (tokens[{i + 1}] = {arrays['tokens'][i + 1]:g} after "
                        f"{arrays['tokens'][i]:g}){hint}")
    if np.any(arrays["lo"] > arrays["hi"]):
        i = int(np.flatnonzero(arrays["lo"] > arrays["hi"])[0])
        raise DataError(f"{source}: the band is upside down at curve point {i} (lo {arrays['lo'][i]:g} > "
                        f"hi {arrays['hi'][i]:g}){hint}")
    from .laws.reforecast import INVALID, valid

    if plan.get("reforecast") is not None and not valid(plan["reforecast"]):
        raise DataError(f"{source}: {INVALID} (each beta and explained in [0, 1]){hint}")
    return plan
