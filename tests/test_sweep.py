"""The sweep runner: definitions, store, retries, resume after SIGKILL, the toy and the real trainer (issue #4)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from scaling.counting import count_params
from scaling.sweep import expand, export, load_spec, run_sweep, status
from scaling.sweep.corpus import Automaton
from scaling.sweep.spec import SpecError

ROOT = Path(__file__).resolve().parent.parent

TOY = {
    "name": "toy", "trainer": "toy", "model": {"sizes": [20000, 80000, 300000], "seq_len": 64},
    "grid": {"tokens": [200000, 800000]}, "batch": {"tokens_per_step": 4096},
    "toy": {"noise": 0.001}, "checkpoint": {"every": 0.1},
}


def toy_spec(base=None, **overrides):
    """A copy of ``base`` (the toy sweep by default) with top-level keys replaced, or merged when dicts."""
    spec = json.loads(json.dumps(base or TOY))
    for k, v in overrides.items():
        if isinstance(v, dict):
            spec.setdefault(k, {}).update(v)
        else:
            spec[k] = v
    return spec


# ---------------------------------------------------------------- definitions
@pytest.mark.parametrize("bad,msg", [
    ({"lr": 1}, "unknown key 'lr'"),
    ({"model": {"sizes": [1000], "depth": 3}}, "unknown key 'model.depth'"),
    ({"model": {"shapes": [{"n_layer": 2, "d_model": 30, "n_head": 4}]}}, "impossible shape"),
    ({"grid": {"tokens": [1000]}}, "only 0 steps"),
    ({"schedule": {"type": "linear"}}, "schedule.type"),
    # transformers refuses RoPE on an odd head dimension, inside the worker, after the sweep has started
    ({"model": {"shapes": [{"n_layer": 2, "d_model": 14, "n_head": 2}]}}, "even head dimension"),
    ({"model": {"sizes": [20000], "head_dim": 9}}, "set an even model.head_dim"),
    ({"grid": {"tokens": [200000, 200000]}}, "grid.tokens lists a value twice"),
    ({"seeds": [0, 0]}, r"seeds lists a value twice: \[0, 0\]"),  # was one run, in silence
    ({"eval": {"every": 2.5}}, "eval.every is 2.5: give a fraction of the run below 1"),  # was read as every 2 steps
])
def test_bad_definitions_fail_before_training(bad, msg):
    spec = toy_spec()
    if "model" in bad and "shapes" in bad["model"]:
        spec["model"] = {"shapes": bad["model"]["shapes"], "seq_len": 64}
        bad = {}
    for k, v in bad.items():
        spec[k] = {**spec.get(k, {}), **v} if isinstance(v, dict) and isinstance(spec.get(k), dict) else v
    with pytest.raises(SpecError, match=msg):
        expand(load_spec(spec))


def test_isoflop_grid_sets_D_from_C():
    spec = load_spec(toy_spec(grid={"tokens": None, "compute": [1e12, 4e12]}))
    runs = expand(spec)
    for r in runs:
        assert r["C"] == pytest.approx(r["budget"], rel=0.02)  # D is rounded to whole steps
        assert r["D"] == pytest.approx(r["budget"] / (6 * r["N"]), rel=0.02)


def test_shipped_definitions_are_valid():
    from scaling.overopt import load_spec as load_overopt
    from scaling.overopt.spec import cells

    for path in (ROOT / "sweeps").glob("*.yaml"):
        if path.name.startswith("finetune-"):  # its base models come from a pretraining sweep: the definition alone
            from scaling.finetune import load_spec as load_finetune

            assert load_finetune(path, resolve=False)["methods"], path
            continue
        if path.name.startswith("overopt-"):
            assert len(cells(load_overopt(path))) > 2, path
            with pytest.raises(SpecError, match="scaling overopt run"):
                load_spec(path)
        else:
            assert expand(load_spec(path)), path


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_model_parameter_counts_match_the_counting_code(family):
    pytest.importorskip("transformers")
    from scaling.sweep.train import build_model

    cfg = {"family": family, "n_layer": 3, "d_model": 48, "n_head": 3, "vocab_size": 256, "seq_len": 64}
    model = build_model(cfg)
    total = sum(p.numel() for p in model.parameters())
    c = count_params(3, 48, n_head=3, vocab_size=256, n_ctx=64, family=family)
    assert total == c.total


def test_synthetic_language_entropy_rate_is_exact():
    auto = Automaton.random(states=8, branching=3, seed=1)
    x = auto.sample(400_000, seed=2)
    # empirical conditional entropy given the (tracked) state equals the analytic rate
    assert set(np.unique(x)) <= set(auto.emit_bytes.ravel())
    p = auto.emit_probs
    h = -(p * np.log(p)).sum(1)
    pi = auto.stationary()
    assert np.allclose(pi @ np.ones_like(pi), 1.0)
    assert auto.entropy_rate() == pytest.approx(float(pi @ h))
    # the Bayes-optimal predictor (exact filtering) approaches the entropy rate on long windows
    # and pays for not knowing the state on short ones
    short, long = auto.bayes_loss(x, 16, 2000), auto.bayes_loss(x, 2000, 150)
    assert long == pytest.approx(auto.entropy_rate(), rel=0.01)
    assert short > long
    # scored on given windows (the trainer's evaluation sample): one window at an odd offset is that window alone,
    # and windows spread over the stream are other windows than the first 2,000, with the same floor up to noise
    s = 12_345
    assert auto.bayes_loss(x, 16, starts=[s]) == pytest.approx(auto.bayes_loss(x[s:s + 17], 16, 1), rel=1e-12)
    assert auto.bayes_loss(x, 16, starts=[s]) != auto.bayes_loss(x, 16, 1)
    from scaling.sweep.train import eval_windows
    spread = eval_windows(len(x), 16, 2000 * 16)
    on_spread = auto.bayes_loss(x, 16, starts=spread)
    assert spread[-1] > 10 * 2000 * 16 and on_spread != short and on_spread == pytest.approx(short, rel=0.03)
    with pytest.raises(ValueError, match="window starts"):
        auto.bayes_loss(x, 16, starts=[len(x) - 10])
    with pytest.raises(ValueError, match="not both"):
        auto.bayes_loss(x, 16, 10, starts=[0])
    # the empirical byte frequencies match the stationary emission distribution
    freq = np.bincount(x, minlength=256) / x.size
    expect = np.zeros(256)
    np.add.at(expect, auto.emit_bytes.ravel(), (pi[:, None] * p).ravel())
    assert np.abs(freq - expect).max() < 0.01


def test_a_shifted_synthetic_language_keeps_the_structure_and_redraws_the_odds(tmp_path, monkeypatch):
    # issue #14's downstream task: the pretraining language with new emission probabilities
    from scaling.sweep.corpus import load_corpus, synthetic_automaton

    monkeypatch.setenv("SCALING_CACHE", str(tmp_path))
    base = {"name": "synthetic", "states": 8, "branching": 3, "seed": 1, "tokens": 400_000}
    a, b = synthetic_automaton(base), synthetic_automaton({**base, "shift_seed": 1})
    assert (a.emit_bytes == b.emit_bytes).all() and (a.next_state == b.next_state).all()
    assert np.abs(a.emit_probs - b.emit_probs).max() > 0.1 and np.allclose(b.emit_probs.sum(1), 1.0)
    assert (synthetic_automaton({**base, "shift_seed": 1}).emit_probs == b.emit_probs).all()  # deterministic
    train, _, info = load_corpus({**base, "shift_seed": 1})
    assert info["entropy_rate"] == pytest.approx(b.entropy_rate())
    # the sample's byte frequencies follow the shifted odds, not the original ones
    freq = np.bincount(np.asarray(train), minlength=256) / len(train)

    def expected(auto):
        e = np.zeros(256)
        np.add.at(e, auto.emit_bytes.ravel(), (auto.stationary()[:, None] * auto.emit_probs).ravel())
        return e

    assert np.abs(freq - expected(b)).max() < 0.01 < np.abs(freq - expected(a)).max()


# ------------------------------------------------------------------ toy sweeps
def test_toy_sweep_runs_records_and_exports(tmp_path):
    runs = run_sweep(toy_spec(), root=tmp_path, workers=2, progress=False)
    assert (runs["status"] == "done").all() and len(runs) == 6
    table, curves = export("toy", tmp_path)
    assert {"run_id", "N", "N_total", "D", "C", "loss", "n_layer", "d_model", "seed", "lr"} <= set(table.columns)
    assert (table["N"] < table["N_total"]).all()
    assert set(curves["run_id"]) == set(table["run_id"])
    export("toy", tmp_path, folder=tmp_path / "data" / "toy")  # the data/sweeps/NAME/ layout
    assert len(pd.read_csv(tmp_path / "data" / "toy" / "runs.csv")) == len(table)
    assert len(pd.read_csv(tmp_path / "data" / "toy" / "curves.csv")) == len(curves)
    # loss falls with N at fixed D and with D at fixed N
    for D, g in table.groupby("D"):
        assert g.sort_values("N")["loss"].is_monotonic_decreasing
    for N, g in table.groupby("N"):
        assert g.sort_values("D")["loss"].is_monotonic_decreasing
    st = status("toy", tmp_path)
    assert st["done"] == 6 and st["remaining"] == 0
    again = run_sweep(toy_spec(), root=tmp_path, workers=2, progress=False)  # nothing to do
    assert (again["attempts"] == 1).all()


def test_runs_start_longest_first(tmp_path):
    # the toy grid lists sizes small to large and D small to large; one worker finishes them in the order started
    run_sweep(toy_spec(), root=tmp_path, workers=1, progress=False)
    import sqlite3

    con = sqlite3.connect(tmp_path / "toy" / "sweep.sqlite")
    done = [json.loads(c) for c, in con.execute("SELECT config FROM runs ORDER BY updated")]
    order = [(r["D"], r["N"]) for r in done]
    # by tokens first (a run's time on a small model), then FLOPs
    assert order == sorted(order, key=lambda t: (-t[0], -t[0] * t[1]))
    assert order[0] == (max(d for d, _ in order), max(n for _, n in order))


def test_failures_are_retried_and_recorded(tmp_path):
    runs = run_sweep(toy_spec(toy={"fail_once": True}), root=tmp_path, workers=2, progress=False)
    assert (runs["status"] == "done").all()
    assert (runs["attempts"] == 2).all()
    assert runs["error"].str.contains("deliberate first-attempt failure").all()


def test_a_worker_that_dies_stops_the_sweep_without_using_up_retries(tmp_path, monkeypatch):
    # a dead worker breaks the whole pool: every resubmission failed at once, and runs that never failed ended
    # 'failed after 3 attempts', needing --retry-failed
    monkeypatch.setenv("SCALING_TOY_DIE_ONCE", "1")
    with pytest.raises(Exception, match="a worker process died .*pending again with no attempt counted"):
        run_sweep(toy_spec(), root=tmp_path, workers=1, progress=False)
    st = status("toy", tmp_path)
    assert st.get("failed", 0) == 0 and st.get("pending") == 6, st
    monkeypatch.delenv("SCALING_TOY_DIE_ONCE")
    runs = run_sweep(toy_spec(), root=tmp_path, workers=1, progress=False)
    assert (runs["status"] == "done").all() and (runs["attempts"] == 1).all()


def test_a_run_that_kills_its_worker_every_time_fails_after_its_retries(tmp_path, monkeypatch):
    # with no attempt counted, the same (longest) run went first on every rerun and broke the pool for good; now
    # the driver restarts the pool and goes on, each death counting one attempt of the run that had started
    monkeypatch.setenv("SCALING_TOY_DIE_AFTER_LOG", "1")
    runs = run_sweep(toy_spec(retries=1), root=tmp_path, workers=1, progress=False)
    assert (runs["status"] == "failed").all() and (runs["attempts"] == 2).all()  # retries=1: two attempts each
    st = status("toy", tmp_path)
    assert st["failed"] == 6 and all("its worker process died" in r["error"] for r in st["failed_runs"])


def test_a_worker_killed_mid_run_costs_that_run_one_attempt_and_the_sweep_goes_on(tmp_path, monkeypatch, capsys):
    # an out-of-memory kill of one run overnight stopped the whole sweep until someone ran it again
    monkeypatch.setenv("SCALING_TOY_DIE_AFTER_LOG", "once")
    runs = run_sweep(toy_spec(), root=tmp_path, workers=1, progress=False)
    assert (runs["status"] == "done").all() and (runs["attempts"] == 2).all()
    assert "a worker process died" in capsys.readouterr().err
    monkeypatch.delenv("SCALING_TOY_DIE_AFTER_LOG")
    clean = run_sweep(toy_spec(name="toy2"), root=tmp_path, workers=1, progress=False)
    a = export("toy", tmp_path)[0].set_index("N")["loss"].sort_index()
    b = export("toy2", tmp_path)[0].set_index("N")["loss"].sort_index()
    assert np.allclose(a.to_numpy(), b.to_numpy(), rtol=0, atol=0)  # resumed runs end where unbroken ones do


def test_nan_loss_marks_the_run_diverged(tmp_path):
    runs = run_sweep(toy_spec(toy={"nan_at": 0.5}), root=tmp_path, workers=1, progress=False)
    assert (runs["status"] == "diverged").all()


def test_unwritable_store_fails_before_training(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the sweep directory should go")
    with pytest.raises(Exception, match="cannot open the sweep store"):
        run_sweep(toy_spec(), root=blocker, progress=False)
    assert not list(tmp_path.glob("**/runs"))


def test_full_disk_fails_before_training(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(Exception, match="MB free"):
        run_sweep(toy_spec(), root=tmp_path, progress=False)
    assert not (tmp_path / "toy" / "runs").exists()


def test_submitit_executor_runs_the_same_sweep(tmp_path):
    pytest.importorskip("submitit")
    runs = run_sweep(toy_spec(name="viasubmitit"), executor="submitit", root=tmp_path, workers=2, progress=False)
    assert (runs["status"] == "done").all() and len(runs) == 6
    local = run_sweep(toy_spec(name="vialocal"), root=tmp_path, workers=2, progress=False)
    a = export("viasubmitit", tmp_path)[0].set_index("N")["loss"].sort_index()
    b = export("vialocal", tmp_path)[0].set_index("N")["loss"].sort_index()
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy())


def test_sigkill_of_the_sweep_loses_and_duplicates_nothing(tmp_path):
    spec = toy_spec(name="killme", toy={"step_sleep": 0.02}, grid={"tokens": [400000, 800000]})
    path = tmp_path / "killme.yaml"
    path.write_text(yaml.safe_dump(spec))
    root = tmp_path / "root"
    cmd = [sys.executable, "-m", "scaling.cli", "sweep", "run", str(path), "--root", str(root), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    db = root / "killme" / "sweep.sqlite"
    deadline = time.time() + 120
    seen = []
    while time.time() < deadline and not seen:
        time.sleep(0.2)
        if db.exists():
            import sqlite3

            try:
                with sqlite3.connect(db) as c:
                    done_now = {r[0] for r in c.execute("SELECT run_id FROM runs WHERE status='done'")}
            except sqlite3.OperationalError:  # the file exists before the driver has made its tables
                continue
            # kill once a run is done and an unfinished one has checkpointed early in its run (one checkpointed
            # near its end could finish before the kill lands; on a busy machine a run can be 'running' for a
            # while before its first checkpoint)
            seen = [p.parent.name for p in (root / "killme" / "runs").glob("*/ckpt.json")
                    if p.parent.name not in done_now and 0 < json.loads(p.read_text() or "{}").get("step", 0) <= 40]
            seen = seen if done_now else []
    assert status("killme", root)["driver"] is True
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-run
    proc.wait()
    # what stood when the kill landed (nothing moves now): finished runs, and unfinished runs with a checkpoint
    import sqlite3

    with sqlite3.connect(db) as c:
        done_before = [r[0] for r in c.execute("SELECT run_id FROM runs WHERE status='done'")]
    checkpointed = {p.parent.name for p in (root / "killme" / "runs").glob("*/ckpt.json")} - set(done_before)
    assert done_before and checkpointed, "the sweep did not get going"
    st = status("killme", root)  # the store still says 'running'; status knows no driver is behind it
    assert st["driver"] is False and st["running"] >= 1 and st["eta_s"] is None
    runs = run_sweep(path, root=root, workers=2, progress=False)
    assert (runs["status"] == "done").all() and len(runs) == 6
    by = runs.set_index("run_id")
    for rid in done_before:  # finished runs were not run again
        assert by.loc[rid, "attempts"] == 1
    results = {r.run_id: json.loads(r.result) for r in runs.itertuples()}
    for rid in checkpointed:  # killed runs resumed from their checkpoints
        assert results[rid]["resumed_from"] > 0, rid
    assert all(results[rid]["resumed_from"] == 0 for rid in done_before)
    _, curves = export("killme", root)
    assert not curves.duplicated(["run_id", "step"]).any()
    for rid, g in curves.groupby("run_id"):
        assert g["step"].is_monotonic_increasing and g["step"].iloc[-1] == g["step"].max()


# ------------------------------------------------------------ the real trainer
@pytest.fixture(scope="module")
def ci_sweep(tmp_path_factory):
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("ci")
    runs = run_sweep(ROOT / "sweeps" / "ci.yaml", root=root, workers=2, progress=False)
    return root, runs


def test_ci_sweep_real_transformers(ci_sweep):
    root, runs = ci_sweep
    assert (runs["status"] == "done").all()
    table, curves = export("ci", root)
    for D, g in table.groupby("D"):
        assert g.sort_values("N")["loss"].is_monotonic_decreasing, g
    for N, g in table.groupby("N"):
        assert g.sort_values("D")["loss"].is_monotonic_decreasing, g
    H = Automaton.random(32, 4, 1.0, 0).entropy_rate()
    assert (table["loss"] > H).all()  # nothing beats the entropy rate
    assert curves["eval_loss"].notna().sum() >= 3 * len(table)


def test_ci_sweep_losses_have_a_standard_error_within_a_thousandth(ci_sweep):
    # issue #12: a fixed evaluation sample spread over the held-out split, eval_se <= 0.1% of the loss
    root, _ = ci_sweep
    table, _ = export("ci", root)
    assert (table["eval_tokens"] > 900_000).all()
    assert (table["eval_se"] > 0).all() and (table["eval_se"] <= 0.001 * table["loss"]).all(), table


def test_curve_fit_on_the_ci_sweep_never_reports_an_interval_that_excludes_its_estimate(ci_sweep):
    # issue #10 item 13: tissue on this sweep printed E = 1.05e-6 with a 90% interval [4.3e-7, 9.8e-7]
    import warnings

    from scaling.laws import LossCurveLaw
    from scaling.laws.curve import curve_points

    root, _ = ci_sweep
    table, curves = export("ci", root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law = LossCurveLaw(bootstrap=200).fit(curve_points(curves, table))
    for name, ci in law.ci_.items():
        assert ci is None or ci[0] <= law.params_[name] <= ci[1], (name, law.params_[name], ci)


def test_store_round_trips(ci_sweep, tmp_path):
    root, runs = ci_sweep
    table, curves = export("ci", root)
    table.to_csv(tmp_path / "runs.csv", index=False)
    import pandas as pd

    back = pd.read_csv(tmp_path / "runs.csv")
    assert list(back["run_id"]) == list(table["run_id"])
    np.testing.assert_allclose(back["loss"], table["loss"])
    for r in runs.itertuples():
        res = json.loads(r.result)
        assert res["final_eval_loss"] == pytest.approx(table.set_index("run_id").loc[r.run_id, "loss"])


def test_killed_run_resumes_to_the_same_final_loss(tmp_path):
    pytest.importorskip("transformers")
    from scaling.sweep.train import run_worker

    cfg = max(expand(load_spec(ROOT / "sweeps" / "ci.yaml")), key=lambda c: c["steps"] * c["N"])
    cfg = {**cfg, "checkpoint": {"every": 0.1}}
    code = ("import json, sys; from scaling.sweep.train import run_worker; "
            "run_worker(json.loads(sys.argv[1]), sys.argv[2], 1)")
    broken = tmp_path / "broken"
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(cfg), str(broken)])
    deadline = time.time() + 120
    while not (broken / "ckpt.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (broken / "result.json").exists(), "the run finished before it could be killed"
    resumed = run_worker(cfg, str(broken), 1)
    unbroken = run_worker(cfg, str(tmp_path / "unbroken"), 1)
    assert resumed["resumed_from"] > 0
    assert resumed["final_eval_loss"] == pytest.approx(unbroken["final_eval_loss"], rel=1e-6)


def test_a_second_driver_on_the_same_sweep_is_refused(tmp_path):
    import fcntl

    from scaling.errors import ScalingError

    d = tmp_path / "toy"
    d.mkdir(parents=True)
    with open(d / "driver.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ScalingError, match="already being run"):
            run_sweep(toy_spec(), root=tmp_path, progress=False)


class _Stubborn(Exception):
    """An exception that pickles but cannot be unpickled (its __init__ takes an argument it does not store),
    like some of transformers' config errors."""

    def __init__(self, message, cause):
        super().__init__(message)


def _raise_stubborn():
    raise _Stubborn("RoPE requires an even rotary dimension", cause=None)


def _raise_plain():
    raise ValueError("plain")


def test_a_worker_exception_that_cannot_travel_comes_back_as_text():
    import pickle

    from scaling.sweep.executors import WorkerError, _portable

    with pytest.raises(TypeError):  # what broke the whole process pool before
        pickle.loads(pickle.dumps(_Stubborn("x", None)))
    with pytest.raises(WorkerError, match="_Stubborn: RoPE requires an even rotary dimension") as info:
        _portable(_raise_stubborn)
    assert "_raise_stubborn" in str(info.value)  # the worker's traceback, as text
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)
    with pytest.raises(ValueError, match="plain"):  # one that travels is raised as itself
        _portable(_raise_plain)
    assert _portable(len, [1, 2]) == 2


def test_isoflop_budgets_left_empty_or_thin_are_named():
    # each was dropped, or trained 1-2 sizes that no parabola can use, without a word
    spec = load_spec(toy_spec(grid={"tokens": None, "compute": [1e9, 3e10, 1e12]}))
    with pytest.warns(Warning, match=r"C=1e\+09 gets no size .* is left out; C=3e\+10 gets 1 size\(s\) \(N=16,528\): "
                                     r"an IsoFLOP profile needs 3 or more"):
        runs = expand(spec)
    assert {r["budget"] for r in runs} == {3e10, 1e12}
    with pytest.raises(SpecError, match=r"every budget in grid.compute \(1e\+05\) is too small for every size: the "
                                        r"smallest size, N=16,528, needs C >= 8.12e\+09 FLOPs"):
        expand(load_spec(toy_spec(grid={"tokens": None, "compute": [1e5]})))


def test_target_sizes_far_from_their_shape_are_named_once():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expand(load_spec(toy_spec(model={"sizes": [10, 3000, 80000], "seq_len": 64})))
    msgs = [str(w.message) for w in caught if "model.sizes" in str(w.message)]
    assert len(msgs) == 1, msgs
    assert "10 and 3,000 map to one shape (2 layers x d_model 16, N=8,272), trained once" in msgs[0]
    assert "3,000 became N=8,272" in msgs[0] and "2.8x above the target" in msgs[0]


def test_status_eta_is_the_remaining_flops_at_one_workers_speed_over_the_runs_in_flight(tmp_path, monkeypatch):
    import json as _json

    import scaling.sweep.runner as runner
    from scaling.sweep.store import Store

    run_sweep(toy_spec(), root=tmp_path, workers=1, progress=False)
    store = Store(tmp_path / "toy" / "sweep.sqlite")
    rows = store.runs()
    secs = {r.run_id: 2.0 + i for i, r in enumerate(rows.itertuples())}
    for r in rows.itertuples():  # known wall times, as a transformer run reports them
        store.set_status(r.run_id, "done", result={**_json.loads(r.result), "seconds": secs[r.run_id]})
    later = list(rows["run_id"][:2])
    store.requeue([])
    for rid in later:
        store.set_status(rid, "pending")
    monkeypatch.setattr(runner, "driver_alive", lambda base: True)
    flops = {r.run_id: 6.0 * _json.loads(r.config)["N"] * _json.loads(r.config)["D"] for r in rows.itertuples()}
    done = [rid for rid in flops if rid not in later]
    rate = sum(flops[r] for r in done) / sum(secs[r] for r in done)
    st = status("toy", tmp_path)
    assert st["remaining"] == 2 and st["eta_s"] == pytest.approx(sum(flops[r] for r in later) / rate, rel=1e-9)


def test_a_store_whose_yaml_gave_3e_minus_3_as_text_resumes_with_its_ids_branches_too(tmp_path):
    # PyYAML 1.1 read `lr: 3e-3` as text, which the ids hashed; now it is a number: every id changes, and the store
    # maps each run back to its old id, a WSD branch's reference to its stable run too
    spec = toy_spec(optimizer={"lr": "3e-3"}, model={"sizes": [20000, 80000], "seq_len": 64},
                    schedule={"type": "wsd", "cooldown": 0.2, "shape": "1-sqrt", "branches": True})
    first = run_sweep(spec, root=tmp_path, workers=1, progress=False)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**spec, "optimizer": {"lr": 0.003}}).replace("lr: 0.003", "lr: 3e-3"))
    assert "lr: 3e-3" in path.read_text()
    again = run_sweep(path, root=tmp_path, workers=1, progress=False)
    assert sorted(again["run_id"]) == sorted(first["run_id"]) and (again["attempts"] == 1).all()
    assert (again["status"] == "done").all()


def test_runs_beside_a_run_that_kills_its_worker_are_not_charged_for_it(tmp_path, monkeypatch):
    # with two workers, whatever ran beside the killer lost an attempt at every death and failed with it
    killer = 73968  # the largest size of the toy sweep: its two runs kill their worker every time they log
    monkeypatch.setenv("SCALING_TOY_DIE_N", str(killer))
    monkeypatch.setenv("SCALING_TOY_STEP_SLEEP", "0.002")  # runs overlap
    runs = run_sweep(toy_spec(retries=1), root=tmp_path, workers=2, progress=False)
    N = runs["config"].map(lambda c: json.loads(c)["N"])
    assert (runs.loc[N == killer, "status"] == "failed").all() and (runs.loc[N == killer, "attempts"] == 2).all()
    assert (runs.loc[N != killer, "status"] == "done").all() and (runs.loc[N != killer, "attempts"] == 1).all()
