"""Run a sweep: expand the definition, skip what is done, run the rest, retry failures, record everything.

The store's run table is the source of truth. A run left ``running`` by a killed
driver is simply run again: its worker resumes from the last checkpoint, or
returns the result it already wrote.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import fcntl
import json
import signal
import threading
import time
import traceback
from pathlib import Path

import pandas as pd

from ..counting import flops_kaplan
from ..errors import ScalingError
from .executors import get_executor
from .spec import changed_settings, expand, load_spec
from .store import Store
from .train import run_worker

DEFAULT_ROOT = Path("out/sweeps")
#: the store's format: 2 evaluates on windows spread over the held-out split (with eval_se) and keeps one batch
#: size per sweep by default; stores of format 1 (no "format" in their meta) evaluated on the split's first windows
STORE_FORMAT = 2


def sweep_dir(name: str, root: str | Path = DEFAULT_ROOT) -> Path:
    return Path(root) / name


def open_store(name: str, root: str | Path = DEFAULT_ROOT, must_exist: bool = True) -> Store:
    path = sweep_dir(name, root) / "sweep.sqlite"
    if must_exist and not path.exists():
        raise ScalingError(f"no sweep named {name!r} under {root} (expected {path}); run it with `scaling sweep run`")
    return Store(path)


class SweepChangedError(ScalingError):
    """A sweep was run again under its name with settings that change its runs' results."""


class SweepInterrupted(KeyboardInterrupt):
    """The driver was stopped (Ctrl-C or SIGTERM): its workers were stopped, finished runs are kept."""

    def __init__(self, finished: int, failed: int, pending: int, signum: int = signal.SIGINT, unit: str = "runs"):
        self.finished, self.failed, self.pending, self.signum, self.unit = finished, failed, pending, signum, unit
        super().__init__(self.summary())

    def summary(self) -> str:
        return (f"{self.finished} {self.unit} finished, " + (f"{self.failed} failed, " if self.failed else "")
                + f"{self.pending} pending")


class _Terminated(KeyboardInterrupt):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def stoppable():
    """SIGTERM stops the driver the way Ctrl-C does (a KeyboardInterrupt carrying the signal)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Terminated(signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _uninterrupted():
    """While the driver stops its workers and writes down what stopped, a second Ctrl-C waits."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def check_unchanged(store: Store, spec: dict, base: Path, changed_fn=changed_settings, kind: str = "sweep",
                    extend: str = "adding sizes, tokens, budgets or seeds with the same settings extends it") -> None:
    """Refuse a definition whose result-shaping settings differ from the ones this sweep already ran with."""
    known = store.meta().get("spec")
    if known is None:
        return
    changed = changed_fn(known, spec)
    if changed:
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise SweepChangedError(
            f"{kind} {spec['name']!r} under {base} was run with other settings ({'; '.join(changed[:4])}{more}); "
            "running it would mix two experiments in one store and export. To start a new sweep, give the "
            f"definition a new `name:` (or move {base} aside); to continue this one, revert those settings ({extend})")


def _last_line(err) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()] if isinstance(err, str) else []
    return lines[-1] if lines else ""


def _bf16_supported() -> bool:
    """Whether this machine's first GPU supports bfloat16, asked in a child process: the driver itself never
    starts CUDA (its context would hold memory on the GPU for the whole sweep)."""
    import subprocess
    import sys

    code = "import sys, torch; sys.exit(0 if torch.cuda.is_bf16_supported() else 3)"
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def check_device(spec: dict, executor: str = "local") -> None:
    """Refuse ``device`` settings this machine cannot honour before anything trains (not in every worker, once
    per retry). Only for the local executor: on Slurm the jobs' machines decide. The GPUs are counted as the
    executor counts them (no CUDA context in the driver)."""
    if executor != "local" or spec["trainer"] != "transformer":  # the toy trainer runs anywhere
        return
    from types import SimpleNamespace

    from . import executors
    from .train import device_plan

    want = spec["device"]
    gpus = executors.gpu_count() if want["type"] != "cpu" else 0
    bf16 = bool(gpus) and want["precision"] == "bf16" and _bf16_supported()  # asked only when it matters
    machine = SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: bool(gpus), is_bf16_supported=lambda: bf16))
    device_plan({"device": want}, machine)  # the trainer's own decision, on what this machine has


def run_sweep(definition, *, executor: str = "local", workers: int | None = None, root: str | Path = DEFAULT_ROOT,
              progress: bool = True, retry_failed: bool = False, **executor_kwargs) -> pd.DataFrame:
    """Run every unfinished run of a sweep; returns the run table.

    ``retry_failed``: runs that failed all their attempts in an earlier invocation get ``retries`` fresh ones.
    Ctrl-C or SIGTERM stops the workers at once and raises :class:`SweepInterrupted` (a KeyboardInterrupt);
    running the sweep again resumes.
    """
    spec = load_spec(definition)
    check_device(spec, executor)
    if spec["trainer"] == "transformer":  # one line naming the extra, not a traceback from every worker
        from .._extras import require

        require("torch", "transformers")
    configs = expand(spec)
    base = sweep_dir(spec["name"], root)
    store = open_store(spec["name"], root, must_exist=False)
    lock = open(base / "driver.lock", "w")
    try:  # one driver per sweep: the store has one writer
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ScalingError(f"sweep {spec['name']!r} is already being run by another `scaling sweep run` "
                           f"(lock {base / 'driver.lock'}); watch it with `scaling sweep status {spec['name']}`") from None
    try:
        meta = store.meta()
        if "spec" in meta and meta.get("format", 1) != STORE_FORMAT:
            raise SweepChangedError(
                f"sweep {spec['name']!r} under {base} was run by an earlier version of the package, which evaluated "
                "on the first windows of the held-out split (now a fixed sample spread over all of it, with eval_se) "
                "and chose the batch per run; new runs would not be comparable with its runs. Export what it has "
                f"(`scaling sweep export {spec['name']}`), then move {base} aside, or give the definition a new `name:`")
        check_unchanged(store, spec, base)
        store.check_space()
        store.set_meta(spec=spec, format=STORE_FORMAT)
        configs = store.same_runs(configs)  # a setting the store has under another id is that run
        store.sync(configs)
        if retry_failed:
            store.retry_failed()
        return _drive(store, spec, configs, base, executor, workers, progress, executor_kwargs)
    finally:
        lock.close()


def _drive(store, spec, configs, base, executor, workers, progress, executor_kwargs) -> pd.DataFrame:
    table = store.runs().set_index("run_id")
    by_id = {c["run_id"]: c for c in configs}
    retries = int(spec["retries"])
    todo = [rid for rid in by_id if table.loc[rid, "status"] not in ("done", "diverged")
            and not (table.loc[rid, "status"] == "failed" and table.loc[rid, "attempts"] > retries)]
    attempts = {rid: int(table.loc[rid, "attempts"]) for rid in by_id}
    n_done = len(by_id) - len(todo)
    if not todo:
        failed = [rid for rid in by_id if table.loc[rid, "status"] == "failed"]
        if progress and failed:
            print(f"sweep {spec['name']}: nothing to run; {len(failed)} run(s) failed all {retries + 1} attempts "
                  f"(last error: {_last_line(table.loc[failed[-1], 'error'])}). Fix the cause, then run again with "
                  "--retry-failed (run_sweep(..., retry_failed=True))")
        elif progress:
            print(f"sweep {spec['name']}: all {len(by_id)} runs finished already")
        return store.runs()
    executor_kwargs = {"workers_per_gpu": int(spec["workers_per_gpu"]), **executor_kwargs}
    ex = get_executor(executor, workers=workers, threads=int(spec["threads_per_worker"]), folder=base / "submitit",
                      **executor_kwargs)
    bar = _bar(len(by_id), n_done, spec["name"], progress)
    futures: dict[cf.Future, str] = {}
    stopped = False

    def submit(rid):
        store.set_status(rid, "running", attempt=True)
        attempts[rid] += 1
        futures[ex.submit(run_worker, by_id[rid], str(base / "runs" / rid), int(spec["threads_per_worker"]))] = rid

    try:
        with stoppable():
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
    except KeyboardInterrupt as exc:
        with _uninterrupted():
            stopped = True
            ex.shutdown(kill=True)
            store.requeue(set(futures.values()))
            for rid in set(futures.values()):  # what the stopped workers had logged so far
                store.ingest_log(rid, base / "runs" / rid / "log.jsonl")
            st = store.runs()["status"]
        raise SweepInterrupted(int(st.isin(["done", "diverged"]).sum()), int((st == "failed").sum()),
                               int(st.isin(["pending", "running"]).sum()), getattr(exc, "signum", signal.SIGINT)
                               ) from None
    except BaseException:
        stopped = True
        ex.shutdown(kill=True)  # nobody would record what the workers still do
        raise
    finally:
        bar.close()
        if not stopped:
            ex.shutdown()
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
    failed = runs[runs["status"] == "failed"]
    failed_runs = [{"run_id": r.run_id, "attempts": int(r.attempts), "error": _last_line(r.error)}
                   for r in failed.itertuples()]
    return {"name": name, "total": int(len(runs)), **counts, "remaining": int((~done).sum()), "eta_s": eta,
            "failed_runs": failed_runs}


def export(name: str, root: str | Path = DEFAULT_ROOT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs table, curves table).

    Runs: run_id, N (non-embedding parameters), N_total (all of them), vocab_size, D, compute three ways: C = 6 N D
    (Kaplan et al.'s, non-embedding), C_kaplan (plus the attention term 6 n_layer n_ctx d_model per token) and C_total
    (6 (N + vocab_size d_model) D plus the attention term: the output layer's FLOPs counted too, as Hoffmann et al.
    count them), loss (the final evaluation on the fixed held-out sample) and eval_se (its standard error), config
    columns, and ``error`` (the last line of a failed run's error).

    The hyperparameters of each run are columns too: ``lr`` (the peak learning rate it trained with, a rule
    resolved), ``batch`` (tokens per step, the same as ``tokens_per_step``) and ``warmup`` (as schedule.warmup:
    a fraction of the steps, or steps), so the table is fitted by ``scaling fit RUNS --law hparams`` as it is.
    ``D_grid`` is the grid's D of the run's cell (the grid.tokens value, or budget / 6N): with a batch axis the
    runs of one cell train D rounded to whole batches, a little apart; stores from before it was recorded
    give D."""
    store = open_store(name, root)
    runs = store.runs()
    rows = []
    for r in runs.itertuples():
        c = json.loads(r.config)
        res = json.loads(r.result) if isinstance(r.result, str) else {}
        vocab = int(c.get("vocab_size", 256))
        rows.append({
            "run_id": r.run_id, "N": c["N"], "N_total": c["N_total"], "vocab_size": vocab, "D": c["D"], "C": c["C"],
            "C_kaplan": float(flops_kaplan(c["N"], c["D"], c["n_layer"], c["seq_len"], c["d_model"])),
            "C_total": float(flops_kaplan(c["N"] + vocab * c["d_model"], c["D"], c["n_layer"], c["seq_len"],
                                          c["d_model"])),
            "loss": res.get("final_eval_loss"), "eval_se": res.get("eval_se"), "eval_tokens": res.get("eval_tokens"),
            "status": r.status, "budget": c.get("budget"),
            "n_layer": c["n_layer"], "d_model": c["d_model"], "n_head": c["n_head"], "family": c["family"],
            "seed": c["seed"], "lr": c["optimizer"]["lr"], "schedule": c["schedule"]["type"],
            "tokens_per_step": c["tokens_per_step"], "steps": c["steps"], "seq_len": c["seq_len"],
            "batch": c["tokens_per_step"], "warmup": c["schedule"].get("warmup"), "D_grid": c.get("D_grid", c["D"]),
            "corpus": c["corpus"].get("name"), "tokens_per_s": res.get("tokens_per_s"),
            "error": _last_line(r.error) or None if r.status == "failed" else None,
        })
    table = pd.DataFrame(rows)
    curves = store.curves()
    return table, curves
