"""One invocation of a sweep kind's driver on the graph runner (scaling/sweep/graph.py), from lock to failures.

A kind's ``run_*`` function reads its definition and plans its cells; :func:`drive` does the rest the same way
for every kind: take the one-driver lock, refuse settings that would change finished cells, record the spec,
add new cells to the store, reset failed cells' attempts on ``retry_failed``, run what is unfinished, and turn
failures into one error that says what was kept and how to go on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import ScalingError
from .graph import check_unchanged, driver_lock, last_line, run_cells
from .store import Store


def drive(store: Store, spec: dict, cells: list[dict], base: Path, *, default_kind: str, label: str, what: str,
          changed_fn: Callable[[dict, dict], list], extend: str, busy: str, api: str, executor: str = "local",
          workers: int | None = None, progress: bool = True, retry_failed: bool = False,
          executor_kwargs: dict | None = None) -> dict:
    """Run every unfinished cell of ``cells`` under ``base`` (the store ``store``); returns :func:`run_cells`'s
    summary. ``label``: the progress bar's and messages' word for the kind (``finetune``); ``what``: the sweep
    in prose (``fine-tuning sweep``); ``changed_fn(old_spec, new_spec)``: the result-shaping settings that
    differ, ``extend``: what may change instead; ``busy``: the error when another driver holds the lock;
    ``api``: the Python call that retries failed cells (``run_finetune(..., retry_failed=True)``)."""
    with driver_lock(base, busy):
        check_unchanged(store, spec, base, changed_fn=changed_fn, kind=what, extend=extend)
        store.check_space()
        store.set_meta(spec=spec)
        store.sync(cells)
        if retry_failed:
            store.retry_failed()
        out = run_cells(store, cells, base, name=spec["name"], default_kind=default_kind, executor=executor,
                        workers=workers, threads=int(spec["threads_per_worker"]), retries=int(spec["retries"]),
                        progress=progress, label=label, unit="cell", executor_kwargs=executor_kwargs)
        if out["idle"] and not out["failed"] and progress:
            print(f"{label} {spec['name']}: all {len(cells)} cells finished already")
        failed = out["failed"]
        if failed:
            blocked = [c["run_id"] for c in cells if c["run_id"] not in out["finished"] + failed]
            errs = store.runs().set_index("run_id").loc[failed, "error"]
            again = (f"run again with --retry-failed ({api})" if out["idle"]
                     else "run again (add --retry-failed: a cell that failed all its attempts is not retried "
                          "otherwise)")
            raise ScalingError(f"{len(failed)} cell(s) failed ({', '.join(failed[:4])}{'...' if len(failed) > 4 else ''})"
                               f"; {len(blocked)} cell(s) waiting on them were not run. First error: "
                               f"{last_line(errs.iloc[0])}. Finished cells are kept: fix the cause and {again}")
    return out
