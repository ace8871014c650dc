"""WSD cooldown branches (issue #13 item 2) and the graph runner every sweep kind shares (item 1)."""

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from scaling.cli import main
from scaling.schedules import cooldown_start, lr_at
from scaling.sweep import expand, export, load_spec, run_sweep, status
from scaling.sweep.spec import SpecError
from test_sweep import toy_spec

# two sizes x three lengths (49, 98 and 195 steps of 4,096 tokens), branched off one stable run per size
BRANCHED = {"name": "branched", "trainer": "toy", "model": {"sizes": [20000, 80000], "seq_len": 64},
            "grid": {"tokens": [200000, 400000, 800000]}, "batch": {"tokens_per_step": 4096},
            "schedule": {"type": "wsd", "cooldown": 0.2, "shape": "1-sqrt", "branches": True, "warmup": 0.1},
            "toy": {"noise": 0.001}, "checkpoint": {"every": 0.1}}


def branched(**overrides):
    return toy_spec(BRANCHED, **overrides)


# ------------------------------------------------------------------ schedules
def test_cooldown_shapes_follow_their_formulas():
    opt = {"lr": 2.0}
    sched = {"type": "wsd", "warmup": 10, "cooldown": 0.25, "final_lr_frac": 0.1}
    T = 100
    start = cooldown_start(T, sched)
    assert start == 75
    for step in range(T):
        p = (step - start + 1) / 25
        lin = lr_at(step, T, opt, sched)
        sq = lr_at(step, T, opt, {**sched, "shape": "1-sqrt"})
        if step < 10:
            assert lin == sq == pytest.approx(2.0 * (step + 1) / 10)
        elif step < start:
            assert lin == sq == 2.0
        else:
            assert lin == pytest.approx(2.0 + (0.2 - 2.0) * p)
            assert sq == pytest.approx(0.2 + (2.0 - 0.2) * (1 - math.sqrt(p)))
    assert lr_at(T - 1, T, opt, {**sched, "shape": "1-sqrt"}) == pytest.approx(0.2)
    # decay_frac is the older name of cooldown: the same schedule
    old = {"type": "wsd", "warmup": 10, "decay_frac": 0.25, "final_lr_frac": 0.1}
    assert [lr_at(s, T, opt, old) for s in range(T)] == [lr_at(s, T, opt, sched) for s in range(T)]


@pytest.mark.parametrize("schedule,msg", [
    ({"type": "wsd", "cooldown": 0.0}, r"schedule.cooldown must be a number in \(0, 1\)"),
    ({"type": "wsd", "cooldown": 1.2}, r"schedule.cooldown must be a number in \(0, 1\)"),
    ({"type": "wsd", "cooldown": "soon"}, r"schedule.cooldown must be a number in \(0, 1\)"),
    ({"type": "wsd", "shape": "cosine"}, "schedule.shape 'cosine' is not a cooldown shape; use linear or 1-sqrt"),
    ({"type": "cosine", "branches": True}, "schedule.branches applies to the wsd schedule.*type is cosine"),
    ({"type": "constant", "cooldown": 0.2}, "schedule.cooldown applies to the wsd schedule"),
    ({"type": "wsd", "branches": "yes"}, "schedule.branches must be true or false"),
    ({"type": "wsd", "cooldown": 0.3, "decay_frac": 0.1}, "cooldown .* and schedule.decay_frac .* give one"),
    ({"type": "wsd", "branches": True, "warmup": 0.9}, "the warmup .* must end before the cooldown"),
])
def test_bad_wsd_settings_are_one_error_before_anything_trains(schedule, msg):
    with pytest.raises(SpecError, match=msg):
        expand(load_spec({**BRANCHED, "schedule": schedule}))


def test_branches_need_one_batch_per_stable_run():
    with pytest.raises(SpecError, match="need one batch size.*auto gives each D its own"):
        load_spec(branched(batch={"tokens_per_step": "auto"}))


def test_sweeps_without_branches_keep_their_run_ids():
    """The new schedule keys appear in a run's config only when set: existing stores keep their runs."""
    plain = expand(load_spec(toy_spec(schedule={"type": "wsd"})))
    linear = expand(load_spec(toy_spec(schedule={"type": "wsd", "shape": "linear", "branches": False})))
    assert [r["run_id"] for r in plain] == [r["run_id"] for r in linear]
    assert all("shape" not in r["schedule"] and "branches" not in r["schedule"] for r in plain)


# ------------------------------------------------------------------- the graph
def test_branched_grid_is_one_stable_run_per_size_and_a_branch_per_length():
    cells = expand(load_spec(BRANCHED))
    stable = [c for c in cells if c.get("kind") == "stable"]
    branches = [c for c in cells if c.get("kind") == "branch"]
    assert len(stable) == 2 and len(branches) == 6
    for s in stable:
        mine = sorted((b for b in branches if b["needs"] == [s["run_id"]]), key=lambda b: b["steps"])
        assert [b["steps"] for b in mine] == [49, 98, 195] and mine[0]["N"] == s["N"]
        # each branch starts where its own cooldown starts: steps - round(0.2 steps)
        assert [b["branch"]["start"] for b in mine] == [39, 78, 156]
        assert s["stable"]["keep"] == [39, 78, 156] and s["stable"]["until"] == 156
        # warmup 0.1 of the shortest run (49 steps): 5 steps, shared by every branch and the stable run
        assert {b["schedule"]["warmup_steps"] for b in mine} == {s["schedule"]["warmup_steps"]} == {5}
        assert s["D"] == 156 * 4096
    # a longer D added later: a new, longer stable run; the branches already there keep their ids (and results)
    longer = expand(load_spec(branched(grid={"tokens": [200000, 400000, 800000, 1600000]})))
    ids = {c["run_id"] for c in cells if c.get("kind") == "branch"}
    assert ids < {c["run_id"] for c in longer if c.get("kind") == "branch"}
    assert not {c["run_id"] for c in longer if c.get("kind") == "stable"} & {c["run_id"] for c in stable}
    # with a learning-rate axis, each setting has its own stable run
    two = expand(load_spec(branched(grid={"lr": [1e-3, 3e-3]})))
    assert sum(c.get("kind") == "stable" for c in two) == 4


def test_branched_toy_sweep_keeps_a_row_and_a_whole_curve_per_run_and_counts_its_flops(tmp_path, capsys):
    runs = run_sweep(BRANCHED, root=tmp_path, workers=2, progress=False)
    assert (runs["status"] == "done").all() and len(runs) == 8
    table, curves = export("branched", tmp_path)
    assert len(table) == 6 and set(table["D"]) == {49 * 4096, 98 * 4096, 195 * 4096}
    assert set(curves["run_id"]) == set(table["run_id"])
    for r in table.itertuples():  # the stable prefix and the branch: every step once, then the final evaluation
        c = curves[curves["run_id"] == r.run_id]
        assert list(c["step"]) == list(range(r.steps + 1))
        assert c["eval_loss"].iloc[-1] == pytest.approx(r.loss)
    # FLOPs, from first principles: per size, (1 - c) of the longest run once, then 20% of each length
    N = table.groupby("N")
    expected = sum(6 * n * 4096 * (156 + (195 - 156) + (98 - 78) + (49 - 39)) for n in N.groups)
    assert table["flops"].tolist() == (6 * table["N"] * table["D"]).tolist()
    assert table["flops_trained"].sum() == pytest.approx(expected)
    longest = table.sort_values("D").groupby("N").tail(1)
    assert (longest["flops_trained"] == longest["flops"]).all()  # the stable run continued
    st = status("branched", tmp_path)
    assert st["flops_trained"] == pytest.approx(expected) == st["flops_planned"]
    assert st["flops"] == pytest.approx(table["flops"].sum())
    assert st["kinds"] == {"branch": {"done": 6}, "stable": {"done": 2}}
    assert st["flops_trained"] / st["flops"] == pytest.approx(225 / 342)  # steps: 156 + 39 + 20 + 10 of 49 + 98 + 195
    assert main(["sweep", "status", "branched", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 stable runs, 6 cooldown branches" in out and "(0.66 of independent)" in out
    assert main(["sweep", "export", "branched", "--root", str(tmp_path), "--out", str(tmp_path / "runs.csv")]) == 0
    assert "0.66 of the" in capsys.readouterr().out


def test_a_branch_is_the_unbroken_wsd_run_of_its_length(tmp_path):
    """Same batches, same state at the branch point: a branch's curve and final loss are those of one WSD run."""
    pytest.importorskip("transformers")
    from scaling.sweep.train import run_worker

    spec = {"name": "realbranch", "trainer": "transformer", "model": {"sizes": [3000], "seq_len": 64},
            "grid": {"tokens": [40960, 81920]}, "optimizer": {"lr": 0.01},
            "schedule": {"type": "wsd", "cooldown": 0.25, "shape": "1-sqrt", "branches": True, "warmup": 4},
            "batch": {"tokens_per_step": 2048},
            "corpus": {"name": "synthetic", "states": 32, "branching": 4, "tokens": 400000},
            "eval": {"every": 0.25, "tokens": 16384, "curve_tokens": 4096}, "checkpoint": {"every": 0.25}}
    run_sweep(spec, root=tmp_path, workers=2, progress=False)
    table, curves = export("realbranch", tmp_path)
    short = table.sort_values("D").iloc[0]
    assert short["steps"] == 20 and short["branch_start"] == 15
    cfg = next(c for c in expand(load_spec(spec)) if c["run_id"] == short["run_id"])
    alone = {k: v for k, v in cfg.items() if k not in ("kind", "needs", "branch")}
    alone["schedule"] = {k: v for k, v in cfg["schedule"].items() if k not in ("branches", "warmup_steps")}
    res = run_worker(alone, str(tmp_path / "alone"), 1)
    assert short["loss"] == pytest.approx(res["final_eval_loss"], rel=1e-6)
    log = {}
    for line in (tmp_path / "alone" / "log.jsonl").read_text().splitlines():
        r = json.loads(line)
        log[r["step"]] = r
    mine = curves[curves["run_id"] == short["run_id"]].set_index("step")
    assert list(mine.index) == sorted(log)
    np.testing.assert_allclose(mine["train_loss"].dropna(), [log[s]["train_loss"] for s in mine["train_loss"].dropna().index],
                               rtol=1e-6)
    np.testing.assert_allclose(mine["lr"], [log[s]["lr"] for s in mine.index])
    evals = mine["eval_loss"].dropna()
    assert list(evals.index) == [s for s in sorted(log) if log[s].get("eval_loss") is not None]
    np.testing.assert_allclose(evals, [log[s]["eval_loss"] for s in evals.index], rtol=1e-6)


def _store(db):
    with sqlite3.connect(db) as c:
        return {r[0]: (r[1], r[2]) for r in c.execute("SELECT run_id, status, attempts FROM runs")}


def _kill_when(cmd, db, ready, timeout=120):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
            if db.exists():
                try:
                    if ready(_store(db)):
                        break
                except sqlite3.OperationalError:
                    continue
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-run
        proc.wait()


def test_sigkill_of_a_branched_sweep_loses_and_repeats_no_branch(tmp_path):
    spec = branched(name="killbranch", toy={"step_sleep": 0.02}, checkpoint={"every": 4})
    path = tmp_path / "killbranch.yaml"
    path.write_text(yaml.safe_dump(spec))
    root = tmp_path / "root"
    runs_dir = root / "killbranch" / "runs"
    cmd = [sys.executable, "-m", "scaling.cli", "sweep", "run", str(path), "--root", str(root), "--workers", "2"]
    db = root / "killbranch" / "sweep.sqlite"

    def stable_midway(store):  # both stable runs are training, past a checkpoint
        return len(list(runs_dir.glob("stable-*/ckpt.json"))) >= 2
    _kill_when(cmd, db, stable_midway)
    st = _store(db)
    assert all(s != "done" for rid, (s, _) in st.items() if rid.startswith("stable-")), "killed too late"

    def branch_midway(store):  # a branch finished, another one training past its own checkpoint
        done = [r for r, (s, _) in store.items() if s == "done" and not r.startswith("stable-")]
        busy = [d for d in runs_dir.glob("N*") if (d / "ckpt.json").exists() and not (d / "result.json").exists()]
        return done and busy
    _kill_when(cmd, db, branch_midway)
    st = _store(db)
    done_before = {r for r, (s, _) in st.items() if s == "done" and not r.startswith("stable-")}
    assert done_before and len(done_before) < 6, "killed too early or too late"
    mtimes = {r: (runs_dir / r / "result.json").stat().st_mtime_ns for r in done_before}
    runs = run_sweep(path, root=root, workers=2, progress=False)
    assert (runs["status"] == "done").all() and len(runs) == 8
    by = runs.set_index("run_id")
    results = {r.run_id: json.loads(r.result) for r in runs.itertuples()}
    for rid in done_before:  # finished branches were not trained again
        assert by.loc[rid, "attempts"] == 1
        assert (runs_dir / rid / "result.json").stat().st_mtime_ns == mtimes[rid]
    for rid, res in results.items():
        if rid.startswith("stable-"):  # killed mid-way, resumed from their checkpoints
            assert res["resumed_from"] > 0 and res["steps"] == 156
    configs = {c["run_id"]: c for c in expand(load_spec(path))}
    resumed = [rid for rid, res in results.items() if not rid.startswith("stable-")
               and res["resumed_from"] > configs[rid]["branch"]["start"]]
    assert resumed, "no branch resumed from its own checkpoint"
    table, curves = export("killbranch", root)
    assert not curves.duplicated(["run_id", "step"]).any()
    for r in table.itertuples():
        assert list(curves.loc[curves["run_id"] == r.run_id, "step"]) == list(range(r.steps + 1))


def test_a_missing_stable_checkpoint_is_one_clear_error(tmp_path):
    from scaling.sweep.train import run_cell

    cells = expand(load_spec(BRANCHED))
    branch = next(c for c in cells if c.get("kind") == "branch")
    with pytest.raises(Exception, match="starts from its stable run's checkpoint at step 39.*is missing"):
        run_cell(branch, str(tmp_path), 1)


# -------------------------------------------------- the graph runner, any kind of cell
def echo_cell(cell, sweep_dir, threads):
    """A cell kind defined outside the package: fails when told to, else returns its input plus one."""
    if cell.get("fail"):
        raise RuntimeError(f"cell {cell['run_id']} told to fail")
    d = Path(sweep_dir) / cell["run_id"]
    d.mkdir(parents=True, exist_ok=True)
    (d / "ran").open("a").write("x")
    return {"status": "done", "value": cell["value"] + 1}


def test_a_new_cell_kind_plugs_into_the_runner_with_dependencies_retries_and_added_cells(tmp_path):
    from scaling.sweep.graph import CellKind, driver_lock, export_rows, register_cell_kind, run_cells
    from scaling.sweep.store import Store

    register_cell_kind(CellKind("echo", echo_cell, rows=lambda c, res, r: [{"id": c["run_id"], **res}] if res else []))
    store = Store(tmp_path / "sweep.sqlite")
    cells = [{"run_id": "a", "kind": "echo", "value": 1, "needs": []},
             {"run_id": "b", "kind": "echo", "value": 2, "needs": ["a"]},
             {"run_id": "bad", "kind": "echo", "value": 0, "fail": True, "needs": []},
             {"run_id": "c", "kind": "echo", "value": 3, "needs": ["bad"]}]
    store.sync(cells)
    with driver_lock(tmp_path, "busy"):
        out = run_cells(store, cells, tmp_path, name="echo", default_kind="echo", workers=2, retries=1,
                        progress=False)
        with pytest.raises(Exception, match="busy"):
            with driver_lock(tmp_path, "busy"):
                pass
    assert sorted(out["finished"]) == ["a", "b"] and out["failed"] == ["bad"] and out["blocked"] == ["c"]
    runs = store.runs().set_index("run_id")
    assert runs.loc["bad", "attempts"] == 2 and "told to fail" in runs.loc["bad", "error"]
    assert runs.loc["c", "status"] == "pending"
    # a later round adds a cell: only it runs; the failed one stays failed (attempts persist in the store)
    cells.append({"run_id": "d", "kind": "echo", "value": 10, "needs": ["b"]})
    store.sync(cells)
    out = run_cells(store, cells, tmp_path, name="echo", default_kind="echo", workers=1, retries=1, progress=False)
    assert out["ran"] == ["d"] and store.runs().set_index("run_id").loc["bad", "attempts"] == 2
    assert (tmp_path / "a" / "ran").read_text() == "x"  # never run twice
    rows = {r["id"]: r["value"] for r in export_rows(store, "echo")}
    assert rows == {"a": 2, "b": 3, "d": 11}
