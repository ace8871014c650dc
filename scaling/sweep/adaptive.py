"""Adaptive placement of runs on an IsoFLOP sweep: train where the profiles say the optimum is.

A fixed grid is chosen before anything trains, so many of its runs land far from each budget's optimum and
teach the fit little about where that optimum is. ``grid.adaptive: {rounds: R, target_ci_a: W,
add_per_budget: K}`` in a sweep definition (or ``scaling sweep extend``) grows the sweep in rounds instead:

1. fit the IsoFLOP profiles of the finished runs (each cell's mean over seeds, as ``scaling fit`` does);
2. stop when the 90% interval of the allocation exponent a (N_opt ∝ C^a) is narrower than W, or when the
   rounds have run out (R is the number of the last round: round 0 is the definition's grid). An interval counts
   once every budget the fit uses has 4 or more sizes: the bootstrap resamples each budget's cells, and with 3
   most resamples lose a size, so the interval of the few that fit collapses;
3. at each budget, add K model sizes: with a minimum inside the sampled sizes, a geometric step (a factor
   ``step`` in N, 2 by default) below and above the estimated N_opt; without one, beyond the largest or the
   smallest size sampled, on the side where the minimum lies (or where the loss still falls). Sizes are snapped
   to shapes the sweep can build: the depth of the nearest sampled shape, a width that is a multiple of its
   head size. A size whose runs would fall outside the grid's tokens-per-parameter limits or below
   ``grid.min_steps`` is not added (the round says so);
4. train them (every seed of the sweep) and go back to 1.

``grid.adaptive.replicates: auto`` (default ``all``: as above) makes placement budget-aware and decide replicates
too: the grid (round 0) trains the sweep's first seed only; a round gives a budget with no usable profile (no
minimum, or under 4 sizes) its K sizes as in 3, one seed each, then spends up to a quarter of the FLOPs trained so
far on the runs that narrow a's interval most per FLOP: a size beside a budget's optimum, or one more seed of a
cell near it, scored by a simulation of the same bootstrap on each budget's fitted parabola (see
:func:`propose_auto`). The stopping rule and the interval are the ones above.

An added run is an ordinary cell of the sweep: the store holds it with the round that added it (the export's
``round`` column; 0 for the grid), ``scaling sweep run`` resumes it, its retries and kill -9 safety are the
runner's. A round's cells are written to the store in one transaction before any of them trains, so an
``extend`` rerun after a kill finishes that round's cells and never decides (or trains) a round twice.

This module sits above the trainer, as the CLI does: it imports the IsoFLOP law (numpy and pandas) inside its
functions; the runner imports only :func:`added_cells` from it, which needs neither.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..counting import count_params
from ..errors import ScalingError
from .graph import driver_lock
from .spec import SpecError, check_numbers, expand, load_spec, read_definition, tokens_per_step

__all__ = ["extend", "check_adaptive", "added_cells", "propose", "propose_auto", "fit_profiles", "STEP"]

#: the settings of ``grid.adaptive`` (rounds and target_ci_a have no default: a definition or the command gives them)
KEYS = {"rounds": None, "target_ci_a": None, "add_per_budget": 2, "replicates": "all"}
#: what ``grid.adaptive.replicates`` may say: "all" (every added size trains every seed of the sweep) or "auto"
#: (one seed a cell to start, more seeds and sizes where they narrow a's interval most per FLOP: propose_auto)
REPLICATES = ("all", "auto")
#: the factor in N between a budget's estimated optimum and each size added beside it
STEP = 2.0
#: sizes a used budget needs before a's interval counts towards the target: with 3, most bootstrap resamples of a
#: budget's cells lose a size and fail, and the interval of the few left collapses (to width 0 at worst)
MIN_SIZES = 4
#: widest model the shape lattice offers (as the sweep's own shape rule)
MAX_WIDTH = 2048


# ------------------------------------------------------------------ settings
def check_adaptive(spec: dict, error=SpecError) -> None:
    """Validate ``grid.adaptive`` (None: not adaptive) and write it in full (add_per_budget's default)."""
    g = spec["grid"]
    a = g.get("adaptive")
    if a is None:
        return
    if not isinstance(a, dict):
        raise error(f"grid.adaptive is a mapping {{rounds: R, target_ci_a: W, add_per_budget: K}}; got {a!r}")
    unknown = set(a) - set(KEYS)
    if unknown:
        raise error(f"unknown key(s) {sorted(unknown)} in grid.adaptive; allowed: {', '.join(KEYS)}")
    if g.get("compute") is None:
        raise error("grid.adaptive places runs on IsoFLOP profiles: it needs grid.compute (IsoFLOP budgets), not "
                    "grid.tokens (an N x D grid has no per-budget optimum to move towards)")
    g["adaptive"] = a = {**KEYS, **a}
    if a["replicates"] not in REPLICATES:
        raise error(f"grid.adaptive.replicates must be one of {', '.join(REPLICATES)} ('all': every added size trains "
                    "every seed; 'auto': one seed a cell, more only where they narrow a's interval most per FLOP); "
                    f"got {a['replicates']!r}")
    check_numbers({"adaptive": a}, {"adaptive.rounds": ("int?", 1, True), "adaptive.target_ci_a": ("number?", 0, False),
                                    "adaptive.add_per_budget": ("int", 1, True)},
                  error=lambda msg: error(f"grid.{msg}"))
    g["adaptive"] = {"rounds": None if a["rounds"] is None else int(float(a["rounds"])),
                     "target_ci_a": None if a["target_ci_a"] is None else float(a["target_ci_a"]),
                     "add_per_budget": int(float(a["add_per_budget"])), "replicates": a["replicates"]}


def _settings(spec: dict, rounds, target_ci_a, add_per_budget, replicates=None) -> dict:
    """The adaptive settings of one ``extend``: the definition's, overridden by the command's; all four given."""
    given = {k: v for k, v in (("rounds", rounds), ("target_ci_a", target_ci_a), ("add_per_budget", add_per_budget),
                               ("replicates", replicates)) if v is not None}
    trial = {"grid": {**spec["grid"], "adaptive": {**(spec["grid"].get("adaptive") or {}), **given}}}
    opt = {"rounds": "--rounds", "target_ci_a": "--target-ci-a", "add_per_budget": "--add-per-budget",
           "replicates": "--replicates"}

    def error(msg):  # a value the command gave is named by its option
        for k in given:
            msg = msg.replace(f"grid.adaptive.{k}", opt[k])
        return ScalingError(msg)

    check_adaptive(trial, error=error)
    s = trial["grid"]["adaptive"]
    missing = [k for k in ("rounds", "target_ci_a") if s[k] is None]
    if missing:
        raise ScalingError(f"sweep {spec['name']!r}: no {' or '.join(missing)} for adaptive placement; give "
                           f"{' and '.join(opt[k] + ' ...' for k in missing)}, or set grid.adaptive: {{rounds: R, "
                           "target_ci_a: W}} in its definition")
    return s


# -------------------------------------------------------------------- fitting
def fit_profiles(table: pd.DataFrame, *, bootstrap: int = 200, seed: int = 0) -> dict:
    """IsoFLOP fit of a runs table's finished runs, on each cell's mean over seeds.

    Returns ``{"a", "ci_a" ([lo, hi] or None), "width" (inf when there is no interval, or it does not count yet),
    "error" (why there is no fit, or why its interval does not count yet: a used budget with under ``MIN_SIZES``
    sizes), "means" (the seed-mean table), "profiles" (one dict per budget: budget, n_sizes, N_opt or None,
    status)}``. Never raises on thin data: a profile without a minimum is what adaptive placement acts on."""
    from ..data import seed_means
    from ..errors import DataError, FitError
    from ..laws.isoflop import IsoFlopLaw

    done = table[(table["status"] == "done") & table["loss"].notna()] if "status" in table else table
    # the runs bootstrap (cells resampled within each budget): what `_Design` simulates to score a candidate run,
    # and what the replay in benchmarks/adaptive.py measured; it errs wide, so the target is met conservatively
    law = IsoFlopLaw(bootstrap=bootstrap, seed=seed, resample="runs")
    means = seed_means(done, law)[0] if len(done) else done
    out = {"a": None, "ci_a": None, "width": math.inf, "error": None, "means": means, "profiles": []}
    for budget, g in (means.groupby("budget", sort=True) if len(means) else []):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row = law._optima(law._prepare_data(g)).iloc[0]
        opt = row["N_opt"] if row["status"] == "ok" else None
        out["profiles"].append({"budget": float(budget), "n_sizes": int(row["n_sizes"]),
                                "N_opt": None if opt is None else float(opt), "status": str(row["status"])})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = law.fit(means)
    except (DataError, FitError, ValueError) as exc:
        out["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return out
    out["a"] = float(fit.params_["a"])
    ci = (fit.ci_ or {}).get("a")  # None without a bootstrap
    lo, hi = (float(v) for v in ci) if ci is not None else (math.nan, math.nan)
    if math.isfinite(lo) and math.isfinite(hi):
        out["ci_a"], out["width"] = [lo, hi], hi - lo
    thin = [p for p in out["profiles"] if p["N_opt"] is not None and p["n_sizes"] < MIN_SIZES]
    if thin:  # a resample of 3 cells mostly loses a size: the bootstrap keeps the few that did not, and collapses
        out["width"] = math.inf
        out["error"] = (f"a's interval is not trusted yet: {len(thin)} budget(s) the fit uses have under {MIN_SIZES} "
                        "sizes (" + ", ".join(f"C={p['budget']:.3g}: {p['n_sizes']}" for p in thin) + ")")
    return out


# ------------------------------------------------------------------ placement
def lattice(shape: dict, spec: dict) -> list[dict]:
    """Shapes the sweep can build beside ``shape``: its depth, every width that is a multiple of its head size
    (d_model / n_head), with exact non-embedding counts ``N``."""
    m = spec["model"]
    head = max(1, int(shape["d_model"]) // int(shape["n_head"]))
    out = []
    for d in range(head, MAX_WIDTH + 1, head):
        n = count_params(int(shape["n_layer"]), d, n_head=d // head, vocab_size=int(m["vocab_size"]),
                         n_ctx=int(m["seq_len"]), family=m["family"]).non_embedding
        out.append({"n_layer": int(shape["n_layer"]), "d_model": d, "n_head": d // head, "N": int(n)})
    return out


def refusal(spec: dict, budget: float, N: float) -> str | None:
    """Why a size of ``N`` parameters cannot run at ``budget`` under the grid's limits (None: it can)."""
    g = spec["grid"]
    D = float(budget) / (6.0 * N)
    tpp = D / N
    lo, hi = g.get("min_tokens_per_param"), g.get("max_tokens_per_param")
    if lo is not None and tpp < float(lo):
        return f"{tpp:.3g} tokens per parameter, below grid.min_tokens_per_param {float(lo):g}"
    if hi is not None and tpp > float(hi):
        return f"{tpp:.3g} tokens per parameter, above grid.max_tokens_per_param {float(hi):g}"
    axis = spec["batch"]["tokens_per_step"]
    tps = tokens_per_step(spec, D, axis[0] if isinstance(axis, list) else None, N=N) if not isinstance(
        axis, dict) else None
    if tps is not None and int(round(D / tps)) < int(g["min_steps"]):
        return f"{int(round(D / tps))} steps of {tps} tokens, below grid.min_steps {int(g['min_steps'])}"
    return None


def targets(profile: dict, sizes: pd.DataFrame, k: int, step: float = STEP) -> list[tuple[float, float, str]]:
    """Where to add ``k`` sizes at one budget: ``(target N, anchor N, side)`` with side "below"/"above" the anchor.

    ``sizes``: the budget's sampled sizes (N, loss), sorted by N. A minimum inside the sizes: alternately below and
    above N_opt (first on the side with fewer sampled sizes), the j-th pair at N_opt / step^j and N_opt step^j. No
    minimum: beyond the largest (or smallest) size, at step^j past it, on the side the minimum (or the lowest loss)
    points to; a profile that curves down with its lowest loss inside widens on both sides; a single size gets
    neighbours on both sides."""
    N = sizes["N"].to_numpy(float)
    best = float(N[int(np.argmin(sizes["loss"].to_numpy(float)))])
    status = profile["status"]
    if profile["N_opt"] is not None:  # the side with fewer sampled sizes first: balance the points around the vertex
        anchor = profile["N_opt"]
        sides = ["below", "above"] if (N < anchor).sum() <= (N > anchor).sum() else ["above", "below"]
    elif "above the largest" in status or (len(N) >= 2 and best == N.max()):
        anchor, sides = float(N.max()), ["above"]
    elif "below the smallest" in status or (len(N) >= 2 and best == N.min()):
        anchor, sides = float(N.min()), ["below"]
    elif len(N) >= 3:  # curves down with its lowest loss inside: widen on both sides
        return [(float(N.min()) / step ** (j // 2 + 1), float(N.min()), "below") if j % 2 == 0 else
                (float(N.max()) * step ** (j // 2 + 1), float(N.max()), "above") for j in range(k)]
    else:  # one size: around it
        anchor, sides = best, ["below", "above"]
    out = []
    for j in range(k):
        side = sides[j % len(sides)]
        power = j // len(sides) + 1
        out.append((anchor / step ** power if side == "below" else anchor * step ** power, anchor, side))
    return out


def propose(spec: dict, fitted: dict, k: int, *, step: float = STEP, candidates=None,
            refuse=None) -> tuple[list[dict], list[dict]]:
    """The sizes one round adds: ``(added, skipped)``, each a list of dicts with ``budget``, the shape
    (n_layer, d_model, n_head, N) and, for skipped ones, ``reason``.

    ``fitted``: :func:`fit_profiles`' result. ``candidates(budget, ref_shape)``: the shapes that may be added at a
    budget (default: :func:`lattice` beside the sampled shape nearest the target); ``refuse(budget, N)``: why a size
    may not run there (default: :func:`refusal` under the grid's limits). Each target snaps to the nearest
    candidate on its side of the anchor (the optimum, or the edge of the sampled sizes), not yet sampled at that
    budget and no farther from the anchor than the target plus half a step: when the sizes next to the target are
    taken, the round fills in between rather than drifting outwards."""
    candidates = candidates or (lambda budget, ref: lattice(ref, spec))
    refuse = refuse or (lambda budget, N: refusal(spec, budget, N))
    means = fitted["means"]
    added, skipped = [], []
    for prof in fitted["profiles"]:
        budget = prof["budget"]
        here = means[np.isclose(means["budget"].astype(float), budget)].sort_values("N")
        have = {(int(r.n_layer), int(r.d_model)) for r in here.itertuples()}
        taken = set(have)
        for target, anchor, side in targets(prof, here, k, step):
            ref = here.iloc[int(np.argmin(np.abs(np.log(here["N"].to_numpy(float) / target))))]
            reach = abs(math.log(target / anchor)) + 0.5 * math.log(step)
            pool = [c for c in candidates(budget, ref) if (c["n_layer"], c["d_model"]) not in taken
                    and (c["N"] < anchor if side == "below" else c["N"] > anchor)
                    and abs(math.log(c["N"] / anchor)) <= reach + 1e-9]
            if not pool:
                continue
            pick = min(pool, key=lambda c: (abs(math.log(c["N"] / target)), c["N"]))
            taken.add((pick["n_layer"], pick["d_model"]))
            shape = {k_: int(pick[k_]) for k_ in ("n_layer", "d_model", "n_head", "N")}
            why = refuse(budget, shape["N"])
            if why is None:
                added.append({"budget": budget, **shape, "side": side})
            else:
                skipped.append({"budget": budget, **shape, "side": side, "reason": why})
    return added, skipped


def round_cells(spec: dict, added: list[dict], rnd: int) -> list[dict]:
    """The cells of the sizes ``added`` in round ``rnd``: as the grid would make them (every seed, axis and
    schedule of the sweep; only an entry's ``seeds`` where it names them, as ``replicates: auto`` does), tagged
    with the round (after their ids: the same size at the same budget is the same
    run, whichever round asked for it)."""
    cells = []
    for a in added:
        one = copy.deepcopy(spec)
        one["model"] = {**one["model"], "sizes": None,
                        "shapes": [{k: a[k] for k in ("n_layer", "d_model", "n_head")}]}
        if a.get("seeds") is not None:
            one["seeds"] = list(a["seeds"])
        one["grid"] = {**one["grid"], "compute": [a["budget"]], "adaptive": None, "min_tokens_per_param": None,
                       "max_tokens_per_param": None}  # refusal() decided; expand would drop it silently
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cells.extend({**c, "round": int(rnd)} for c in expand(one))
    return cells


def added_cells(store, known_ids=()) -> list[dict]:
    """Cells an adaptive round added to ``store`` (``round`` >= 1) and not among ``known_ids``: the runner runs
    them with the grid's, so ``scaling sweep run`` resumes a round cut short."""
    known = set(known_ids)
    out = []
    for run_id, config in store.db.execute("SELECT run_id, config FROM runs"):
        if run_id in known:
            continue
        cell = json.loads(config)
        if int(cell.get("round") or 0) >= 1:
            out.append(cell)
    return out


# ---------------------------------------------------------------------- driver
def _spec_of(definition, root) -> dict:
    """A loaded spec from a definition (YAML path or dict) or the name of a sweep in ``root``."""
    from .runner import open_store

    if isinstance(definition, str) and not definition.endswith((".yaml", ".yml")) and not Path(definition).exists():
        store = open_store(definition, root)
        spec = store.meta().get("spec")
        store.close()
        if spec is None:
            raise ScalingError(f"sweep {definition!r} under {root} has no recorded definition; extend it with its "
                               "YAML file")
        return load_spec(spec)
    read_definition(definition, ScalingError)
    return load_spec(definition)


def _table(name: str, root) -> pd.DataFrame:
    from .runner import export

    return export(name, root)[0]


def extend(definition, *, rounds: int | None = None, target_ci_a: float | None = None,
           add_per_budget: int | None = None, replicates: str | None = None, step: float = STEP,
           root="out/sweeps", executor: str = "local",
           workers: int | None = None, progress: bool = True, bootstrap: int = 200, seed: int = 0,
           **executor_kwargs) -> dict:
    """Grow an IsoFLOP sweep in rounds until a's 90% interval is narrower than ``target_ci_a`` (see the module).

    ``definition``: the sweep's YAML (or dict), or its name in ``root``. ``rounds``, ``target_ci_a``,
    ``add_per_budget``, ``replicates``: override the definition's ``grid.adaptive``. With ``replicates: auto`` the
    grid (round 0) trains the sweep's first seed only, and each round is :func:`propose_auto`'s; ``rounds`` is the
    number of the last round
    (round 0 is the grid), so a rerun with the same value after a kill finishes what is left and adds nothing more.
    Unfinished cells (the grid's, or a round's cut short) are trained first.

    Returns ``{"name", "rounds" (one entry per round decided, this call or earlier: round, a and ci_a at the
    decision, added, skipped), "stopped" (why), "round" (the last round), "a", "ci_a", "width", "target_ci_a",
    "profiles", "flops_trained"}``."""
    from .runner import open_store, run_sweep, sweep_dir

    spec = _spec_of(definition, root)
    if spec["grid"].get("compute") is None:
        raise ScalingError(f"sweep {spec['name']!r} is an N x D grid (grid.tokens): adaptive placement works on "
                           "IsoFLOP sweeps only (grid.compute), whose profiles have a per-budget optimum")
    s = _settings(spec, rounds, target_ci_a, add_per_budget, replicates)
    name, base = spec["name"], sweep_dir(spec["name"], root)
    run = dict(executor=executor, workers=workers, root=root, progress=progress, **executor_kwargs)
    seeds = list(spec["seeds"])
    if s["replicates"] == "auto":  # the grid with one seed; the sweep's seeds are kept for the rounds' replicates
        store = open_store(name, root, must_exist=False)
        seeds = list(store.meta().get("adaptive_seeds") or seeds)
        store.set_meta(adaptive_seeds=seeds)
        store.close()
        spec = {**spec, "seeds": seeds[:1]}
    run_sweep(spec, **run)  # the grid, and any round cut short (the runner picks up added cells)
    while True:
        fitted = fit_profiles(_table(name, root), bootstrap=bootstrap, seed=seed)
        store = open_store(name, root)
        history = store.meta().get("adaptive", {})
        last = max([int(c.get("round") or 0) for c in added_cells(store)] + [0])
        stop = None
        if fitted["width"] < s["target_ci_a"]:
            stop = f"target met: a's 90% interval is {fitted['width']:.3g} wide, under {s['target_ci_a']:g}"
        elif last >= s["rounds"]:
            stop = f"rounds ran out ({last} of {s['rounds']})"
        if stop is None:
            with driver_lock(base, f"sweep {name!r} is being run by another driver (lock {base / 'driver.lock'}); "
                                   "extend it once that one is done"):
                if s["replicates"] == "auto":
                    added, skipped = propose_auto(spec, fitted, s["add_per_budget"], seeds=seeds, step=step, seed=seed)
                else:
                    added, skipped = propose(spec, fitted, s["add_per_budget"], step=step)
                cells = round_cells(spec, added, last + 1)
                known = set(store.runs()["run_id"])
                new = [c for c in store.same_runs(cells, free=("run_id", "D_grid", "device", "round"))
                       if c["run_id"] not in known]
                history[str(last + 1)] = {"round": last + 1, "a": fitted["a"], "ci_a": fitted["ci_a"],
                                          "added": added, "skipped": skipped, "runs": len(new)}
                store.set_meta(adaptive=history)
                if not new:
                    stop = "nothing to add: " + ("; ".join(_skip_line(x) for x in skipped) if skipped
                                                 else "every size the profiles ask for is trained already")
                    history.pop(str(last + 1))
                    store.set_meta(adaptive=history)
                else:
                    store.sync(new)  # one transaction: the round is decided once
        store.close()
        if stop is not None:
            break
        if progress:
            print(f"sweep {name}: round {last + 1}: {_round_line(history[str(last + 1)])}")
        run_sweep(spec, **run)
    table = _table(name, root)
    decided = [history[k] for k in sorted(history, key=int) if int(k) <= last]  # a kill may leave one unsynced
    return {"name": name, "stopped": stop, "round": last, "rounds": decided,
            "a": fitted["a"], "ci_a": fitted["ci_a"], "width": None if math.isinf(fitted["width"]) else fitted["width"],
            "target_ci_a": s["target_ci_a"], "fit_error": fitted["error"], "profiles": fitted["profiles"],
            "flops_trained": float(table["flops_trained"].sum()) if "flops_trained" in table else None,
            "runs": int(len(table))}


def _skip_line(x: dict) -> str:
    return f"N={x['N']} (d_model {x['d_model']}) at C={x['budget']:.3g} not added: {x['reason']}"


def _round_line(h: dict) -> str:
    ci = "no interval yet" if h["ci_a"] is None else f"a = {h['a']:.3f}, 90% interval [{h['ci_a'][0]:.3f}, " \
                                                      f"{h['ci_a'][1]:.3f}]"
    sizes = ", ".join(f"N={x['N']} at C={x['budget']:.3g}" for x in h["added"])
    line = f"{ci}; adding {len(h['added'])} size(s) ({h['runs']} runs): {sizes}"
    if h["skipped"]:
        line += "; " + "; ".join(_skip_line(x) for x in h["skipped"])
    return line


# ------------------------------------------------------- replicates: auto (budget-aware placement)
#: a round of ``replicates: auto`` adds runs until its FLOPs reach this fraction of the FLOPs trained so far
GROWTH = 0.25
#: simulated resamples behind each predicted width (common random numbers: every design sees the same draws)
SIM_DRAWS = 200


def _noise_sd(means: pd.DataFrame) -> float:
    """The loss noise of one run: the pooled seed spread of cells with 2 or more seeds; with none, the scatter of
    the budgets' parabola fits (which holds their lack of fit too); a floor of 1e-3 either way."""
    if "n_seeds" in means and "loss_sd" in means:
        rep = means[(means["n_seeds"] >= 2) & means["loss_sd"].notna()]
        if len(rep):
            dof = (rep["n_seeds"] - 1).to_numpy(float)
            return max(1e-3, float(np.sqrt(np.sum(dof * rep["loss_sd"].to_numpy(float) ** 2) / dof.sum())))
    ss, dof = 0.0, 0
    for _, g in means.groupby("budget"):
        if g["N"].nunique() >= 4:
            x, y = np.log(g["N"].to_numpy(float)), g["loss"].to_numpy(float)
            ss += float(np.sum((y - np.polyval(np.polyfit(x, y, 2), x)) ** 2))
            dof += len(x) - 3
    return max(1e-3, math.sqrt(ss / dof)) if dof else 0.01


def _vertex_draws(x: np.ndarray, truth: np.ndarray, n: np.ndarray, sd: float, z: np.ndarray, pick: np.ndarray,
                  window: int = 5) -> np.ndarray:
    """log N_opt of one budget in each simulated resample (NaN where the profile gives none), as the IsoFLOP law
    finds it: cell means ``truth + sd / sqrt(n) z``, cells resampled with replacement (``pick``: uniform draws),
    a parabola in log N on the ``window`` sizes around the best, its vertex inside them."""
    m = len(x)
    order = np.argsort(x)
    x, truth, n = x[order], truth[order], n[order]
    y = truth[None, :] + sd / np.sqrt(n)[None, :] * z[:, :m]
    idx = np.minimum((pick[:, :m] * m).astype(int), m - 1)
    out = np.full(len(z), np.nan)
    for b in range(len(z)):
        w = np.bincount(idx[b], minlength=m).astype(float)
        keep = np.flatnonzero(w > 0)
        if len(keep) < 3:
            continue
        if len(keep) > window:
            j = int(np.argmin(y[b, keep]))
            lo = int(np.clip(j - window // 2, 0, len(keep) - window))
            keep = keep[lo:lo + window]
        xs, ys, ws = x[keep], y[b, keep], w[keep]
        X = np.stack([xs * xs, xs, np.ones_like(xs)], 1)
        try:
            p2, p1, _ = np.linalg.solve(X.T @ (ws[:, None] * X), X.T @ (ws * ys))
        except np.linalg.LinAlgError:
            continue
        if p2 > 0 and xs.min() <= -p1 / (2 * p2) <= xs.max():
            out[b] = -p1 / (2 * p2)
    return out


def _slope_width(logc: np.ndarray, verts: np.ndarray, level: float = 0.9) -> float:
    """The width of the central ``level`` interval of the least-squares slope of log N_opt on log C over the
    budgets each resample kept (a resample with under 2 left out, as the bootstrap leaves out its failures)."""
    ok = np.isfinite(verts)
    cnt = ok.sum(1)
    good = cnt >= 2
    if good.sum() < 0.5 * len(verts):
        return math.inf
    X = np.where(ok, logc[None, :], 0.0)
    Y = np.where(ok, verts, 0.0)
    mx, my = X.sum(1) / np.maximum(cnt, 1), Y.sum(1) / np.maximum(cnt, 1)
    sxx = (np.where(ok, (logc[None, :] - mx[:, None]) ** 2, 0.0)).sum(1)
    sxy = (np.where(ok, (logc[None, :] - mx[:, None]) * (verts - my[:, None]), 0.0)).sum(1)
    slope = sxy[good] / np.maximum(sxx[good], 1e-300)
    q = (1 - level) / 2
    return float(np.quantile(slope, 1 - q) - np.quantile(slope, q))


class _Design:
    """Each usable budget's cells (log N, simulated true loss, seeds trained) and the predicted width of a's
    interval: how :func:`propose_auto` scores a candidate run before training it."""

    def __init__(self, fitted: dict, budgets: list[float], sd: float, draws: int, seed: int):
        rng = np.random.default_rng(seed)
        self.budgets, self.sd = budgets, sd
        self.logc = np.log(np.asarray(budgets, float))
        self.cells, self.curve, self.verts = {}, {}, {}
        means = fitted["means"]
        width = max(int(means.groupby("budget")["N"].nunique().max()) + 16, 24)
        self.z = {b: rng.standard_normal((draws, width)) for b in budgets}
        self.pick = {b: rng.random((draws, width)) for b in budgets}
        for b in budgets:
            g = means[np.isclose(means["budget"].astype(float), b)].sort_values("N")
            x, y = np.log(g["N"].to_numpy(float)), g["loss"].to_numpy(float)
            n = (g["n_seeds"].to_numpy(float) if "n_seeds" in g else np.ones(len(g)))
            j = int(np.argmin(y))
            lo = int(np.clip(j - 2, 0, max(0, len(x) - 5)))
            self.curve[b] = np.polyfit(x[lo:lo + 5], y[lo:lo + 5], 2)  # the smooth truth the draws scatter around
            self.cells[b] = {"x": x, "n": n}
            self.verts[b] = self._draw(b, x, n)

    def _draw(self, b, x, n):
        return _vertex_draws(x, np.polyval(self.curve[b], x), n, self.sd, self.z[b], self.pick[b])

    def width(self, changed: dict | None = None) -> float:
        verts = np.stack([(changed or {}).get(b, self.verts[b]) for b in self.budgets], 1)
        return _slope_width(self.logc, verts)

    def with_size(self, b, N):
        c = self.cells[b]
        x, n = np.append(c["x"], math.log(N)), np.append(c["n"], 1.0)
        return x, n, self._draw(b, x, n)

    def with_seed(self, b, N):
        c = self.cells[b]
        n = c["n"].copy()
        n[int(np.argmin(np.abs(c["x"] - math.log(N))))] += 1
        return c["x"], n, self._draw(b, c["x"], n)

    def take(self, b, x, n, verts):
        self.cells[b], self.verts[b] = {"x": x, "n": n}, verts


def propose_auto(spec: dict, fitted: dict, k: int, *, seeds=None, step: float = STEP, candidates=None, refuse=None,
                 growth: float = GROWTH, draws: int = SIM_DRAWS, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """One round of ``replicates: auto``: ``(added, skipped)`` as :func:`propose`, each added entry with the
    ``seeds`` it trains and its ``kind`` ("size": a new size, one seed; "replicate": one more seed of a cell).

    1. A budget whose profile has no minimum, or whose minimum rests on under ``MIN_SIZES`` sizes, gets ``k`` sizes
       placed as :func:`propose` places them (a step farther out when every size within a step is sampled), each
       with the sweep's first seed only.
    2. The rest of the round goes where it narrows a's interval most per FLOP. Candidates: at each budget with a
       usable profile, the 2 sizes :func:`propose` would add beside its optimum (one seed), and one more seed of any
       of its 5 sizes nearest the optimum (while a cell has fewer than the sweep's seeds). Each is scored by the
       predicted width of a's 90% interval with it (simulated resamples of the cells around each budget's fitted
       parabola, with the run noise from the seed spread, else the parabola scatter), less the width without it,
       over what it costs (its budget): the cheap budgets' replicates and sizes come first, an expensive budget's
       run only where it buys more per FLOP. Candidates are taken best first, rescored after each, until the round
       has spent ``growth`` times the FLOPs trained so far (at least one run), or no candidate narrows the interval.

    ``seeds``: the sweep's seeds (default ``spec["seeds"]``); the rest as in :func:`propose`."""
    seeds = list(seeds if seeds is not None else spec["seeds"])
    candidates = candidates or (lambda budget, ref: lattice(ref, spec))
    refuse = refuse or (lambda budget, N: refusal(spec, budget, N))
    means = fitted["means"]
    if not len(means):
        return [], []
    first = [seeds[0]]
    added, skipped = [], []
    usable = []
    for prof in fitted["profiles"]:
        b = prof["budget"]
        if prof["N_opt"] is None or prof["n_sizes"] < MIN_SIZES:
            got, why = propose(spec, {"means": means, "profiles": [prof]}, k, step=step, candidates=candidates,
                               refuse=refuse)
            if not got and not why:  # the sizes within a step are all sampled: reach one step farther
                got, why = propose(spec, {"means": means, "profiles": [prof]}, k, step=step * step,
                                   candidates=candidates, refuse=refuse)
            added += [{**a, "seeds": first, "kind": "size"} for a in got]
            skipped += why
        else:
            usable.append(b)
    spent = sum(a["budget"] for a in added)
    trained = float((means["budget"].astype(float) * means.get("n_seeds", 1)).sum())
    allowance = growth * trained - spent
    if len(usable) < 2 or (added and allowance <= 0):
        return added, skipped
    design = _Design(fitted, usable, _noise_sd(means), draws, seed)
    here = {b: means[np.isclose(means["budget"].astype(float), b)].sort_values("N") for b in usable}
    taken = {b: {(int(r.n_layer), int(r.d_model)) for r in here[b].itertuples()} for b in usable}
    n_have = {(b, int(r.N)): int(getattr(r, "n_seeds", 1)) for b in usable for r in here[b].itertuples()}
    new_sizes = {b: [] for b in usable}
    prof_of = {p["budget"]: p for p in fitted["profiles"]}
    for b in usable:  # the sizes beside each optimum, as propose picks them
        got, why = propose(spec, {"means": means, "profiles": [prof_of[b]]}, 2, step=step, candidates=candidates,
                           refuse=refuse)
        new_sizes[b] = got
        skipped += why
    now = design.width()
    limit = growth * trained
    while True:
        best = None
        for b in usable:
            if spent > 0 and spent + b > limit:  # over the round's FLOPs (the first run of a round always fits)
                continue
            for a in new_sizes[b]:
                if (a["n_layer"], a["d_model"]) in taken[b]:
                    continue
                x, n, v = design.with_size(b, a["N"])
                gain = now - design.width({b: v})
                if best is None or gain / b > best[0]:
                    best = (gain / b, gain, b, ("size", a), (x, n, v))
            window = here[b].iloc[np.argsort(np.abs(np.log(here[b]["N"].to_numpy(float) / prof_of[b]["N_opt"])))[:5]]
            for r in window.itertuples():
                if n_have[(b, int(r.N))] >= len(seeds):
                    continue
                x, n, v = design.with_seed(b, r.N)
                gain = now - design.width({b: v})
                if best is None or gain / b > best[0]:
                    best = (gain / b, gain, b, ("replicate", r), (x, n, v))
        if best is None or not best[1] > 0:
            break
        _, gain, b, (kind, what), state = best
        design.take(b, *state)
        now -= gain
        spent += b
        if kind == "size":
            taken[b].add((what["n_layer"], what["d_model"]))
            n_have[(b, int(what["N"]))] = 1
            here[b] = pd.concat([here[b], pd.DataFrame([{**{k_: what[k_] for k_ in ("n_layer", "d_model", "n_head",
                                                                                      "N")}, "n_seeds": 1}])])
            added.append({**what, "seeds": first, "kind": "size"})
        else:
            have = n_have[(b, int(what.N))]
            n_have[(b, int(what.N))] = have + 1
            here[b].loc[here[b]["N"] == what.N, "n_seeds"] = have + 1
            added.append({"budget": b, "n_layer": int(what.n_layer), "d_model": int(what.d_model),
                          "n_head": int(what.n_head), "N": int(what.N), "side": "replicate",
                          "seeds": [seeds[have]], "kind": "replicate"})
    return added, skipped
