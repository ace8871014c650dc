"""One runner for every kind of sweep: a sweep is a graph of cells, run in dependency order.

A *cell* is one unit of work with an id (``run_id``), a kind (``kind``, a name in :data:`CELL_KINDS`) and the
ids of the cells it needs (``needs``). An independent pretraining run is a cell with no edges; a WSD cooldown
branch needs its stable run (whose checkpoints it starts from); the cells of an overoptimization sweep need
the policy, the data and the reward models they use. Fine-tuning or any other kind plugs in by registering a
:class:`CellKind` (how a cell runs, and how its result becomes rows of the export) and calling
:func:`run_cells`: the loop below never changes for a new kind.

The runner's rules, the same for every kind:

- **One driver per sweep.** :func:`driver_lock` holds an exclusive lock on ``<sweep>/driver.lock``; the store
  (one SQLite file, :class:`~scaling.sweep.store.Store`) has that one writer.
- **Resume.** A cell that is ``done`` (or ``diverged``) is never run again. A cell left ``running`` by a killed
  driver runs again: its worker resumes from what it left on disk (a checkpoint, or the result it wrote).
- **Retries: attempts persist in the store.** Each submission of a cell counts one attempt in the store's
  ``attempts`` column; a failed attempt is tried again while ``attempts <= retries``. A cell that failed all
  its attempts stays ``failed`` in later invocations (running the sweep again does not retry it) until
  ``retry_failed`` resets its attempts (``--retry-failed`` on the command line). An attempt stopped by
  Ctrl-C, SIGTERM or the driver's death is not counted.
- **Dependencies.** A cell is submitted once every cell it needs is ``done``; a cell whose need failed (or
  diverged) waits, ``pending``, and is reported as blocked.
- **Adding cells.** The graph is read from the definition at every invocation, and :meth:`Store.sync` adds the
  cells the store does not know as ``pending``: a sweep grows by adding cells (more sizes, seeds, or a later
  round of placement), never by changing finished ones.

``SweepInterrupted``, the progress bar, the lock, ``last_line`` and ``atomic_json`` are public here so every
sweep kind shares them.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import fcntl
import json
import os
import signal
import sys
import threading
import time
import traceback
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from ..errors import ScalingError
from .executors import get_executor

if TYPE_CHECKING:  # workers import this module for atomic_json: no pandas there
    from .store import Store

FINISHED = ("done", "diverged")


# ------------------------------------------------------------------ cell kinds
@dataclass(frozen=True)
class CellKind:
    """How one kind of cell runs and exports.

    ``run(cell, sweep_dir, threads) -> result dict``: runs (or resumes, or returns the saved result of) one cell in
    a worker process; a module-level function, since spawned workers receive it by reference. Its result has a
    ``status`` of ``done`` (the default) or ``diverged``.
    ``rows(cell, result, record, **options) -> list[dict]``: the cell's rows of the sweep's export (``record`` is
    its store row: status, attempts, error); ``None``: the cell exports nothing (a stable run, the data).
    ``log(cell, sweep_dir) -> Path | None``: a JSONL log of per-step records the store ingests as the cell's curve.
    ``tokens(cell) -> float``: training tokens the cell processes (the progress bar's rate); ``flops(cell)``: the
    FLOPs it trains (``flops_trained`` of the sweep's status).
    """

    name: str
    run: Callable[[dict, str, int], dict]
    rows: Callable[..., list] | None = None
    log: Callable[[dict, Path], Path | None] | None = None
    tokens: Callable[[dict], float] | None = None
    flops: Callable[[dict], float] | None = None


CELL_KINDS: dict[str, CellKind] = {}


def register_cell_kind(kind: CellKind) -> CellKind:
    """Make ``kind`` known by its name (a later registration of the same name replaces it)."""
    CELL_KINDS[kind.name] = kind
    return kind


def cell_kind(name: str) -> CellKind:
    if name not in CELL_KINDS:
        raise ScalingError(f"unknown cell kind {name!r} (known: {', '.join(sorted(CELL_KINDS))}); the package that "
                           "defines it registers it with scaling.sweep.graph.register_cell_kind when imported")
    return CELL_KINDS[name]


def kind_of(cell: dict, default: str) -> str:
    """A cell's kind: its ``kind`` key, else ``default`` (cells stored before kinds existed carry none)."""
    return cell.get("kind") or default


# -------------------------------------------------------------- shared helpers
class SweepChangedError(ScalingError):
    """A sweep was run again under its name with settings that change its runs' results."""


class SweepInterrupted(KeyboardInterrupt):
    """The driver was stopped (Ctrl-C or SIGTERM): its workers were stopped, finished cells are kept."""

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
def uninterrupted():
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


@contextlib.contextmanager
def driver_lock(base: Path, busy: str):
    """Hold ``base/driver.lock`` for the block: one driver per sweep. ``busy``: the error when another holds it."""
    base.mkdir(parents=True, exist_ok=True)
    lock = open(base / "driver.lock", "a+")  # not "w": a refused second driver must not wipe the holder's pid
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ScalingError(busy) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")  # for status: is a driver alive?
    lock.flush()
    try:
        yield
    finally:
        lock.close()


def driver_alive(base: Path) -> bool:
    """Whether the process that last took ``base/driver.lock`` is still alive (a driver killed with -9 is not)."""
    try:
        pid = int((base / "driver.lock").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def check_unchanged(store: Store, spec: dict, base: Path, changed_fn, kind: str = "sweep",
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


def last_line(err) -> str:
    """The last non-empty line of an error text (a traceback's message); '' for anything else."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()] if isinstance(err, str) else []
    return lines[-1] if lines else ""


def atomic_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file: a reader sees the old file or the new one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def run_once(d: Path, work: Callable[[], dict]) -> dict:
    """A cell's work in its directory ``d``, done once: under ``d/lock`` (a worker orphaned by a killed driver may
    still be on this cell: wait for it), the saved ``d/result.json`` if there is one, else ``work()``, whose result
    is written there atomically. What every cell kind's ``run`` wraps its work in."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = d / "result.json"
        if done.exists():
            return json.loads(done.read_text())
        result = work()
        atomic_json(done, result)
        return result


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def progress_bar(total: int, initial: int, name: str, progress: bool, unit: str = "run", kind: str = "sweep"):
    """A tqdm bar (``kind name``), or a stand-in that does nothing without ``progress`` or tqdm."""
    if not progress:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=initial, desc=f"{kind} {name}", unit=unit)


# --------------------------------------------------------------------- the loop
#: a driver restarts its pool after a worker died at most this many times in one invocation
MAX_POOL_RESTARTS = 50
WORKER_DIED = "its worker process died (killed, or out of memory?)"


class _PoolBroken(Exception):
    """The local worker pool broke (a worker died) with ``run_ids`` in it: not a failure of each of them."""

    def __init__(self, run_ids: list[str]):
        super().__init__(run_ids)
        self.run_ids = list(run_ids)


def run_cells(store: Store, cells: list[dict], base: Path, *, name: str, default_kind: str, executor: str = "local",
              workers: int | None = None, threads: int = 1, retries: int = 2, progress: bool = True,
              label: str = "sweep", unit: str = "run", executor_kwargs: dict | None = None) -> dict:
    """Run every unfinished cell of ``cells`` (already synced into ``store``) in dependency order.

    Returns ``{"finished", "failed", "blocked", "ran"}`` (cell ids) and ``idle`` (nothing was left to run). Ctrl-C or SIGTERM stops the workers at once
    and raises :class:`SweepInterrupted` (units ``unit + 's'``); a failure of the driver itself stops them too.
    """
    table = store.runs().set_index("run_id")
    by_id = {c["run_id"]: c for c in cells}
    status = {rid: str(table.loc[rid, "status"]) for rid in by_id}
    attempts = {rid: int(table.loc[rid, "attempts"]) for rid in by_id}
    kinds = {rid: cell_kind(kind_of(c, default_kind)) for rid, c in by_id.items()}
    for rid, c in by_id.items():
        unknown = [n for n in c.get("needs") or [] if n not in by_id]
        if unknown:
            raise ScalingError(f"cell {rid} needs {unknown}, which the sweep does not define")

    def runnable(rid):
        return status[rid] not in FINISHED and not (status[rid] == "failed" and attempts[rid] > retries)

    todo = [rid for rid in by_id if runnable(rid)]
    # longest first (by training tokens, then FLOPs): the pool then ends with short runs on every worker instead of
    # one long run on one of them while the others idle (the order changes no run's result)
    todo.sort(key=lambda rid: tuple(-(f(by_id[rid]) if f else 0.0) for f in (kinds[rid].tokens, kinds[rid].flops)))
    out = {"finished": [r for r in by_id if status[r] in FINISHED], "failed": [], "blocked": [], "ran": [],
           "idle": not todo}
    if not todo:
        out["failed"] = [r for r in by_id if status[r] == "failed"]
        return out
    ex = get_executor(executor, workers=workers, threads=int(threads), folder=base / "submitit",
                      **(executor_kwargs or {}))
    bar = progress_bar(len(by_id), len(by_id) - len(todo), name, progress, unit=unit, kind=label)
    futures: dict[cf.Future, str] = {}
    waiting = list(todo)
    stopped = False
    t_start, tokens_done = time.time(), 0.0

    def log_of(rid):
        k = kinds[rid]
        return k.log(by_id[rid], base) if k.log else None

    def ingest(rid):
        path = log_of(rid)
        if path is not None:
            store.ingest_log(rid, path)

    submitted: dict[str, float] = {}

    def submit(rid):
        submitted[rid] = time.time()
        store.set_status(rid, "running", attempt=True)
        attempts[rid] += 1
        status[rid] = "running"
        try:
            futures[ex.submit(kinds[rid].run, by_id[rid], str(base), int(threads))] = rid
        except BrokenProcessPool:  # the pool broke before this run reached it
            raise _PoolBroken([rid]) from None

    restarts = 0
    suspects: set[str] = set()  # cells running when a worker died beside others: each runs alone until cleared

    def recover(exc) -> set:
        """A worker died: shut the broken pool down and requeue what was in it. A cell that had started this attempt
        (its log written since it was submitted) may be what killed it (out of memory): when it was the only one
        running, its attempt counts, so one that kills its worker every time fails after its retries; when several
        were running, none is charged and each becomes a suspect that runs alone, where a death is its own. The
        others lose nothing. Returns the cells that had started (none: no worker could start at all)."""
        nonlocal ex
        ex.shutdown(kill=True)
        in_flight = set(futures.values()) | set(exc.run_ids)
        futures.clear()
        started = {rid for rid in in_flight if (p := log_of(rid)) is not None and Path(p).exists()
                   and Path(p).stat().st_mtime >= submitted.get(rid, 0.0)}
        charged = started if len(started) == 1 else set()
        free = in_flight - charged
        store.requeue(free)
        for rid in free:
            attempts[rid] -= 1
            status[rid] = "pending"
        suspects.update(started - charged)
        for rid in sorted(started):
            ingest(rid)
        for rid in charged:
            failed = attempts[rid] > retries
            store.set_status(rid, "failed" if failed else "pending", error=WORKER_DIED)
            status[rid] = "failed" if failed else "pending"
            if failed:
                out["failed"].append(rid)
                bar.update(1)
        back = [r for r in sorted(in_flight) if status[r] == "pending"]
        waiting[:0] = [r for r in back if r not in suspects]  # the innocent first, the suspects after the rest
        waiting.extend(r for r in back if r in suspects)
        exc.in_flight, exc.started = in_flight, started
        if started:
            say = (f"a worker process died (killed, or out of memory?) running {', '.join(sorted(started))}: "
                   + ("its attempt counts" if charged else "each runs alone from now on, to tell which one it was")
                   + "; restarting the pool and going on")
            bar.write(say) if hasattr(bar, "write") else print(say, file=sys.stderr)
        return started

    def blocked(rid):
        return any(status[n] in ("failed", "diverged") or n in out["blocked"] for n in by_id[rid].get("needs") or [])

    try:
        with stoppable():
            while True:  # the loop of the pool; a worker's death restarts it (recover) and the loop goes on
                try:
                    while True:
                        for rid in list(waiting):
                            needs = by_id[rid].get("needs") or []
                            if any(futures[f] in suspects for f in futures):
                                break  # a suspect runs alone
                            if rid in suspects and futures:
                                continue  # it waits for the pool to empty
                            if blocked(rid):
                                waiting.remove(rid)
                                out["blocked"].append(rid)
                                bar.update(1)
                            elif all(status[n] == "done" for n in needs):
                                waiting.remove(rid)
                                submit(rid)
                        if not futures:
                            break
                        # with a timeout: a Ctrl-C that the kernel hands to another thread (the pool's manager, a
                        # progress bar) only sets a flag; a main thread blocked on a lock without one would never see it
                        done, _ = cf.wait(list(futures), timeout=0.25, return_when=cf.FIRST_COMPLETED)
                        # in the order submitted (``done`` is a set): the store then records runs that finish
                        # together in one order on every machine
                        broke = []
                        for fut in [f for f in futures if f in done]:
                            rid = futures.pop(fut)
                            try:
                                result = fut.result()
                            except Exception as exc:  # noqa: BLE001 - any failure is recorded with its traceback
                                if isinstance(exc, BrokenProcessPool):  # the pool, not (only) this run: its
                                    broke.append(rid)  # retries would fail too; the batch's finished runs first
                                    continue
                                err = "".join(traceback.format_exception(exc))[-4000:]
                                ingest(rid)
                                if attempts[rid] <= retries:  # retried from the queue: a submit here could
                                    store.set_status(rid, "pending", error=err)  # meet a pool that just broke
                                    status[rid] = "pending"
                                    waiting.insert(0, rid)
                                else:
                                    store.set_status(rid, "failed", error=err)
                                    status[rid] = "failed"
                                    out["failed"].append(rid)
                                    bar.update(1)
                                continue
                            ingest(rid)
                            st = result.get("status", "done") if isinstance(result, dict) else "done"
                            store.set_status(rid, st, result=result)
                            status[rid] = st
                            out["ran"].append(rid)
                            out["finished"].append(rid)
                            bar.update(1)
                            if kinds[rid].tokens and hasattr(bar, "set_postfix_str"):
                                tokens_done += kinds[rid].tokens(by_id[rid])
                                bar.set_postfix_str(f"{tokens_done / max(time.time() - t_start, 1e-9):,.0f} tok/s")
                        if broke:
                            raise _PoolBroken(broke)
                    break
                except _PoolBroken as exc:
                    started = recover(exc)
                    restarts += 1
                    if not started or restarts > MAX_POOL_RESTARTS:
                        raise
                    ex = get_executor(executor, workers=workers, threads=int(threads), folder=base / "submitit",
                                      **(executor_kwargs or {}))
    except KeyboardInterrupt as exc:
        with uninterrupted():
            stopped = True
            ex.shutdown(kill=True)
            stopped_ids = set(futures.values())
            store.requeue(stopped_ids)
            for rid in stopped_ids:  # what the stopped workers had logged so far
                ingest(rid)
            st = store.runs().set_index("run_id")["status"].reindex(list(by_id))
        raise SweepInterrupted(int(st.isin(FINISHED).sum()), int((st == "failed").sum()),
                               int(st.isin(["pending", "running"]).sum()), getattr(exc, "signum", signal.SIGINT),
                               unit=unit + "s") from None
    except _PoolBroken as exc:  # recover() has done the bookkeeping; no worker could start, or too many restarts
        stopped = True
        in_flight, started = exc.in_flight, exc.started
        raise ScalingError(f"a worker process died (killed, out of memory, or unable to start; a script fed on stdin "
                           "cannot be imported again by the spawned workers: run it from a file or the CLI). "
                           f"{len(in_flight)} {unit}(s) were in the pool: those not yet started are pending again with "
                           f"no attempt counted, {len(started)} that had started count one (a {unit} that kills its "
                           "worker every time fails after its retries); run the sweep again to resume") from None
    except BaseException:
        stopped = True
        ex.shutdown(kill=True)  # nobody would record what the workers still do
        raise
    finally:
        bar.close()
        if not stopped:
            ex.shutdown()
    out["failed"] = [r for r in by_id if status[r] == "failed"]
    return out


# ------------------------------------------------------------ status and export
def records(store: Store, default_kind: str) -> Iterable[tuple[dict, dict, object]]:
    """(cell, result, store row) of every cell in the store, in id order; ``result`` is {} until it finished."""
    for r in store.runs().itertuples():
        cell = json.loads(r.config)
        cell.setdefault("kind", default_kind)
        res = json.loads(r.result) if isinstance(r.result, str) else {}
        yield cell, res, r


def cell_status(store: Store, base: Path, default_kind: str, started=None, finishing=None) -> dict:
    """Counts by status (done, running, pending, failed, diverged), by kind, the failed cells with the last line
    of their error, and FLOPs: ``flops_trained`` (what the finished cells trained, every cell once) and
    ``flops_planned`` (all cells of the sweep), for kinds that count them.

    ``started(cell, base)`` / ``finishing(cell, base)``: whether a cell marked ``running`` has started in its worker
    (else it is shown ``pending``: queued) and has written its result (shown ``done``)."""
    import pandas as pd

    rows = []
    for cell, res, r in records(store, default_kind):
        st = r.status
        if st == "running" and finishing is not None and finishing(cell, base):
            st = "done"
        elif st == "running" and started is not None and not started(cell, base):
            st = "pending"
        kind = CELL_KINDS.get(cell["kind"])
        flops = kind.flops(cell) if kind is not None and kind.flops else None
        seconds = res.get("seconds") if isinstance(res, dict) else None
        timed = flops  # what ``seconds`` (the last attempt's wall time) trained: a resumed run, the rest of it
        if seconds is not None and flops is not None and res.get("resumed_from") and cell.get("steps"):
            timed = flops * max(0.0, 1 - float(res["resumed_from"]) / float(cell["steps"]))
        rows.append({"run_id": r.run_id, "kind": cell["kind"], "status": st, "attempts": int(r.attempts),
                     "error": r.error, "updated": r.updated, "flops": flops, "seconds": seconds,
                     "timed_flops": timed, "cell": cell})
    df = pd.DataFrame(rows, columns=["run_id", "kind", "status", "attempts", "error", "updated", "flops", "seconds",
                                     "timed_flops", "cell"])
    counts = {s: int((df["status"] == s).sum()) for s in ("done", "running", "pending", "failed", "diverged")}
    by_kind = {k: {s: int(n) for s, n in g["status"].value_counts().items()} for k, g in df.groupby("kind", sort=False)}
    finished = df["status"].isin(FINISHED)
    known = df["flops"].notna()
    failed = [{"run_id": r.run_id, "attempts": int(r.attempts), "error": last_line(r.error)}
              for r in df[df["status"] == "failed"].itertuples()]
    return {"total": int(len(df)), **counts, "remaining": int((~finished).sum()), "kinds": by_kind,
            "failed_cells": failed,
            "flops_trained": float(df.loc[finished & known, "flops"].sum()) if known.any() else None,
            "flops_planned": float(df.loc[known, "flops"].sum()) if known.any() else None, "_table": df}


def export_rows(store: Store, default_kind: str, **options) -> list[dict]:
    """The export's rows: each cell's kind turns its (config, result, store row) into rows (none for kinds
    without ``rows``)."""
    out = []
    for cell, res, r in records(store, default_kind):
        kind = cell_kind(cell["kind"])
        if kind.rows is not None:
            out.extend(kind.rows(cell, res, r, **options))
    return out
