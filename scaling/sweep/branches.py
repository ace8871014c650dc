"""WSD cooldown branches: one warmup-stable run per model size, one short cooldown per target length.

``schedule: {type: wsd, cooldown: 0.2, shape: 1-sqrt, branches: true}`` turns the runs of a sweep into a graph
(Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations"):

- the runs that differ only in their length D (one size, seed, learning rate, warmup and batch) share a
  **stable run**: warmup, then the peak learning rate, up to the step where the longest run's cooldown starts,
  keeping a checkpoint at the step where each run's cooldown starts (``(1 - cooldown) * steps``);
- each run is a **branch**: it starts from the stable run's checkpoint at its cooldown's start and cools down
  over its last ``cooldown * steps`` steps (``shape``: linear or 1-sqrt, to ``final_lr_frac`` x the peak).

Each branch is the run an unbroken WSD schedule of its length would have trained (same batches, from (seed,
step); same state at the branch point), so the runs table keeps one row per (N, D) with its own curve: the
stable run's log up to the branch point, then the branch's. What a row would cost alone is its ``flops``
(6 N D); what the sweep trains is each stable run once plus every branch (``flops_trained``).

The warmup is shared by a stable run's branches, so it is resolved to steps once per stable run: a fraction
(``warmup < 1``) is a fraction of its *shortest* run's steps (which then has the warmup an independent run of
its length would have; longer ones have proportionally less), and must end before that run's cooldown starts.
Changing a stable run (a longer D added to the grid) trains a new one; branches already finished keep their
results, since the prefix they started from is the same. A shorter D added to a size with a fractional warmup
changes that size's warmup, so its branches are new runs.
"""

from __future__ import annotations

import hashlib
import json

from ..schedules import COOLDOWN_SHAPES, cooldown_start, steps_of

#: run settings a stable run's branches differ in: everything else they share
LENGTH_KEYS = ("run_id", "D", "steps", "C", "budget", "D_grid", "device")


def check_schedule(spec: dict) -> None:
    """The WSD settings, checked before anything trains: cooldown in (0, 1), a known shape, branches only on a
    wsd schedule with one batch size per stable run."""
    from .spec import SpecError, _as_number

    s = spec["schedule"]
    cooldown, shape, branches = s.get("cooldown"), s.get("shape"), s.get("branches")
    if cooldown is not None:
        c = _as_number(cooldown)
        if c is None or not 0 < c < 1:
            raise SpecError(f"schedule.cooldown must be a number in (0, 1), the share of each run spent cooling "
                            f"down (0.2 is usual); got {cooldown!r}")
        s["cooldown"] = c
        d = _as_number(s.get("decay_frac"))
        if d is not None and d != 0.2 and d != c:
            raise SpecError(f"schedule.cooldown ({c:g}) and schedule.decay_frac ({d:g}) both set the share of a WSD "
                            "run spent cooling down; give one (cooldown)")
    if shape is not None and shape not in COOLDOWN_SHAPES:
        raise SpecError(f"schedule.shape {shape!r} is not a cooldown shape; use {' or '.join(COOLDOWN_SHAPES)}")
    if not isinstance(branches, bool):
        raise SpecError(f"schedule.branches must be true or false; got {branches!r}")
    if s["type"] != "wsd":
        for key, value in (("branches", branches or None), ("cooldown", cooldown), ("shape", shape)):
            if value is not None:
                raise SpecError(f"schedule.{key} applies to the wsd schedule (warmup, stable, cooldown), and "
                                f"schedule.type is {s['type']}: set type: wsd, or drop schedule.{key}")
    tps = spec["batch"]["tokens_per_step"]
    if branches and (tps == "auto" or isinstance(tps, dict)):
        rule = "auto" if tps == "auto" else "from a fit"
        raise SpecError(f"schedule.branches: the runs of a size share one stable run, so they need one batch size; "
                        f"batch.tokens_per_step {rule} gives each D its own. "
                        "Set a number (or a list: one stable run per batch size)")


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def branch_cells(spec: dict, runs: list[dict]) -> list[dict]:
    """The expanded runs of a branched sweep as a graph: a stable cell per group of runs that differ only in
    length, then each run as a branch cell needing it (``kind``, ``needs``, ``branch: {stable, start}``)."""
    from .spec import SpecError

    groups: dict[str, list[dict]] = {}
    for r in runs:
        key = json.dumps({k: v for k, v in r.items() if k not in LENGTH_KEYS}, sort_keys=True, default=str)
        groups.setdefault(key, []).append(r)
    out = []
    for members in groups.values():
        members = sorted(members, key=lambda r: r["steps"])
        first, last = members[0], members[-1]
        sched = first["schedule"]
        w = float(sched.get("warmup", 0.05))
        warm = int(round(w * first["steps"])) if w < 1 else int(w)
        if warm >= cooldown_start(first["steps"], sched):
            raise SpecError(f"schedule.branches: the warmup ({warm} steps) must end before the cooldown of the "
                            f"shortest run of its stable run starts (N={first['N']}, D={first['D']:.4g}: step "
                            f"{cooldown_start(first['steps'], sched)} of {first['steps']}); shorten the warmup")
        sched = {**sched, "warmup_steps": warm}
        starts = {r["run_id"]: cooldown_start(r["steps"], sched) for r in members}
        keep = sorted(set(starts.values()))
        evals = set()
        for r in members:  # where each branch, run alone, would have evaluated before its cooldown
            every = steps_of(r["eval"]["every"], r["steps"])
            evals.update(range(every, starts[r["run_id"]] + 1, every))
        stable = {k: v for k, v in last.items() if k not in ("run_id", "D_grid", "device", "budget")}
        stable.update(schedule=sched, kind="stable", D=float(keep[-1] * last["tokens_per_step"]),
                      stable={"until": keep[-1], "keep": keep, "evals": sorted(evals)})
        stable["C"] = 6.0 * stable["N"] * stable["D"]
        sid = f"stable-N{last['N']}-D{int(stable['D'])}-s{last['seed']}-{_digest(stable)}"
        out.append({**stable, "run_id": sid, "needs": [], "device": last["device"]})
        for r in members:
            cell = {k: v for k, v in r.items() if k not in ("run_id", "D_grid", "device")}
            cell.update(schedule=sched, branch={"start": starts[r["run_id"]]})
            # the id names the run's schedule and branch point, not which stable run it came from: the same
            # prefix, trained again for a longer grid, leaves a finished branch finished
            rid = r["run_id"].rsplit("-", 1)[0] + "-" + _digest(cell)
            out.append({**cell, "run_id": rid, "D_grid": r["D_grid"], "device": r["device"], "kind": "branch",
                        "needs": [sid], "branch": {"start": starts[r["run_id"]], "stable": sid}})
    return out


def trained_tokens(cell: dict) -> float:
    """Tokens a cell trains itself: a stable run's steps, a branch's cooldown, an independent run's D."""
    if cell.get("kind") == "branch":
        return float((cell["steps"] - cell["branch"]["start"]) * cell["tokens_per_step"])
    return float(cell["D"])  # a stable run's D is what it trains
