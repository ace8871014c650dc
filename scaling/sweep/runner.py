"""Run a pretraining sweep: expand the definition into cells, skip what is done, run the rest on the graph runner.

The loop, the lock, the retry rule (attempts persist in the store), the progress bar and Ctrl-C handling are
the graph runner's (scaling/sweep/graph.py), shared with every other kind of sweep. The store's run table is the
source of truth. A run left ``running`` by a killed driver is simply run again: its worker resumes from the last
checkpoint, or returns the result it already wrote.

Cell kinds registered here: ``run`` (an independent run: no edges), ``stable`` (the warmup-stable run of a size
with WSD branches) and ``branch`` (a cooldown branch, needing its stable run's checkpoint; scaling/sweep/branches.py).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..counting import flops_kaplan
from .branches import trained_tokens
from .graph import (CellKind, SweepChangedError, SweepInterrupted, cell_status, check_unchanged, driver_alive,
                    driver_lock, export_rows, last_line, records, register_cell_kind, run_cells, stoppable)
from .spec import changed_settings, expand, load_spec
from .store import Store, open_named
from .train import run_cell

__all__ = ["run_sweep", "status", "export", "open_store", "sweep_dir", "check_device", "SweepChangedError",
           "SweepInterrupted", "stoppable", "check_unchanged", "DEFAULT_ROOT"]

DEFAULT_ROOT = Path("out/sweeps")
#: the store's format: 2 evaluates on windows spread over the held-out split (with eval_se) and keeps one batch
#: size per sweep by default; stores of format 1 (no "format" in their meta) evaluated on the split's first windows
STORE_FORMAT = 2
#: a pretraining cell without a ``kind`` is an independent run (every cell of a sweep from before kinds existed)
RUN = "run"


def sweep_dir(name: str, root: str | Path = DEFAULT_ROOT) -> Path:
    return Path(root) / name


def open_store(name: str, root: str | Path = DEFAULT_ROOT, must_exist: bool = True) -> Store:
    return open_named(root, name, "sweep", "scaling sweep run", must_exist)


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
    """Run every unfinished run of a sweep; returns the sweep store's table of runs: one row per run with
    ``run_id``, ``status``, ``attempts``, ``error`` (the last failure's traceback, kept after a retry succeeds) and
    ``config``/``result`` as JSON text. What a fit reads (one row per run with N, D, C, loss, eval_se, seed, ...)
    and the curves come from :func:`export` (``runs, curves = export(name, root)``).

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
    if spec["trainer"] == "transformer":
        warn_repeated_data(spec, configs)
    base = sweep_dir(spec["name"], root)
    store = open_store(spec["name"], root, must_exist=False)
    with driver_lock(base, f"sweep {spec['name']!r} is already being run by another `scaling sweep run` (lock "
                           f"{base / 'driver.lock'}); watch it with `scaling sweep status {spec['name']}`"):
        meta = store.meta()
        if "spec" in meta and meta.get("format", 1) != STORE_FORMAT:
            raise SweepChangedError(
                f"sweep {spec['name']!r} under {base} was run by an earlier version of the package, which evaluated "
                "on the first windows of the held-out split (now a fixed sample spread over all of it, with eval_se) "
                "and chose the batch per run; new runs would not be comparable with its runs. Export what it has "
                f"(`scaling sweep export {spec['name']}`), then move {base} aside, or give the definition a new `name:`")
        check_unchanged(store, spec, base, changed_settings)
        known = ((meta.get("spec") or {}).get("corpus") or {}).get("fingerprint")
        if known and spec["corpus"].get("fingerprint") not in (None, known):
            # the same tokens (check_unchanged compared them), fingerprinted as an earlier version of the package
            # did: keep that fingerprint, which the store's run ids were made with, so no run is trained again
            import warnings

            spec["corpus"]["fingerprint"] = known
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # said when the spec was first expanded
                configs = expand(spec)
        store.check_space()
        store.set_meta(spec=spec, format=STORE_FORMAT)
        configs = store.same_runs(configs)  # a setting the store has under another id is that run
        store.sync(configs)
        from .adaptive import added_cells  # runs an adaptive round added (scaling sweep extend): run them too

        configs += [{**c, "device": dict(spec["device"])} for c in added_cells(store, {c["run_id"] for c in configs})]
        if retry_failed:
            store.retry_failed()
        out = run_cells(store, configs, base, name=spec["name"], default_kind=RUN, executor=executor,
                        workers=workers, threads=int(spec["threads_per_worker"]), retries=int(spec["retries"]),
                        progress=progress, label="sweep", unit="run",
                        executor_kwargs={"workers_per_gpu": int(spec["workers_per_gpu"]), **executor_kwargs})
        if progress and out["idle"]:
            _nothing_to_run(spec, store, configs, out)
        if progress and out["blocked"]:
            print(f"sweep {spec['name']}: {len(out['blocked'])} cooldown branch(es) wait on a stable run that failed or "
                  f"diverged (`scaling sweep status {spec['name']}` names it); they run once it is done")
        return store.runs()


def warn_repeated_data(spec: dict, configs: list[dict]) -> None:
    """One warning when runs train on more tokens than the corpus's training split holds: they see it more than once
    (batches are windows drawn at random), and repeated data changes the loss a law is fitted to (Muennighoff et
    al. 2023). Opens the corpus as a worker would (memory-mapped; a built-in corpus is built once and cached)."""
    import warnings

    from ..errors import ScalingWarning
    from .corpus import load_corpus

    train = len(load_corpus(spec["corpus"])[0])
    over = [c for c in configs if c["D"] > train]
    if over:
        top = max(c["D"] for c in over)
        warnings.warn(f"{len(over)} of {len(configs)} runs train on more tokens than the corpus's training split holds "
                      f"({train:,}): up to {top:,.0f} tokens, {top / train:.1f} passes over it. Repeated data changes "
                      "the loss a scaling law is fitted to; give more text (or fewer grid tokens) unless repetition is "
                      "what the sweep studies", ScalingWarning, stacklevel=3)


def _nothing_to_run(spec: dict, store: Store, configs: list[dict], out: dict) -> None:
    retries = int(spec["retries"])
    if out["failed"]:
        errors = store.runs().set_index("run_id")["error"]
        print(f"sweep {spec['name']}: nothing to run; {len(out['failed'])} run(s) failed all {retries + 1} attempts "
              f"(last error: {last_line(errors.loc[out['failed'][-1]])}). Fix the cause, then run again with "
              "--retry-failed (run_sweep(..., retry_failed=True))")
    elif not out["blocked"]:
        print(f"sweep {spec['name']}: all {len(configs)} runs finished already")


def _log(cell: dict, base: Path) -> Path:
    return Path(base) / "runs" / cell["run_id"] / "log.jsonl"


def _flops_trained(cell: dict) -> float:
    """6 N x the tokens the cell trains itself (a branch: its cooldown; a stable run: up to its last branch point)."""
    return 6.0 * float(cell["N"]) * trained_tokens(cell)


def _run_row(c: dict, res: dict, r) -> list[dict]:
    """A run's row of the runs table (an independent run or a branch: both are one (N, D) cell of the grid)."""
    vocab = int(c.get("vocab_size", 256))
    return [{
        "run_id": r.run_id, "N": c["N"], "N_total": c["N_total"], "vocab_size": vocab, "D": c["D"], "C": c["C"],
        "C_kaplan": float(flops_kaplan(c["N"], c["D"], c["n_layer"], c["seq_len"], c["d_model"])),
        "C_total": float(flops_kaplan(c["N"] + vocab * c["d_model"], c["D"], c["n_layer"], c["seq_len"],
                                      c["d_model"])),
        "loss": res.get("final_eval_loss"), "eval_se": res.get("eval_se"), "eval_tokens": res.get("eval_tokens"),
        "status": r.status, "budget": c.get("budget"),
        "n_layer": c["n_layer"], "d_model": c["d_model"], "n_head": c["n_head"], "family": c["family"],
        "seed": c["seed"], "lr": c["optimizer"]["lr"], "lr_mult": c.get("lr_mult"),
        "schedule": c["schedule"]["type"],
        "tokens_per_step": c["tokens_per_step"], "steps": c["steps"], "seq_len": c["seq_len"],
        "batch": c["tokens_per_step"], "warmup": c["schedule"].get("warmup"), "D_grid": c.get("D_grid", c["D"]),
        "corpus": c["corpus"].get("name"), "tokens_per_s": res.get("tokens_per_s"),
        "error": last_line(r.error) or None if r.status == "failed" else None,
        "flops": float(c["C"]), "flops_trained": _flops_trained(c),
        "branch_start": c["branch"]["start"] if c.get("branch") else None,
        "_stable": c["branch"]["stable"] if c.get("branch") else None,
        "round": int(c.get("round") or 0),  # the adaptive round that added the run; 0: the definition's grid
    }]


for _kind in (CellKind(RUN, run_cell, rows=_run_row, log=_log, tokens=trained_tokens, flops=_flops_trained),
              CellKind("stable", run_cell, rows=None, log=None, tokens=trained_tokens, flops=_flops_trained),
              CellKind("branch", run_cell, rows=_run_row, log=_log, tokens=trained_tokens, flops=_flops_trained)):
    register_cell_kind(_kind)


def status(name: str, root: str | Path = DEFAULT_ROOT) -> dict:
    """Counts by status, an ETA from the cells finished so far (FLOPs per second of wall time), and compute:
    ``flops`` (what the sweep's runs would cost trained alone, 6 N D each), ``flops_trained`` (what the finished
    cells trained: each stable run once plus every branch) and ``flops_planned`` (all cells, finished or not).
    ``kinds``: counts by cell kind (run; stable and branch with WSD branches)."""
    store = open_store(name, root)
    runs_dir = sweep_dir(name, root) / "runs"
    # the store marks runs 'running' when submitted; a run has started once its worker wrote its log
    st = cell_status(store, sweep_dir(name, root), RUN,
                     started=lambda c, base: (runs_dir / c["run_id"] / "log.jsonl").exists(),
                     finishing=lambda c, base: (runs_dir / c["run_id"] / "result.json").exists())
    df = st.pop("_table")
    done = df["status"].isin(["done", "diverged"])
    eta = None
    if done.any() and (~done).any():
        # one worker's speed (FLOPs per second of its runs' own wall time), times the runs in flight: the time
        # between the first and the last finish left the first run's own time out (3x too fast early on)
        timed = done & pd.to_numeric(df["seconds"], errors="coerce").gt(0) & df["timed_flops"].notna()
        left = ~done & (df["status"] != "failed")  # a failed run is not trained again without --retry-failed
        if timed.any():
            rate = df.loc[timed, "timed_flops"].sum() / pd.to_numeric(df.loc[timed, "seconds"]).sum()
            eta = float(df.loc[left, "flops"].sum() / rate / max(1, st["running"]))
    rows = df["kind"] != "stable"
    flops = float(df.loc[rows, "cell"].map(lambda c: float(c["C"])).sum())
    failed = st.pop("failed_cells")
    alive = driver_alive(sweep_dir(name, root))
    if not alive:
        eta = None  # nothing is running towards it
    return {"name": name, "total": st["total"], **{k: st[k] for k in ("done", "running", "pending", "failed",
                                                                       "diverged")},
            "driver": alive,
            "remaining": st["remaining"], "eta_s": eta, "failed_runs": failed, "kinds": st["kinds"],
            "flops": flops, "flops_trained": st["flops_trained"], "flops_planned": st["flops_planned"]}


def export(name: str, root: str | Path = DEFAULT_ROOT, *, folder: str | Path | None = None
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs table, curves table): one row per (N, D) run of the grid (an independent run or a WSD branch).

    Runs: run_id, N (non-embedding parameters), N_total (all of them), vocab_size, D, compute three ways: C = 6 N D
    (Kaplan et al.'s, non-embedding), C_kaplan (plus the attention term 6 n_layer n_ctx d_model per token) and C_total
    (6 (N + vocab_size d_model) D plus the attention term: the output layer's FLOPs counted too, as Hoffmann et al.
    count them), loss (the final evaluation on the fixed held-out sample) and eval_se (its standard error), config
    columns, and ``error`` (the last line of a failed run's error).

    The hyperparameters of each run are columns too: ``lr`` (the peak learning rate it trained with, a rule
    resolved; ``lr_mult`` the grid.lr_mult value that scaled it, else empty), ``batch`` (tokens per step, the same as
    ``tokens_per_step``) and ``warmup`` (as schedule.warmup:
    a fraction of the steps, or steps), so the table is fitted by ``scaling fit RUNS --law hparams`` as it is.
    ``D_grid`` is the grid's D of the run's cell (the grid.tokens value, or budget / 6N): with a batch axis the
    runs of one cell train D rounded to whole batches, a little apart; stores from before it was recorded
    give D.

    Compute: ``flops`` is what the row would cost trained alone (6 N D, the same as C); ``flops_trained`` what the
    sweep trained for it: an independent run its flops; a WSD branch its cooldown, and the longest branch of each
    stable run also that stable run (it is the stable run continued), so the column sums to what the sweep
    trained. ``branch_start``: the step a branch's cooldown started from its stable run (empty otherwise). A
    branch's curve is its stable run's log up to there, then its own.

    ``folder``: also write the two tables there, as runs.csv and curves.csv (the layout of data/sweeps/NAME/)."""
    store = open_store(name, root)
    rows = export_rows(store, RUN)
    stable_flops = {c["run_id"]: _flops_trained(c) for c, _, _ in records(store, RUN) if c["kind"] == "stable"}
    carried = set()
    for row in sorted(rows, key=lambda r: (-r["steps"], r["run_id"])):  # the longest branch carries the stable run
        sid = row["_stable"]
        if sid is not None and sid not in carried:
            carried.add(sid)
            row["flops_trained"] += stable_flops.get(sid, 0.0)
    table = pd.DataFrame(rows).drop(columns=["_stable"], errors="ignore")
    for col in ("lr", "batch", "warmup", "lr_mult"):  # a store whose YAML gave 3e-3 recorded it as text '3e-3'
        if col in table.columns and table[col].dtype == object:
            num = pd.to_numeric(table[col], errors="coerce")
            if (num.notna() | table[col].isna()).all():
                table[col] = num
    curves = store.curves()
    if folder is not None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        table.to_csv(folder / "runs.csv", index=False)
        curves.to_csv(folder / "curves.csv", index=False)
    return table, curves
