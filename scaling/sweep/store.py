"""One SQLite file per sweep, written only by the driver.

Tables: ``runs`` (one row per run: status, config, attempts, last error, result)
and ``curves`` (one row per logged step). Workers write JSONL logs in their run
directories; the driver ingests them. Each status change is one transaction, so
a killed driver leaves a consistent file.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import pandas as pd

from ..errors import ScalingError

STATUSES = ("pending", "running", "done", "failed", "diverged")


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(
                """
                CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, status TEXT, config TEXT,
                    attempts INTEGER DEFAULT 0, error TEXT, result TEXT, updated REAL);
                CREATE TABLE IF NOT EXISTS curves (run_id TEXT, step INTEGER, tokens REAL, lr REAL,
                    train_loss REAL, eval_loss REAL, PRIMARY KEY (run_id, step));
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
                """
            )
            self.db.commit()
            self.db.execute("SELECT count(*) FROM runs").fetchone()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "not a database" not in str(exc) \
                    and "malformed" not in str(exc):
                raise ScalingError(f"cannot open the sweep store {self.path}: {exc} (is the directory writable?)"
                                   ) from None
            raise ScalingError(f"the sweep store {self.path} is damaged ({exc}): move it aside and run the sweep "
                               "again (finished runs return their saved results; interrupted ones resume from "
                               "their checkpoints)") from None
        except OSError as exc:
            raise ScalingError(f"cannot open the sweep store {self.path}: {exc} (is the directory writable?)") from None

    def check_space(self, min_free_mb: int = 200) -> None:
        free = shutil.disk_usage(self.path.parent).free / 2**20
        if free < min_free_mb:
            raise ScalingError(f"only {free:.0f} MB free under {self.path.parent}; the sweep needs at least "
                               f"{min_free_mb} MB for logs and checkpoints")

    def set_meta(self, **kv) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in kv.items()])

    def meta(self) -> dict:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}

    def sync(self, configs: list[dict]) -> None:
        """Add runs not yet known as pending; never touch known ones."""
        now = time.time()
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO runs (run_id, status, config, attempts, updated) VALUES (?, 'pending', ?, 0, ?)",
                [(c["run_id"], json.dumps(c, default=str), now) for c in configs])

    def same_runs(self, configs: list[dict], free=("run_id", "D_grid", "device")) -> list[dict]:
        """``configs`` with each run the store already has under another id given that id: a run whose settings
        (its config less ``free`` keys, numbers compared as numbers) equal a known run's is that run, not a new one.
        Adding an axis through the sweep's own value (grid.lr [1e-3, 3e-3] to a sweep at lr 3e-3) names the runs
        it had with a tag (``-lr0.003``); they are the same runs and are not trained again."""
        known, have = {}, set()
        for run_id, config in self.db.execute("SELECT run_id, config FROM runs"):
            known.setdefault(_identity(json.loads(config), free), run_id)
            have.add(run_id)
        ids = {c["run_id"] for c in configs}
        moved: dict[str, str] = {}  # new id -> the store's id of the same run
        got: dict[str, dict] = {}
        # cells that need others (WSD branches need their stable run) after those: their references follow the move
        for c in sorted(configs, key=lambda c: bool(c.get("needs"))):
            c = _moved_refs(c, moved)
            same = known.get(_identity(json.loads(json.dumps(c, default=str)), free))
            old = c["run_id"]
            if same is not None and same != old and old not in have and same not in ids:
                moved[old] = same
                c = {**c, "run_id": same}
            got[old] = c
        return [got[c["run_id"]] for c in configs]

    def set_status(self, run_id: str, status: str, *, error: str | None = None, result: dict | None = None,
                   attempt: bool = False) -> None:
        assert status in STATUSES
        with self.db:
            self.db.execute(
                "UPDATE runs SET status = ?, error = COALESCE(?, error), result = COALESCE(?, result), "
                "attempts = attempts + ?, updated = ? WHERE run_id = ?",
                (status, error, None if result is None else json.dumps(result), int(attempt), time.time(), run_id))

    def requeue(self, run_ids) -> None:
        """Runs stopped by an interrupted driver: pending again, the stopped attempt not counted."""
        with self.db:
            self.db.executemany("UPDATE runs SET status = 'pending', attempts = MAX(attempts - 1, 0), updated = ? "
                                "WHERE run_id = ? AND status = 'running'", [(time.time(), r) for r in run_ids])

    def retry_failed(self) -> int:
        """Failed runs become pending with their attempts reset (their last error is kept); returns how many."""
        with self.db:
            cur = self.db.execute("UPDATE runs SET status = 'pending', attempts = 0, updated = ? "
                                  "WHERE status = 'failed'", (time.time(),))
        return cur.rowcount

    def runs(self) -> pd.DataFrame:
        df = pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", self.db)
        return df

    def ingest_log(self, run_id: str, log_path: Path) -> int:
        """Load a run's JSONL log (a resumed run repeats steps: the last record of a step wins)."""
        if not log_path.exists():
            return 0
        recs = {}
        for line in log_path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            recs[int(r["step"])] = r
        rows = [(run_id, s, r.get("tokens"), r.get("lr"), r.get("train_loss"), r.get("eval_loss")) for s, r in recs.items()]
        with self.db:
            self.db.execute("DELETE FROM curves WHERE run_id = ?", (run_id,))
            self.db.executemany("INSERT INTO curves VALUES (?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def curves(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM curves ORDER BY run_id, step", self.db)

    def close(self) -> None:
        self.db.close()


def _moved_refs(cell: dict, moved: dict) -> dict:
    """``cell`` with the ids it refers to (``needs``, a branch's ``stable``) replaced where ``moved`` maps them."""
    if not moved or not cell.get("needs"):
        return cell
    cell = {**cell, "needs": [moved.get(n, n) for n in cell["needs"]]}
    if isinstance(cell.get("branch"), dict) and "stable" in cell["branch"]:
        cell["branch"] = {**cell["branch"], "stable": moved.get(cell["branch"]["stable"], cell["branch"]["stable"])}
    return cell


def _identity(config: dict, free) -> str:
    """A run's settings as one comparable text: numbers (and numbers written as text, as YAML reads 3e-3) as floats."""
    def norm(v):
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, bool) or v is None:
            return v
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                return v
        return str(v)

    return json.dumps(norm({k: v for k, v in config.items() if k not in free}), sort_keys=True)


def open_named(root, name: str, what: str, command: str, must_exist: bool = True) -> "Store":
    """The store of the ``what`` sweep (``"sweep"``, ``"overoptimization sweep"``, ...) ``name`` under ``root``;
    with ``must_exist``, a missing one is one error naming ``command``, the command that creates it."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():  # the definition given for its name
        import yaml

        try:
            named = yaml.safe_load(Path(name).read_text())
        except yaml.YAMLError:
            named = None
        name = str(named.get("name") or Path(name).stem) if isinstance(named, dict) else Path(name).stem
    path = Path(root) / name / "sweep.sqlite"
    if must_exist and not path.exists():
        other = [(w, c) for w, (r, c) in STORE_KINDS.items() if w != what and (Path(r) / name / "sweep.sqlite").exists()]
        kind, cmd = other[0] if other else ("", "")
        hint = (f"; {name!r} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} (under {STORE_KINDS[kind][0]}): "
                f"`{cmd} status {name}`, `{cmd} export {name}`") if other else ""
        raise ScalingError(f"no {what} named {name!r} under {root} (expected {path}); run it with `{command}`{hint}")
    return Store(path)


#: each kind of sweep store: its default root and the command family that reads it
STORE_KINDS = {"sweep": ("out/sweeps", "scaling sweep"), "overoptimization sweep": ("out/overopt", "scaling overopt"),
               "fine-tuning sweep": ("out/finetune", "scaling finetune")}
