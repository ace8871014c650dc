"""Run a fine-tuning sweep on the graph runner: one store under ``out/finetune/NAME``, resume, retries, export.

The runner is the one every sweep kind shares (scaling/sweep/graph.py): one driver per sweep (a lock), one
SQLite store written by the driver only, cells never redone once finished, a killed driver's cells run
again (each fine-tuning cell starts over: it takes seconds to minutes), attempts that persist in the store
and ``retry_failed`` (``--retry-failed``) for cells that failed all of theirs. Fine-tuning cells need
nothing: the base models are trained beforehand (``scaling sweep run`` of a definition with
``save_model: true``), or are ``save_pretrained`` folders.

The export is one row per finished cell, columns :data:`~scaling.finetune.cells.COLUMNS` (``run_id, method,
N, D_pretrain, pet_params, D_f, loss, seed``) and then its settings; it is fitted as it is with
``scaling fit EXPORT.csv --law finetune --x N --method lora``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import MissingExtraError
from ..sweep.drive import drive
from ..sweep.graph import cell_status, export_rows, register_cell_kind
from ..sweep.spec import changed_settings
from ..sweep.store import Store, open_named
from .cells import COLUMNS, NO_PEFT, cell_kind
from .spec import KIND, expand, load_spec

DEFAULT_ROOT = Path("out/finetune")
#: settings a sweep may change between invocations: it grows by base models, methods, ranks, prompt lengths,
#: D_f and seeds (new cells); every other setting shapes the results of cells already finished
EXTENSIBLE = ("name", "base", "methods", "lora.rank", "prompt.virtual_tokens", "D_f", "seeds", "threads_per_worker",
              "retries")

register_cell_kind(cell_kind())


def open_store(name: str, root: str | Path = DEFAULT_ROOT, must_exist: bool = True) -> Store:
    return open_named(root, name, "fine-tuning sweep", "scaling finetune run DEFINITION.yaml", must_exist)


def run_finetune(definition, *, executor: str = "local", workers: int | None = None,
                 root: str | Path = DEFAULT_ROOT, progress: bool = True, retry_failed: bool = False,
                 **executor_kwargs) -> pd.DataFrame:
    """Run every unfinished cell of a fine-tuning sweep; returns the export (:func:`export`).

    Everything is checked before anything trains (base models, vocabularies, ranks, prompt lengths, D_f).
    ``retry_failed``: cells that failed all their attempts in an earlier invocation get ``retries`` fresh ones.
    Ctrl-C or SIGTERM stops the workers and raises :class:`~scaling.sweep.graph.SweepInterrupted`; running the
    sweep again resumes."""
    spec = load_spec(definition, resolve=False)
    cells = expand(spec)  # the base models read and every cell checked
    from .._extras import missing, require

    require("torch", "transformers")  # one line naming the extra, not a traceback from every worker
    if any(c["method"] != "full" for c in cells) and missing("peft"):
        raise MissingExtraError(NO_PEFT, name="peft")
    base = Path(root) / spec["name"]
    drive(open_store(spec["name"], root, must_exist=False), spec, cells, base, default_kind=KIND, label="finetune",
          what="fine-tuning sweep", changed_fn=lambda old, new: changed_settings(old, new, EXTENSIBLE),
          extend="adding base models, methods, LoRA ranks, prompt lengths, D_f or seeds with the same settings "
                 "extends it",
          busy=f"fine-tuning sweep {spec['name']!r} is already being run (lock {base / 'driver.lock'}); watch it "
               f"with `scaling finetune status {spec['name']}`",
          api="run_finetune(..., retry_failed=True)", executor=executor, workers=workers, progress=progress,
          retry_failed=retry_failed, executor_kwargs=executor_kwargs)
    return export(spec["name"], root)


def status(name: str, root: str | Path = DEFAULT_ROOT) -> dict:
    """Cells done, running, pending, failed (with the last line of their errors) and diverged, by method."""
    runs_dir = Path(root) / name / "runs"
    st = cell_status(open_store(name, root), Path(root) / name, KIND,
                     started=lambda c, base: (runs_dir / c["run_id"] / "log.jsonl").exists(),
                     finishing=lambda c, base: (runs_dir / c["run_id"] / "result.json").exists())
    df = st.pop("_table")
    counts = {s: st[s] for s in ("done", "running", "pending", "failed", "diverged")}
    methods = df["cell"].map(lambda c: c["method"]) if len(df) else pd.Series([], dtype=object)
    by_method = {m: {s: int(n) for s, n in df.loc[methods == m, "status"].value_counts().items()}
                 for m in methods.unique()}
    return {"name": name, "total": st["total"], **counts, "remaining": st["remaining"], "methods": by_method,
            "failed_cells": st["failed_cells"]}


def export(name: str, root: str | Path = DEFAULT_ROOT) -> pd.DataFrame:
    """One row per finished cell: :data:`~scaling.finetune.cells.COLUMNS`, then the settings (``rank``,
    ``virtual_tokens``, ``lr``, ``steps``, ``base_loss``: the base model's loss on the same held-out windows
    before fine-tuning, ``eval_se``, ``base_d_model``, ``base_n_layer``, ``base_id``: the pretraining run or
    folder the base model came from). Diverged and unfinished cells have no row."""
    df = pd.DataFrame(export_rows(open_store(name, root), KIND))
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    df = df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]
    return df.sort_values(["method", "N", "D_pretrain", "pet_params", "D_f", "seed"], ignore_index=True)
