"""Run a sweep: expand the definition, skip what is done, run the rest, retry failures, record everything.

The store's run table is the source of truth. A run left ``running`` by a killed
driver is simply run again: its worker resumes from the last checkpoint, or
returns the result it already wrote.
"""

from __future__ import annotations

import concurrent.futures as cf
import fcntl
import json
import time
import traceback
from pathlib import Path

import pandas as pd

from ..counting import flops_kaplan
from ..errors import ScalingError
from .executors import get_executor
from .spec import expand, load_spec
from .store import Store
from .train import run_worker

DEFAULT_ROOT = Path("out/sweeps")


def sweep_dir(name: str, root: str | Path = DEFAULT_ROOT) -> Path:
    return Path(root) / name


def open_store(name: str, root: str | Path = DEFAULT_ROOT, must_exist: bool = True) -> Store:
    path = sweep_dir(name, root) / "sweep.sqlite"
    if must_exist and not path.exists():
        raise ScalingError(f"no sweep named {name!r} under {root} (expected {path}); run it with `scaling sweep run`")
    return Store(path)


def run_sweep(definition, *, executor: str = "local", workers: int | None = None, root: str | Path = DEFAULT_ROOT,
              progress: bool = True, **executor_kwargs) -> pd.DataFrame:
    """Run every unfinished run of a sweep; returns the run table."""
    spec = load_spec(definition)
    configs = expand(spec)
    base = sweep_dir(spec["name"], root)
    store = open_store(spec["name"], root, must_exist=False)
    lock = open(base / "driver.lock", "w")
    try:  # one driver per sweep: the store has one writer
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ScalingError(f"sweep {spec['name']!r} is already being run by another `scaling sweep run` "
                           f"(lock {base / 'driver.lock'}); watch it with `scaling sweep status {spec['name']}`") from None
    store.check_space()
    store.set_meta(spec=spec)
    store.sync(configs)
    table = store.runs().set_index("run_id")
    by_id = {c["run_id"]: c for c in configs}
    retries = int(spec["retries"])
    todo = [rid for rid in by_id if table.loc[rid, "status"] not in ("done", "diverged")
            and not (table.loc[rid, "status"] == "failed" and table.loc[rid, "attempts"] > retries)]
    attempts = {rid: int(table.loc[rid, "attempts"]) for rid in by_id}
    n_done = len(by_id) - len(todo)
    if not todo:
        lock.close()
        if progress:
            print(f"sweep {spec['name']}: all {len(by_id)} runs finished already")
        return store.runs()
    ex = get_executor(executor, workers=workers, threads=int(spec["threads_per_worker"]), folder=base / "submitit",
                      **executor_kwargs)
    bar = _bar(len(by_id), n_done, spec["name"], progress)
    futures: dict[cf.Future, str] = {}

    def submit(rid):
        store.set_status(rid, "running", attempt=True)
        attempts[rid] += 1
        futures[ex.submit(run_worker, by_id[rid], str(base / "runs" / rid), int(spec["threads_per_worker"]))] = rid

    try:
        for rid in todo:
            submit(rid)
        t_start = time.time()
        tokens_done = 0.0
        while futures:
            done, _ = cf.wait(list(futures), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                rid = futures.pop(fut)
                log = base / "runs" / rid / "log.jsonl"
                try:
                    result = fut.result()
                except Exception as exc:  # noqa: BLE001 - any failure is recorded with its traceback
                    err = "".join(traceback.format_exception(exc))[-4000:]
                    store.ingest_log(rid, log)
                    if attempts[rid] <= retries:
                        store.set_status(rid, "pending", error=err)
                        submit(rid)
                    else:
                        store.set_status(rid, "failed", error=err)
                        bar.update(1)
                    continue
                store.ingest_log(rid, log)
                store.set_status(rid, result["status"], result=result)
                tokens_done += by_id[rid]["D"]
                bar.update(1)
                if hasattr(bar, "set_postfix_str"):
                    bar.set_postfix_str(f"{tokens_done / max(time.time() - t_start, 1e-9):,.0f} tok/s")
    finally:
        bar.close()
        ex.shutdown()
        lock.close()
    return store.runs()


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _bar(total, initial, name, progress, unit="run", kind="sweep"):
    if not progress:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=initial, desc=f"{kind} {name}", unit=unit)


def status(name: str, root: str | Path = DEFAULT_ROOT) -> dict:
    """Counts by status and an ETA from the runs finished so far (tokens per second of wall time)."""
    store = open_store(name, root)
    runs = store.runs()
    # the store marks runs 'running' when submitted; a run has started once its worker wrote config.json
    runs_dir = sweep_dir(name, root) / "runs"
    started = runs["run_id"].map(lambda r: (runs_dir / r / "log.jsonl").exists())
    finishing = runs["run_id"].map(lambda r: (runs_dir / r / "result.json").exists())
    runs.loc[(runs["status"] == "running") & finishing, "status"] = "done"
    queued = (runs["status"] == "running") & ~started
    runs.loc[queued, "status"] = "pending"
    counts = {s: int((runs["status"] == s).sum()) for s in ("done", "running", "pending", "failed", "diverged")}
    cfg = runs["config"].map(json.loads)
    D = cfg.map(lambda c: c["D"] * c["N"])
    done = runs["status"].isin(["done", "diverged"])
    eta = None
    if done.any() and (~done).any():
        t = runs.loc[done, "updated"]
        span = t.max() - t.min()
        if span > 0 and done.sum() > 1:
            rate = D[done].sum() / span  # N*D per second across the sweep
            eta = float(D[~done].sum() / rate)
    return {"name": name, "total": int(len(runs)), **counts, "remaining": int((~done).sum()), "eta_s": eta}


def export(name: str, root: str | Path = DEFAULT_ROOT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs table, curves table). Runs: run_id, N (non-embedding), N_total, D, C, loss, config columns."""
    store = open_store(name, root)
    runs = store.runs()
    rows = []
    for r in runs.itertuples():
        c = json.loads(r.config)
        res = json.loads(r.result) if isinstance(r.result, str) else {}
        rows.append({
            "run_id": r.run_id, "N": c["N"], "N_total": c["N_total"], "D": c["D"], "C": c["C"],
            "C_kaplan": float(flops_kaplan(c["N"], c["D"], c["n_layer"], c["seq_len"], c["d_model"])),
            "loss": res.get("final_eval_loss"), "status": r.status, "budget": c.get("budget"),
            "n_layer": c["n_layer"], "d_model": c["d_model"], "n_head": c["n_head"], "family": c["family"],
            "seed": c["seed"], "lr": c["optimizer"]["lr"], "schedule": c["schedule"]["type"],
            "tokens_per_step": c["tokens_per_step"], "steps": c["steps"], "seq_len": c["seq_len"],
            "corpus": c["corpus"].get("name"), "tokens_per_s": res.get("tokens_per_s"),
        })
    table = pd.DataFrame(rows)
    curves = store.curves()
    return table, curves
