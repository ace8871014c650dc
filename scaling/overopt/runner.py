"""Run an overoptimization sweep: its cells in dependency order on the graph runner.

The graph runner (scaling/sweep/graph.py) is the one every sweep kind uses: one SQLite store written by the
driver only, one-driver lock, executors, progress bar, and one retry rule: attempts persist in the store, a
cell that failed all its attempts stays failed until ``retry_failed`` (``--retry-failed``). A cell is submitted
once every cell it needs is done; finished cells are never redone, so a killed sweep run again picks up where
it stopped. Results export to one row per method x reward model x point (``n`` for best-of-n, ``step`` for RL
and DPO), plus a per-prompt table for bootstrapping over prompts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..sweep.drive import drive
from ..sweep.graph import CellKind, cell_status, export_rows, records, register_cell_kind
from ..sweep.spec import changed_settings
from ..sweep.store import Store, open_named
from .cells import run_cell
from .spec import cells as plan_cells
from .spec import load_spec

DEFAULT_ROOT = Path("out/overopt")
COLUMNS = ["method", "rm_params", "rm_data", "kl_penalty", "step", "n", "kl", "d", "gold", "proxy", "seed"]
#: the RLHF axes' columns (issue 14), only in the export of a sweep that sets policy.shapes or a list of
#: rl.samples_per_prompt: the policy's name and non-embedding parameters, and RL's samples per prompt
AXIS_COLUMNS = ["policy", "policy_params", "samples_per_prompt"]
#: the cell kind of every overoptimization cell (its ``stage`` says which: policy, data, rm, bon, rl, dpo)
KIND = "overopt"


def open_store(name: str, root: str | Path = DEFAULT_ROOT, must_exist: bool = True) -> Store:
    return open_named(root, name, "overoptimization sweep", "scaling overopt run", must_exist)


def _rows(cfg: dict, res: dict, record, per_prompt: bool = False) -> list[dict]:
    """A best-of-n, RL or DPO cell's points (``per_prompt``: one per prompt too); other stages export nothing."""
    if cfg["stage"] not in ("bon", "rl", "dpo") or record.status != "done" or not res:
        return []
    common = {"method": cfg["stage"], "rm_params": res.get("rm_params", np.nan), "rm_data": res.get("rm_data"),
              "kl_penalty": cfg.get("kl_penalty", cfg.get("beta", np.nan)), "seed": cfg["seed"],
              "rm_accuracy": res.get("rm_accuracy", np.nan), "rm_n_eval": res.get("rm_n_eval", np.nan)}
    if "policy" in cfg or "samples_per_prompt" in cfg:  # a sweep with the RLHF axes: their columns
        common.update(policy=res.get("policy"), policy_params=res.get("policy_params", np.nan),
                      samples_per_prompt=cfg.get("samples_per_prompt", np.nan))
    return [{**common, **r} for r in res["prompt_rows" if per_prompt else "rows"]]


register_cell_kind(CellKind(KIND, run_cell, rows=_rows))


def run_overopt(definition, *, executor: str = "local", workers: int | None = None,
                root: str | Path = DEFAULT_ROOT, progress: bool = True, retry_failed: bool = False,
                **executor_kwargs) -> pd.DataFrame:
    """Run every unfinished cell of an overoptimization sweep; returns the exported results table.

    ``retry_failed``: cells that failed all their attempts in an earlier invocation get ``retries`` fresh ones."""
    spec = load_spec(definition)
    from .._extras import require

    require("torch", "transformers")  # one line naming the extra, not a traceback from every worker
    cells = [dict(c, run_id=c["id"], kind=KIND) for c in plan_cells(spec)]
    base = Path(root) / spec["name"]
    store = open_store(spec["name"], root, must_exist=False)
    drive(store, spec, cells, base, default_kind=KIND, label="overopt", what="overoptimization sweep",
          changed_fn=lambda old, new: changed_settings(_core(old), _core(new)),
          extend="adding reward-model shapes, smaller pair counts, methods, KL penalties, DPO betas or seeds with "
                 "the same settings extends it",
          busy=f"overoptimization sweep {spec['name']!r} is already being run (lock {base / 'driver.lock'})",
          api="run_overopt(..., retry_failed=True)", executor=executor, workers=workers, progress=progress,
          retry_failed=retry_failed, executor_kwargs=executor_kwargs)
    _warn_chance(spec["name"], root)
    return export(spec["name"], root)


def _warn_chance(name: str, root) -> None:
    """Say which reward models never beat chance on held-out pairs (their curves are noise)."""
    import warnings

    from ..diagnostics import at_chance
    from ..errors import ScalingWarning

    bad = []
    for cfg, res in _results(name, root):
        if cfg["stage"] == "rm":
            acc, n = res["rm_accuracy"], res["rm_n_eval"]
            if at_chance(acc, n):
                bad.append(f"{cfg['id']} ({res['rm_params']:,} params): {acc:.1%} on {n} held-out pairs")
    if bad:
        warnings.warn("reward model(s) no better than chance; the gao fits leave them out: " + "; ".join(bad),
                      ScalingWarning, stacklevel=3)


def _core(spec: dict) -> dict:
    """What the finished cells depend on: a sweep may gain RM shapes, data sizes up to the data generated,
    methods, KL penalties, DPO betas and seeds, but not a different policy, gold or data, nor other training
    or evaluation settings for its reward models, best-of-n, RL or DPO (cells already done would keep the old ones)."""
    prefs = dict(spec["preferences"], pairs=max(spec["preferences"]["pairs"]))
    # the RLHF axes (policy.shapes, a list of rl.samples_per_prompt) may grow; a number made a list is a change
    spec = dict(spec, policy=_axis(spec["policy"], "shapes"), rl=_axis(spec["rl"], "samples_per_prompt"))
    return {k: spec[k] for k in ("policy", "gold", "prompt_len", "completion_len")} | {
        "preferences": prefs, "bon": dict(spec["bon"]),
        "reward_models": {k: v for k, v in spec["reward_models"].items() if k != "shapes"},
        "rl": {k: v for k, v in spec["rl"].items() if k != "kl_penalty"},
        "dpo": {k: v for k, v in spec["dpo"].items() if k != "beta"}}


def _axis(d: dict, key: str) -> dict:
    return dict(d, **{key: "axis"}) if isinstance(d.get(key), list) else d


def status(name: str, root: str | Path = DEFAULT_ROOT) -> dict:
    """Cells done, running, pending and failed (with the last line of their errors), by stage."""
    st = cell_status(open_store(name, root), Path(root) / name, KIND)
    df = st.pop("_table")
    counts = {s: st[s] for s in ("done", "running", "pending", "failed")}
    stages = df["cell"].map(lambda c: c["stage"])
    by_stage = {sg: {s: int(((stages == sg) & (df["status"] == s)).sum()) for s in counts if
                     ((stages == sg) & (df["status"] == s)).any()} for sg in stages.unique()}
    failed = [{"run_id": r["run_id"], "error": r["error"]} for r in st["failed_cells"]]
    return {"name": name, "total": st["total"], **counts, "stages": by_stage, "failed_cells": failed}


def _results(name: str, root) -> list[tuple[dict, dict]]:
    return [(cfg, res) for cfg, res, r in records(open_store(name, root), KIND) if r.status == "done" and res]


def export(name: str, root: str | Path = DEFAULT_ROOT, *, per_prompt: bool = False) -> pd.DataFrame:
    """One row per method x RM x point (``per_prompt``: one per prompt too), columns :data:`COLUMNS` + extras."""
    df = pd.DataFrame(export_rows(open_store(name, root), KIND, per_prompt=per_prompt))
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    for c in ("step", "n"):
        if c not in df:
            df[c] = np.nan
    if per_prompt:  # the point's d is the sweep-level one: sqrt of the mean KL over prompts
        key = ["method", "rm_params", "rm_data", "kl_penalty", "seed", "step", "n"]
        key += [c for c in AXIS_COLUMNS if c in df.columns]
        mean_kl = df.groupby(key, dropna=False)["kl"].transform("mean")
        df["kl_prompt"] = df["kl"]
        df["kl"] = mean_kl
    neg = df["kl"] < 0
    df["d"] = np.sqrt(df["kl"].where(~neg))  # a negative estimate has no square root: NaN, and said so on fit
    order = COLUMNS[:1] + AXIS_COLUMNS[:2] + COLUMNS[1:4] + AXIS_COLUMNS[2:] + COLUMNS[4:]
    front = [c for c in order if c in df.columns]
    df = df[front + [c for c in df.columns if c not in front]]
    by = ["method", "rm_params", "kl_penalty", "seed", "n", "step"]
    if "policy" in df.columns:
        by = ["method", "policy_params", "policy", "rm_params", "kl_penalty", "samples_per_prompt", "seed", "n",
              "step"]
    return df.sort_values(by, na_position="first", ignore_index=True)
