"""Run an overoptimization sweep: cells in dependency order on any registered executor.

The sweep runner's store (one SQLite file, written by the driver only), its
executors and its one-driver lock serve here too. A cell is submitted once every
cell it needs is done; finished cells are never redone, so a killed sweep run
again picks up where it stopped. Results export to one row per method x reward
model x point (``n`` for best-of-n, ``step`` for RL and DPO), plus a per-prompt
table for bootstrapping over prompts.
"""

from __future__ import annotations

import concurrent.futures as cf
import fcntl
import json
import signal
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ScalingError
from ..sweep.executors import get_executor
from ..sweep.runner import SweepInterrupted, _bar, _last_line, _uninterrupted, check_unchanged, stoppable
from ..sweep.spec import changed_settings
from ..sweep.store import Store
from .cells import run_cell
from .spec import cells as plan_cells
from .spec import load_spec

DEFAULT_ROOT = Path("out/overopt")
COLUMNS = ["method", "rm_params", "rm_data", "kl_penalty", "step", "n", "kl", "d", "gold", "proxy", "seed"]


def open_store(name: str, root: str | Path = DEFAULT_ROOT, must_exist: bool = True) -> Store:
    path = Path(root) / name / "sweep.sqlite"
    if must_exist and not path.exists():
        raise ScalingError(f"no overoptimization sweep named {name!r} under {root} (expected {path}); "
                           "run it with `scaling overopt run`")
    return Store(path)


def run_overopt(definition, *, executor: str = "local", workers: int | None = None,
                root: str | Path = DEFAULT_ROOT, progress: bool = True, **executor_kwargs) -> pd.DataFrame:
    """Run every unfinished cell of an overoptimization sweep; returns the exported results table."""
    spec = load_spec(definition)
    from .._extras import require

    require("torch", "transformers")  # one line naming the extra, not a traceback from every worker
    todo_cells = plan_cells(spec)
    base = Path(root) / spec["name"]
    store = open_store(spec["name"], root, must_exist=False)
    lock = open(base / "driver.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ScalingError(f"overoptimization sweep {spec['name']!r} is already being run (lock {base / 'driver.lock'})"
                           ) from None
    try:
        check_unchanged(store, spec, base, changed_fn=lambda old, new: changed_settings(_core(old), _core(new)),
                        kind="overoptimization sweep",
                        extend="adding reward-model shapes, smaller pair counts, methods, KL penalties, DPO betas "
                               "or seeds with the same settings extends it")
        store.check_space()
        store.set_meta(spec=spec)
        store.sync([dict(c, run_id=c["id"]) for c in todo_cells])
        table = store.runs().set_index("run_id")
        by_id = {c["id"]: c for c in todo_cells}
        retries = int(spec["retries"])
        # a cell that failed in an earlier invocation is tried again (its cause may be fixed)
        status = {cid: "done" if table.loc[cid, "status"] == "done" else "pending" for cid in by_id}
        attempts = {cid: 0 for cid in by_id}
        pending = [cid for cid in by_id if status[cid] != "done"]
        bar = _bar(len(by_id), len(by_id) - len(pending), spec["name"], progress, unit="cell", kind="overopt")
        if not pending:
            bar.close()
            if progress:
                print(f"overopt {spec['name']}: all {len(by_id)} cells finished already")
            return export(spec["name"], root)
        ex = get_executor(executor, workers=workers, threads=int(spec["threads_per_worker"]),
                          folder=base / "submitit", **executor_kwargs)
        futures: dict[cf.Future, str] = {}
        blocked: set[str] = set()
        stopped = False
        try:
            with stoppable():
                while True:
                    running = set(futures.values())
                    for cid in pending:
                        if cid in running or cid in blocked or status[cid] in ("done", "failed"):
                            continue
                        needs = by_id[cid]["needs"]
                        if any(status[n] == "failed" or n in blocked for n in needs):
                            blocked.add(cid)
                            bar.update(1)
                            continue
                        if all(status[n] == "done" for n in needs):
                            store.set_status(cid, "running", attempt=True)
                            attempts[cid] += 1
                            futures[ex.submit(run_cell, by_id[cid], str(base), int(spec["threads_per_worker"]))] = cid
                    if not futures:
                        break
                    done, _ = cf.wait(list(futures), return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        cid = futures.pop(fut)
                        try:
                            result = fut.result()
                        except Exception as exc:  # noqa: BLE001 - recorded with its traceback
                            err = "".join(traceback.format_exception(exc))[-4000:]
                            if attempts[cid] <= retries:
                                store.set_status(cid, "pending", error=err)
                            else:
                                store.set_status(cid, "failed", error=err)
                                status[cid] = "failed"
                                bar.update(1)
                            continue
                        store.set_status(cid, "done", result=result)
                        status[cid] = "done"
                        bar.update(1)
        except KeyboardInterrupt as exc:
            with _uninterrupted():
                stopped = True
                ex.shutdown(kill=True)  # a stopped cell restarts from scratch next time
                store.requeue(set(futures.values()))
            n_done = sum(status[c] == "done" for c in by_id)
            n_failed = sum(status[c] == "failed" for c in by_id)
            raise SweepInterrupted(n_done, n_failed, len(by_id) - n_done - n_failed,
                                   getattr(exc, "signum", signal.SIGINT), unit="cells") from None
        except BaseException:
            stopped = True
            ex.shutdown(kill=True)
            raise
        finally:
            bar.close()
            if not stopped:
                ex.shutdown()
        failed = [c for c in by_id if status[c] == "failed"]
        if failed:
            errs = store.runs().set_index("run_id").loc[failed, "error"]
            last = str(errs.iloc[0]).strip().splitlines()[-1] if len(errs) else ""
            raise ScalingError(f"{len(failed)} cell(s) failed ({', '.join(failed[:4])}{'...' if len(failed) > 4 else ''})"
                               f"; {len(blocked)} cell(s) waiting on them were not run. First error: {last}. "
                               f"Finished cells are kept: fix the cause and run again")
    finally:
        lock.close()
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
    return {k: spec[k] for k in ("policy", "gold", "prompt_len", "completion_len")} | {
        "preferences": prefs, "bon": dict(spec["bon"]),
        "reward_models": {k: v for k, v in spec["reward_models"].items() if k != "shapes"},
        "rl": {k: v for k, v in spec["rl"].items() if k != "kl_penalty"},
        "dpo": {k: v for k, v in spec["dpo"].items() if k != "beta"}}


def status(name: str, root: str | Path = DEFAULT_ROOT) -> dict:
    runs = open_store(name, root).runs()
    counts = {s: int((runs["status"] == s).sum()) for s in ("done", "running", "pending", "failed")}
    stages = runs["config"].map(lambda c: json.loads(c)["stage"])
    by_stage = {st: {s: int(((stages == st) & (runs["status"] == s)).sum()) for s in counts if
                     ((stages == st) & (runs["status"] == s)).any()} for st in stages.unique()}
    failed = [{"run_id": r.run_id, "error": _last_line(r.error)} for r in runs[runs["status"] == "failed"].itertuples()]
    return {"name": name, "total": int(len(runs)), **counts, "stages": by_stage, "failed_cells": failed}


def _results(name: str, root) -> list[tuple[dict, dict]]:
    runs = open_store(name, root).runs()
    out = []
    for r in runs.itertuples():
        if r.status == "done" and isinstance(r.result, str):
            out.append((json.loads(r.config), json.loads(r.result)))
    return out


def export(name: str, root: str | Path = DEFAULT_ROOT, *, per_prompt: bool = False) -> pd.DataFrame:
    """One row per method x RM x point (``per_prompt``: one per prompt too), columns :data:`COLUMNS` + extras."""
    rows = []
    for cfg, res in _results(name, root):
        if cfg["stage"] not in ("bon", "rl", "dpo"):
            continue
        common = {"method": cfg["stage"], "rm_params": res.get("rm_params", np.nan), "rm_data": res.get("rm_data"),
                  "kl_penalty": cfg.get("kl_penalty", cfg.get("beta", np.nan)), "seed": cfg["seed"],
                  "rm_accuracy": res.get("rm_accuracy", np.nan), "rm_n_eval": res.get("rm_n_eval", np.nan)}
        for r in res["prompt_rows" if per_prompt else "rows"]:
            rows.append({**common, **r})
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    for c in ("step", "n"):
        if c not in df:
            df[c] = np.nan
    if per_prompt:  # the point's d is the sweep-level one: sqrt of the mean KL over prompts
        key = ["method", "rm_params", "rm_data", "kl_penalty", "seed", "step", "n"]
        mean_kl = df.groupby(key, dropna=False)["kl"].transform("mean")
        df["kl_prompt"] = df["kl"]
        df["kl"] = mean_kl
    neg = df["kl"] < 0
    df["d"] = np.sqrt(df["kl"].where(~neg))  # a negative estimate has no square root: NaN, and said so on fit
    front = [c for c in COLUMNS if c in df.columns]
    df = df[front + [c for c in df.columns if c not in front]]
    return df.sort_values(["method", "rm_params", "kl_penalty", "seed", "n", "step"], na_position="first",
                          ignore_index=True)
