"""Issue #10, the sweep and overopt runners: unsafe checkpoints, workers outliving their driver, retrying
failed runs, unreadable checkpoints, edited definitions, export paths, and bad values in a definition."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from scaling.cli import main
from scaling.errors import ScalingWarning
from scaling.sweep import expand, export, load_spec, run_sweep, status
from scaling.sweep.spec import SpecError
from test_sweep import toy_spec

ROOT = Path(__file__).resolve().parent.parent
CI_YAML = ROOT / "sweeps" / "ci.yaml"

# one toy run (49 steps), or two with a second size
TOY = {"name": "toy1", "trainer": "toy", "model": {"sizes": [20000], "seq_len": 64}, "grid": {"tokens": [200000]},
       "batch": {"tokens_per_step": 4096}, "toy": {"noise": 0.001}, "checkpoint": {"every": 0.1}}


def toy(**overrides):
    return toy_spec(TOY, **overrides)


def write_yaml(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


class _Evil:
    """A pickle that runs a shell command when loaded without weights_only."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def smallest_ci_config():
    return min(expand(load_spec(CI_YAML)), key=lambda c: c["steps"] * c["N"])


# ------------------------------------------------------- 3. checkpoints that run code
@pytest.mark.parametrize("zipped", [True, False])
def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path, zipped):
    torch = pytest.importorskip("torch")
    from scaling.sweep.train import UnsafeCheckpointError, load_checkpoint

    marker = tmp_path / "pwned"
    path = tmp_path / "ckpt.pt"
    torch.save({"model": _Evil(marker), "optim": {}, "step": 1}, path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load .*ckpt.pt.*posix.system.*could run code"):
        load_checkpoint(path)
    assert not marker.exists()


def test_the_trainer_refuses_a_crafted_checkpoint_in_its_run_folder(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from scaling.sweep.train import UnsafeCheckpointError, run_worker

    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": _Evil(marker), "optim": {}, "step": 1}, run / "ckpt.pt")
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        run_worker(smallest_ci_config(), str(run), 1)
    assert not marker.exists()
    assert (run / "ckpt.pt").exists() and not (run / "result.json").exists()  # refused, not set aside as damaged


def test_overopt_refuses_a_crafted_policy_file_in_a_named_policy_directory(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from scaling.overopt import load_spec as load_overopt
    from scaling.overopt.cells import run_cell
    from scaling.overopt.spec import cells
    from scaling.sweep.train import UnsafeCheckpointError

    marker = tmp_path / "pwned"
    pdir = tmp_path / "policy"
    pdir.mkdir()
    torch.save({"model": _Evil(marker)}, pdir / "policy.pt")
    spec = load_overopt({"name": "evil", "policy": {"dir": str(pdir)}})
    policy_cell = cells(spec)[0]
    assert policy_cell["stage"] == "policy"
    with pytest.raises(UnsafeCheckpointError, match="refusing to load .*policy.pt"):
        run_cell(policy_cell, str(tmp_path / "sweep"))
    assert not marker.exists()


def test_overopt_files_with_numpy_arrays_load_with_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    import numpy as np

    from scaling.overopt.cells import _load, _save

    obj = {"bank_gold": np.arange(6.0).reshape(2, 3), "keep": np.array([True, False]), "bank": torch.ones(2, 3),
           "shape": [4, 1, 1], "offset": 0.25}
    _save(obj, tmp_path / "x.pt")
    back = _load(tmp_path / "x.pt")
    np.testing.assert_array_equal(back["bank_gold"], obj["bank_gold"])
    np.testing.assert_array_equal(back["keep"], obj["keep"])
    assert back["shape"] == [4, 1, 1] and back["offset"] == 0.25 and torch.equal(back["bank"], obj["bank"])


# ------------------------------------------------- 4. workers die with their driver
def _start_driver(tmp_path, name, command=("sweep", "run")):
    # ~50 s a run in the driver started here: long enough that a loaded machine (workers that take many seconds to
    # start) cannot finish the sweep before the test signals it; the test's own resume runs without the sleep
    spec = toy(name=name, model={"sizes": [20000, 80000]}, grid={"tokens": [800000]})
    path = write_yaml(tmp_path / f"{name}.yaml", spec)
    root = tmp_path / "root"
    cmd = [sys.executable, "-m", "scaling.cli", *command, str(path), "--root", str(root), "--workers", "2"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", SCALING_TOY_STEP_SLEEP="0.25")
    # output to a file, not a pipe: workers that outlive their driver would hold a pipe open
    with open(tmp_path / "driver.err", "w") as err:
        # SIGINT at its default in the driver, as in a terminal: a test process started in the background by a
        # non-interactive shell ignores SIGINT, and a Python started with it ignored never turns it into Ctrl-C
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True, env=env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    runs = root / name / "runs"
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:  # both workers are training, past a checkpoint
        if runs.exists() and len(list(runs.glob("*/ckpt.json"))) >= 2:
            break
        time.sleep(0.1)
    assert proc.poll() is None, (tmp_path / "driver.err").read_text()
    return proc, path, root


def _descendants(pid):
    psutil = pytest.importorskip("psutil")
    return psutil.Process(pid).children(recursive=True)


def _wait_gone(procs, timeout):
    import psutil

    deadline = time.time() + timeout
    alive = procs
    while time.time() < deadline:
        alive = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return []
        time.sleep(0.1)
    return alive


def test_workers_die_when_the_driver_is_killed(tmp_path):
    proc, path, root = _start_driver(tmp_path, "orphans")
    try:
        workers = _descendants(proc.pid)
        assert len(workers) >= 2
        proc.kill()  # kill -9 of the driver alone, not its process group
        proc.wait()
        alive = _wait_gone(workers, 5)
        assert not alive, f"workers outlived their driver: {[p.pid for p in alive]}"
        # a new driver finishes the sweep; the killed runs resume from their checkpoints
        runs = run_sweep(path, root=root, workers=2, progress=False)
        assert (runs["status"] == "done").all()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_stops_the_sweep_at_once_with_one_line(tmp_path, sig, code):
    proc, path, root = _start_driver(tmp_path, "stopme")
    try:
        workers = _descendants(proc.pid)
        t = time.time()
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # a terminal's Ctrl-C reaches the driver and its workers
        else:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        took = time.time() - t
        err = (tmp_path / "driver.err").read_text()
        assert proc.returncode == code, err
        assert took < 8, f"stopping took {took:.1f} s"
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
        lines = [ln for ln in err.splitlines() if ln.startswith("interrupted:")]
        assert len(lines) == 1, err
        assert "0 runs finished, 2 pending; resume with: scaling sweep run" in lines[0] and str(path) in lines[0]
        assert not _wait_gone(workers, 5)
        runs = status("stopme", root)
        assert runs["running"] == 0 and runs["pending"] == 2
        again = run_sweep(path, root=root, workers=2, progress=False)
        assert (again["status"] == "done").all() and (again["attempts"] == 1).all()  # the stopped try not counted
        assert any(json.loads(r)["resumed_from"] > 0 for r in again["result"])
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_ctrl_c_that_lands_on_another_thread_still_stops_the_driver(tmp_path, monkeypatch):
    # the kernel may hand a process-wide SIGINT to any thread (the pool's manager thread, a progress bar's); Python
    # then only sets a flag, and a main thread blocked waiting for a run would not see it until the run ended
    monkeypatch.setenv("SCALING_TOY_STEP_SLEEP", "0.25")  # ~50 s a run; the spawned workers inherit it
    spec = toy(name="otherthread", model={"sizes": [20000, 80000]}, grid={"tokens": [800000]})
    runs = tmp_path / "otherthread" / "runs"
    sent = {}

    def ctrl_c_from_this_thread():
        deadline = time.time() + 90
        while time.time() < deadline and len(list(runs.glob("*/ckpt.json"))) < 2:
            time.sleep(0.1)
        sent["t"] = time.time()
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # delivered to this thread, not the main one

    th = threading.Thread(target=ctrl_c_from_this_thread, daemon=True)
    # Ctrl-C handled as in a terminal, even when this test process was started with SIGINT ignored
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        th.start()
        with pytest.raises(KeyboardInterrupt):
            run_sweep(spec, root=tmp_path, workers=2, progress=False)
    finally:
        signal.signal(signal.SIGINT, old)
    th.join(5)
    assert "t" in sent and time.time() - sent["t"] < 8, "the driver did not stop at once"
    st = status("otherthread", tmp_path)
    assert st["running"] == 0 and st["pending"] == 2


def test_a_worker_waits_for_a_run_another_process_holds(tmp_path):
    import fcntl

    from scaling.sweep.train import run_worker

    cfg = expand(load_spec(toy()))[0]
    run = tmp_path / "run"
    run.mkdir()
    out = {}
    with open(run / "lock", "w") as held:  # an old worker still on this run
        fcntl.flock(held, fcntl.LOCK_EX)
        th = threading.Thread(target=lambda: out.update(run_worker(cfg, str(run), 1)))
        th.start()
        time.sleep(0.5)
        assert th.is_alive() and not (run / "log.jsonl").exists()
    th.join(30)
    assert out["status"] == "done"


# --------------------------------------------- 5. failed runs, unreadable checkpoints
def test_failed_runs_are_retried_on_request_and_their_errors_shown(tmp_path, capsys):
    path = write_yaml(tmp_path / "flaky.yaml", toy(name="flaky", retries=0, toy={"fail_once": True}))
    root = tmp_path / "root"
    argv = ["sweep", "run", str(path), "--root", str(root), "--workers", "1"]
    assert main(argv) == 1
    capsys.readouterr()
    assert main(argv) == 1  # nothing to run: says why and what to do
    out = capsys.readouterr()
    assert "--retry-failed" in out.out + out.err
    st = status("flaky", root)
    assert st["failed"] == 1
    assert st["failed_runs"][0]["error"] == "RuntimeError: toy trainer: deliberate first-attempt failure"
    assert main(["sweep", "status", "flaky", "--root", str(root)]) == 0
    assert "deliberate first-attempt failure" in capsys.readouterr().out
    table, _ = export("flaky", root)
    assert table["error"].iloc[0] == "RuntimeError: toy trainer: deliberate first-attempt failure"
    assert {"run_id", "N", "D", "loss", "status"} <= set(table.columns)
    assert main(argv + ["--retry-failed"]) == 0
    runs = status("flaky", root)
    assert runs["done"] == 1 and runs["failed_runs"] == []
    table, _ = export("flaky", root)
    assert table["error"].isna().all() and table["loss"].notna().all()


def test_a_truncated_toy_checkpoint_is_set_aside_and_the_run_restarts(tmp_path):
    spec = toy(name="cut")
    rid = expand(load_spec(spec))[0]["run_id"]
    run = tmp_path / "cut" / "runs" / rid
    run.mkdir(parents=True)
    (run / "ckpt.json").write_text('{"step": 2')
    runs = run_sweep(spec, root=tmp_path, workers=1, progress=False)
    assert runs["status"].tolist() == ["done"] and runs["attempts"].tolist() == [1]
    res = json.loads(runs["result"].iloc[0])
    assert res["resumed_from"] == 0 and "ckpt.json.corrupt" in res["checkpoint_set_aside"]
    assert (run / "ckpt.json.corrupt").read_text() == '{"step": 2'


def test_a_truncated_checkpoint_restarts_the_run_from_scratch_to_the_same_loss(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from scaling.sweep.train import run_worker

    cfg = smallest_ci_config()
    run = tmp_path / "cut"
    run.mkdir()
    torch.save({"model": {"w": torch.randn(64, 64)}, "optim": {}, "step": 3}, tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    (run / "ckpt.pt").write_bytes(data[: len(data) // 2])
    with pytest.warns(ScalingWarning, match="cut short or damaged.*moved it to ckpt.pt.corrupt"):
        res = run_worker(cfg, str(run), 1)
    assert res["resumed_from"] == 0 and (run / "ckpt.pt.corrupt").exists()
    unbroken = run_worker(cfg, str(tmp_path / "unbroken"), 1)
    assert res["final_eval_loss"] == unbroken["final_eval_loss"]


# ------------------------------------------------------ 6. an edited definition
def test_changed_training_settings_under_the_same_name_are_refused(tmp_path):
    from scaling.sweep.runner import SweepChangedError

    run_sweep(toy(name="same"), root=tmp_path, workers=1, progress=False)
    with pytest.raises(SweepChangedError, match=r"optimizer.lr: 0.003 -> 0.01.*new `name:`.*revert"):
        run_sweep(toy(name="same", optimizer={"lr": 0.01}), root=tmp_path, workers=1, progress=False)
    assert len(status("same", tmp_path)["failed_runs"]) == 0 and status("same", tmp_path)["total"] == 1
    # more sizes and seeds with the same settings extend the sweep
    runs = run_sweep(toy(name="same", model={"sizes": [20000, 80000]}, seeds=[0, 1], retries=3), root=tmp_path,
                     workers=2, progress=False)
    assert len(runs) == 4 and (runs["status"] == "done").all()


def test_changed_overopt_training_settings_are_refused(tmp_path, monkeypatch):
    from scaling.overopt import load_spec as load_overopt
    from scaling.overopt import runner as oo
    from scaling.sweep.runner import SweepChangedError
    from scaling.sweep.store import Store

    spec = load_overopt(ROOT / "sweeps" / "overopt-ci.yaml")
    Store(tmp_path / spec["name"] / "sweep.sqlite").set_meta(spec=spec)

    def no_executor(*a, **k):
        raise RuntimeError("the sweep would have run")

    from scaling.sweep import graph

    monkeypatch.setattr(graph, "get_executor", no_executor)  # the one runner every sweep kind uses
    changed = json.loads(json.dumps(spec))
    changed["rl"]["lr"] = 0.01
    with pytest.raises(SweepChangedError, match=r"rl.lr: 0.001 -> 0.01.*new `name:`"):
        oo.run_overopt(changed, root=tmp_path, progress=False)
    more = json.loads(json.dumps(spec))
    more["rl"]["kl_penalty"] = [0.0, 0.1, 0.5]
    more["reward_models"]["shapes"].append([64, 1, 4])
    with pytest.raises(RuntimeError, match="would have run"):  # an extension goes ahead
        oo.run_overopt(more, root=tmp_path, progress=False)


def test_export_writes_its_curves_beside_its_own_table(tmp_path, capsys):
    root = tmp_path / "root"
    run_sweep(toy(name="exp"), root=root, workers=1, progress=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "curves.csv").write_text("someone else's curves\n")
    assert main(["sweep", "export", "exp", "--root", str(root), "--out", str(out / "exp.csv")]) == 0
    assert (out / "curves.csv").read_text() == "someone else's curves\n"
    assert (out / "exp_curves.csv").read_text().startswith("run_id,step")
    # the documented pair: runs.csv and curves.csv
    assert main(["sweep", "export", "exp", "--root", str(root), "--out", str(out / "runs.csv")]) == 0
    assert (out / "curves.csv").read_text().startswith("run_id,step")


def test_export_checks_its_output_path_first(tmp_path, capsys):
    root = tmp_path / "root"
    run_sweep(toy(name="exp2"), root=root, workers=1, progress=False)
    capsys.readouterr()
    assert main(["sweep", "export", "exp2", "--root", str(root), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "is a directory" in err and err.count("\n") == 1
    deep = tmp_path / "new" / "folder" / "runs.csv"
    assert main(["sweep", "export", "exp2", "--root", str(root), "--out", str(deep)]) == 0
    assert deep.exists() and (deep.parent / "curves.csv").exists()
    assert main(["overopt", "export", "nosuch", "--root", str(root), "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


# ---------------------------------------------------- bad values in a definition
@pytest.mark.parametrize("change,key", [
    ({"model": {"sizes": [-3000]}}, "model.sizes"),
    ({"optimizer": {"lr": "fast"}}, "optimizer.lr"),
    ({"grid": {"tokens": None, "compute": [1e12, -1e12]}}, "grid.compute"),
    ({"grid": {"tokens": [200000, -5]}}, "grid.tokens"),
    ({"seeds": ["a"]}, "seeds"),
    ({"eval": {"every": 0}}, "eval.every"),
])
def test_bad_values_are_one_line_naming_the_key(tmp_path, capsys, change, key):
    spec = toy(name="badvalue")
    for k, v in change.items():
        spec[k] = {**spec.get(k, {}), **v} if isinstance(v, dict) else v
    with pytest.raises(SpecError, match=f"^{key} must be"):
        load_spec(spec)
    path = write_yaml(tmp_path / "bad.yaml", spec)
    assert main(["sweep", "run", str(path), "--root", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {key} must be") and err.count("\n") == 1
    assert not (tmp_path / "root" / "badvalue" / "runs").exists()


def test_bad_overopt_values_are_one_line_naming_the_key(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    for text, key in [("rl: {lr: fast}", "rl.lr"), ("preferences: {pairs: [fast]}", "preferences.pairs"),
                      ("policy: {d_model: 64.5}", "policy.d_model")]:
        path.write_text(f"name: x\n{text}\n")
        assert main(["overopt", "run", str(path), "--root", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {key} must be") and err.count("\n") == 1, err


def test_a_damaged_store_is_one_line_saying_what_to_do(tmp_path, capsys):
    d = tmp_path / "broken"
    d.mkdir()
    (d / "sweep.sqlite").write_bytes(b"this is not a database" * 100)
    assert main(["sweep", "status", "broken", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "sweep.sqlite is damaged" in err and "move it aside" in err and "writable" not in err
    assert err.count("\n") == 1
    path = write_yaml(tmp_path / "broken.yaml", toy(name="broken"))
    assert main(["sweep", "run", str(path), "--root", str(tmp_path)]) == 2
    assert "is damaged" in capsys.readouterr().err


def test_export_of_runs_that_are_not_done_says_so(tmp_path, capsys):
    root = tmp_path / "root"
    spec = toy(name="unfinished")
    spec["toy"] = {**spec.get("toy", {}), "nan_at": 0.5}
    run_sweep(spec, root=root, workers=1, progress=False)
    capsys.readouterr()
    assert main(["sweep", "export", "unfinished", "--root", str(root), "--out", str(tmp_path / "u.csv")]) == 0
    err = capsys.readouterr().err
    n = len(expand(load_spec(spec)))
    assert f"note: {n} of {n} runs are not done ({n} diverged): their rows have no final loss" in err
