"""Adaptive placement of runs on an IsoFLOP sweep (issue #13 item 3): scaling/sweep/adaptive.py.

The toy trainer's loss is a known law, L = E + A / N^alpha + B / D^beta (scaling/sweep/train.py train_toy), so each
budget's compute-optimal size is known in closed form: with D = C / 6N, N_opt = G (C/6)^(beta/(alpha+beta)),
G = (alpha A / (beta B))^(1/(alpha+beta)), and the allocation exponent is a = beta / (alpha + beta).
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from scaling.cli import main
from scaling.errors import ScalingError
from scaling.sweep import expand, export, load_spec, run_sweep
from scaling.sweep.adaptive import extend, fit_profiles, lattice, propose, propose_auto
from scaling.sweep.spec import DEFAULTS, SpecError

TOY = DEFAULTS["toy"]


def true_n_opt(C):
    al, be = TOY["alpha"], TOY["beta"]
    G = (al * TOY["A"] / (be * TOY["B"])) ** (1 / (al + be))
    return G * (C / 6.0) ** (be / (al + be))


def adaptive_spec(name="adapt", widths=(8, 16, 24), compute=(1e12, 3e12, 1e13), seeds=(0, 1), **grid):
    """2-layer toy shapes of head size 8 whose largest (N = 18,552) is below every budget's optimum (32k-94k)."""
    return {"name": name, "trainer": "toy",
            "model": {"shapes": [{"n_layer": 2, "d_model": d, "n_head": d // 8} for d in widths], "seq_len": 64},
            "grid": {"compute": list(compute), "max_tokens_per_param": 20000, **grid},
            "batch": {"tokens_per_step": 16384}, "seeds": list(seeds), "toy": {"noise": 0.001},
            "checkpoint": {"every": 0.5}, "eval": {"every": 0.5}}


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """One adaptive sweep: up to 3 rounds, stopping once a's 90% interval is narrower than 0.1."""
    root = tmp_path_factory.mktemp("adaptive")
    spec = adaptive_spec()
    spec["grid"]["adaptive"] = {"rounds": 3, "target_ci_a": 0.1}
    out = extend(spec, root=root, workers=2, progress=False, bootstrap=100)
    return spec, root, out


def test_sizes_are_added_on_the_side_where_the_optimum_is(grown):
    spec, root, out = grown
    grid = pd.DataFrame(expand(load_spec(spec)))
    first = out["rounds"][0]
    assert first["round"] == 1 and first["ci_a"] is None  # no budget had a usable profile before round 1
    for budget in spec["grid"]["compute"]:
        largest = grid.loc[np.isclose(grid["budget"], budget), "N"].max()
        assert true_n_opt(budget) > 1.5 * largest  # the grid misses every optimum, above its sizes
        added = [a["N"] for a in first["added"] if np.isclose(a["budget"], budget)]
        assert added and all(n > largest for n in added), (budget, added)
    # the size below the only one sampled at 1e13 would train 24k tokens per parameter: said, not added
    assert [(s["budget"], s["N"]) for s in first["skipped"]] == [(1e13, 8272)]
    assert "max_tokens_per_param" in first["skipped"][0]["reason"]
    # added sizes are shapes the sweep can build: its depth, widths a multiple of the head size
    runs = export(spec["name"], root)[0]
    assert set(runs["n_layer"]) == {2} and (runs["d_model"] % 8 == 0).all()
    assert (runs["d_model"] // runs["n_head"] == 8).all()
    # and they bracket the optima: the profiles now find them where the law puts them
    ok = [p for p in out["profiles"] if p["N_opt"] is not None]
    assert len(ok) >= 2
    for p in ok:
        assert p["N_opt"] == pytest.approx(true_n_opt(p["budget"]), rel=0.15), p


def test_rounds_stop_when_the_interval_target_is_met(grown):
    spec, root, out = grown
    assert out["stopped"].startswith("target met")
    assert out["width"] < 0.1 and out["ci_a"][1] - out["ci_a"][0] == pytest.approx(out["width"])
    assert out["round"] < 3  # it stopped before the rounds ran out
    true_a = TOY["beta"] / (TOY["alpha"] + TOY["beta"])
    assert out["ci_a"][0] - 0.03 < true_a < out["ci_a"][1] + 0.03
    # the same command again: the target is met, nothing is added or trained
    before = export(spec["name"], root)[0]
    again = extend(spec["name"], root=root, progress=False, bootstrap=100)
    after = export(spec["name"], root)[0]
    assert again["round"] == out["round"] and len(after) == len(before)
    assert (after.set_index("run_id")["loss"] == before.set_index("run_id")["loss"]).all()


def test_rounds_run_out(grown):
    spec, root, out = grown
    res = extend(spec["name"], rounds=out["round"], target_ci_a=1e-6, root=root, progress=False, bootstrap=20)
    assert res["stopped"] == f"rounds ran out ({out['round']} of {out['round']})"
    assert len(export(spec["name"], root)[0]) == res["runs"]


def test_round_column_records_who_added_each_run(grown):
    spec, root, out = grown
    runs = export(spec["name"], root)[0]
    grid_ids = {c["run_id"] for c in expand(load_spec(spec))}
    assert (runs.loc[runs["run_id"].isin(grid_ids), "round"] == 0).all()
    added = runs[~runs["run_id"].isin(grid_ids)]
    assert len(added) and (added["round"] >= 1).all()
    for h in out["rounds"]:  # every size a round added, with every seed, carries that round
        mine = added[added["round"] == h["round"]]
        assert sorted(zip(mine["budget"], mine["N"])) == sorted(
            (a["budget"], a["N"]) for a in h["added"] for _ in spec["seeds"])
        assert len(mine) == h["runs"]
    assert (runs["status"] == "done").all()
    # `scaling sweep run` sees the added runs as cells of the sweep: nothing left to run
    again = run_sweep(spec, root=root, progress=False)
    assert len(again) == len(runs) and (again["attempts"] == 1).all()


def test_placement_snaps_to_buildable_shapes_around_the_optimum():
    spec = load_spec(adaptive_spec(widths=(8, 16, 24, 32, 40, 48)))
    shapes = lattice({"n_layer": 2, "d_model": 24, "n_head": 3}, spec)
    assert [s["d_model"] for s in shapes[:4]] == [8, 16, 24, 32] and {s["n_layer"] for s in shapes} == {2}
    # a profile with its minimum at N = 40,000 among sizes 2k-74k (widths 8-48): one size each side of it
    N = {s["d_model"]: s["N"] for s in shapes}
    sampled = [8, 16, 48]
    means = pd.DataFrame({"budget": 1e12, "N": [N[d] for d in sampled], "loss": [3.0, 2.5, 2.6],
                          "n_layer": 2, "d_model": sampled, "n_head": [d // 8 for d in sampled]})
    fitted = {"means": means, "profiles": [{"budget": 1e12, "n_sizes": 3, "N_opt": 40000.0, "status": "ok"}]}
    added, skipped = propose(spec, fitted, 2)
    assert skipped == []
    # targets 20k and 80k: d 24 (18.6k) below; above, d 48 is sampled and d 56 (101k) is nearer 80k than d 40 (51k)
    assert sorted(a["d_model"] for a in added) == [24, 56]
    assert {a["side"] for a in added} == {"below", "above"}
    # a profile whose minimum lies above the largest size: both added sizes above it
    fitted["profiles"][0].update(N_opt=None, status="minimum at N=1e+05, above the largest size sampled")
    means["loss"] = [3.0, 2.8, 2.6]
    added, _ = propose(spec, fitted, 2)
    assert all(a["N"] > N[48] for a in added) and len(added) == 2
    # sizes too big for the budget's min_steps are reported, not added
    added, skipped = propose(load_spec({**adaptive_spec(), "grid": {"compute": [1e12], "min_steps": 400}}), fitted, 2)
    assert added == [] and skipped and all("grid.min_steps" in s["reason"] for s in skipped)


@pytest.mark.parametrize("adaptive,msg", [
    ({"rounds": 0, "target_ci_a": 0.1}, r"grid.adaptive.rounds must be an integer >= 1"),
    ({"rounds": 2, "target_ci_a": 0}, r"grid.adaptive.target_ci_a must be a number > 0"),
    ({"rounds": 2, "target_ci_a": -0.1}, r"grid.adaptive.target_ci_a must be a number > 0"),
    ({"rounds": 2, "target": 0.1}, r"unknown key\(s\) \['target'\] in grid.adaptive"),
    (3, r"grid.adaptive is a mapping"),
])
def test_bad_adaptive_settings_fail_before_training(adaptive, msg):
    spec = adaptive_spec()
    spec["grid"]["adaptive"] = adaptive
    with pytest.raises(SpecError, match=msg):
        load_spec(spec)


def test_adaptive_needs_an_isoflop_grid(tmp_path):
    spec = adaptive_spec()
    spec["grid"] = {"tokens": [1e6, 4e6], "adaptive": {"rounds": 2, "target_ci_a": 0.1}}
    with pytest.raises(SpecError, match="IsoFLOP profiles: it needs grid.compute"):
        load_spec(spec)
    del spec["grid"]["adaptive"]
    with pytest.raises(ScalingError, match="IsoFLOP sweeps only"):
        extend(spec, rounds=2, target_ci_a=0.1, root=tmp_path, progress=False)
    assert not (tmp_path / spec["name"]).exists()  # refused before anything trained


def test_command_values_are_checked_and_named(tmp_path, capsys):
    spec = adaptive_spec(name="opts")
    with pytest.raises(ScalingError, match=r"--target-ci-a must be a number > 0; got 0"):
        extend(spec, rounds=2, target_ci_a=0, root=tmp_path, progress=False)
    with pytest.raises(ScalingError, match=r"--rounds must be an integer >= 1; got 0"):
        extend(spec, rounds=0, target_ci_a=0.1, root=tmp_path, progress=False)
    with pytest.raises(ScalingError, match=r"no target_ci_a .* give --target-ci-a"):
        extend(spec, rounds=2, root=tmp_path, progress=False)
    path = tmp_path / "opts.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["sweep", "extend", str(path), "--rounds", "2", "--target-ci-a", "-1", "--root", str(tmp_path)]) == 2
    assert "--target-ci-a must be a number > 0" in capsys.readouterr().err
    assert main(["sweep", "extend", "nosuch", "--rounds", "2", "--target-ci-a", "0.1", "--root", str(tmp_path)]) == 2
    assert "no sweep named 'nosuch'" in capsys.readouterr().err
    assert not (tmp_path / "opts").exists()


def _round_cells(db):
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT run_id, status, config, attempts FROM runs").fetchall()
    return {r[0]: (r[1], json.loads(r[2]).get("round", 0), r[3]) for r in rows}


def test_kill_9_during_a_round_then_extend_again_adds_and_trains_nothing_twice(tmp_path):
    spec = adaptive_spec(name="killround", compute=(3e11, 1e12), seeds=(0,))
    spec["toy"]["step_sleep"] = 0.0005
    spec["grid"]["adaptive"] = {"rounds": 2, "target_ci_a": 1e-6}  # never met: both rounds run
    path = tmp_path / "killround.yaml"
    path.write_text(yaml.safe_dump(spec))
    root = tmp_path / "root"
    cmd = [sys.executable, "-m", "scaling.cli", "sweep", "extend", str(path), "--root", str(root), "--workers", "2",
           "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    db = root / "killround" / "sweep.sqlite"
    deadline, seen = time.time() + 180, {}
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        if db.exists():
            try:
                seen = _round_cells(db)
            except sqlite3.OperationalError:
                continue
            if any(rnd == 1 and st == "running" for st, rnd, _ in seen.values()):
                break
    alive = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, in the middle of round 1
    proc.wait()
    round1 = {rid for rid, (_, rnd, _) in seen.items() if rnd == 1}
    assert alive and any(st == "running" and rnd == 1 for st, rnd, _ in seen.values()), \
        "round 1 was not under way when the driver was killed"
    assert not any(rnd == 2 for _, rnd, _ in seen.values())
    done_before = {rid for rid, (st, _, _) in seen.items() if st == "done"}
    out = extend(path, root=root, workers=2, progress=False, bootstrap=50)
    after = _round_cells(db)
    assert {rid for rid, (_, rnd, _) in after.items() if rnd == 1} == round1  # round 1 was not decided again
    assert [h["round"] for h in out["rounds"]] == [1, 2] and out["round"] == 2
    runs = export("killround", root)[0].set_index("run_id")
    assert (runs["status"] == "done").all() and runs.index.is_unique
    assert all(after[rid][2] == 1 for rid in done_before)  # finished before the kill: not trained again
    assert all(a <= 2 for _, _, a in after.values())  # the killed ones once more, resumed
    assert out["rounds"][1]["runs"] == int((runs["round"] == 2).sum())


# ------------------------------------------------------------------ replicates: auto
SYN = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # a = beta / (alpha + beta) = 0.4516
SYN_BUDGETS = (1e17, 1e18, 1e19, 1e20)


def syn_n_opt(C):
    G = (SYN["alpha"] * SYN["A"] / (SYN["beta"] * SYN["B"])) ** (1 / (SYN["alpha"] + SYN["beta"]))
    return G * (C / 6.0) ** (SYN["beta"] / (SYN["alpha"] + SYN["beta"]))


def syn_table(seeds=(0, 1, 2), sizes=8, noise=0.004):
    """A synthetic IsoFLOP table with a known optimum: per budget, ``sizes`` sizes a factor 2 apart centred on the
    closed-form N_opt, each with every seed (a run's loss: the law plus seeded noise of sd ``noise``)."""
    rng = np.random.default_rng(7)
    rows = []
    for C in SYN_BUDGETS:
        mid = syn_n_opt(C)
        for i in range(sizes):
            N = float(round(mid * 2.0 ** (i - (sizes - 1) / 2)))
            D = C / (6 * N)
            for s in seeds:
                law = SYN["E"] + SYN["A"] / N ** SYN["alpha"] + SYN["B"] / D ** SYN["beta"]
                loss = law + noise * rng.standard_normal()
                rows.append({"N": N, "D": D, "C": C, "budget": C, "loss": loss, "seed": s, "status": "done",
                             "n_layer": 2, "d_model": i + 1, "n_head": 1, "flops": 6 * N * D})
    return pd.DataFrame(rows)


def _looked_up(table):
    def candidates(budget, ref):
        g = table[np.isclose(table["budget"], budget)].drop_duplicates("N")
        return [{"n_layer": 2, "d_model": int(r.d_model), "n_head": 1, "N": int(r.N)} for r in g.itertuples()]
    return candidates


def _middle(table, k, seed=0, shift=0):
    keep = []
    for _, g in table.groupby("budget"):
        d = sorted(g["d_model"].unique())
        lo = len(d) // 2 - k // 2 + shift
        keep.append(g[g["d_model"].isin(d[lo:lo + k]) & (g["seed"] == seed)])
    return pd.concat(keep)


def _rows(table, added):
    return pd.concat([table[np.isclose(table["budget"], a["budget"]) & (table["N"] == a["N"])
                            & table["seed"].isin(a["seeds"])] for a in added])


def test_auto_first_adds_one_seed_sizes_where_a_profile_is_open_or_thin():
    table = syn_table()
    have = _middle(table, 3, shift=-2)  # the 3 sizes below each optimum: every profile still falls at its largest
    fitted = fit_profiles(have, bootstrap=0)
    assert all(p["N_opt"] is None for p in fitted["profiles"])
    added, skipped = propose_auto(None, fitted, 2, seeds=[0, 1, 2], candidates=_looked_up(table),
                                  refuse=lambda b, n: None)
    assert skipped == [] and len(added) == 2 * len(SYN_BUDGETS)
    for C in SYN_BUDGETS:
        largest = have.loc[np.isclose(have["budget"], C), "N"].max()
        mine = [a for a in added if np.isclose(a["budget"], C)]
        assert len(mine) == 2 and all(a["N"] > largest and a["side"] == "above" for a in mine)
    assert all(a["seeds"] == [0] and a["kind"] == "size" for a in added)  # one seed each: no replicates yet


def test_auto_spends_on_the_cheap_budgets_first_and_replicates_with_the_next_seed():
    table = syn_table()
    have = _middle(table, 5)  # every budget usable (a minimum inside 5 sizes): the choice is all per FLOP
    fitted = fit_profiles(have, bootstrap=0)
    assert all(p["N_opt"] is not None and p["n_sizes"] == 5 for p in fitted["profiles"])
    kw = dict(seeds=[0, 1, 2], candidates=_looked_up(table), refuse=lambda b, n: None)
    # growth 0: one run, the first pick; an extreme budget moves the slope most, and the cheaper one costs 1000x less
    one, _ = propose_auto(None, fitted, 2, growth=0.0, **kw)
    assert len(one) == 1 and one[0]["budget"] == min(SYN_BUDGETS)
    # a round of 25% of the FLOPs trained: mostly cheap runs, the expensive budget only if it fits the allowance
    added, _ = propose_auto(None, fitted, 2, growth=0.25, **kw)
    trained = float(have["flops"].sum())
    spent = sum(a["budget"] for a in added)
    assert 0 < spent <= 0.25 * trained * (1 + 1e-9)
    per_budget = {C: sum(np.isclose(a["budget"], C) for a in added) for C in SYN_BUDGETS}
    assert per_budget[1e17] >= per_budget[1e18] >= per_budget[1e20] and per_budget[1e20] <= 1  # one is 0.18 of it
    # most of the cheapest budget's cells get all 3 seeds before the dearest budget gets a run
    first_dear = min([i for i, a in enumerate(added) if a["budget"] == 1e20], default=len(added))
    cheap = [a for a in added[:first_dear] if a["budget"] == 1e17 and a["kind"] == "replicate"]
    assert len(cheap) >= 2 * 3 and added[0]["budget"] == 1e17
    assert any(a["kind"] == "replicate" for a in added)
    # replicates: the next seed of the cell, never past the sweep's seeds; new sizes: the first seed only
    n = {(float(r.budget), r.N): 1 for r in have.itertuples()}
    for a in added:
        key = (a["budget"], float(a["N"]))
        if a["kind"] == "replicate":
            assert a["seeds"] == [n[key]]
            n[key] += 1
        else:
            assert key not in n and a["seeds"] == [0]
            n[key] = 1
    assert max(n.values()) <= 3


def test_auto_replay_reaches_the_target_cheaper_than_the_full_grid_and_finds_a():
    table = syn_table()
    true_a = SYN["beta"] / (SYN["alpha"] + SYN["beta"])
    have = _middle(table, 3)  # 3 sizes a budget, one seed: no interval counts yet
    widths = []
    for _ in range(5):
        fitted = fit_profiles(have, bootstrap=100)
        widths.append(fitted["width"])
        if fitted["width"] < 0.1:
            break
        added, _ = propose_auto(None, fitted, 2, seeds=[0, 1, 2], candidates=_looked_up(table),
                                refuse=lambda b, n: None)
        have = pd.concat([have, _rows(table, added)])
    assert widths[0] == np.inf and fitted["width"] < 0.1, widths
    assert fitted["ci_a"][0] < true_a < fitted["ci_a"][1] and abs(fitted["a"] - true_a) < 0.03
    assert have["flops"].sum() < 0.5 * table["flops"].sum()
    assert not have.duplicated(["budget", "N", "seed"]).any()  # every run is one row of the table, once


@pytest.mark.parametrize("value", ["some", 2, True])
def test_replicates_setting_is_checked(value):
    spec = adaptive_spec()
    spec["grid"]["adaptive"] = {"rounds": 2, "target_ci_a": 0.1, "replicates": value}
    with pytest.raises(SpecError, match=r"grid.adaptive.replicates must be one of all, auto"):
        load_spec(spec)
    spec["grid"]["adaptive"]["replicates"] = "auto"
    assert load_spec(spec)["grid"]["adaptive"]["replicates"] == "auto"
    del spec["grid"]["adaptive"]["replicates"]
    assert load_spec(spec)["grid"]["adaptive"]["replicates"] == "all"


def test_extend_refuses_a_bad_replicates_option_in_one_line(tmp_path, capsys):
    path = tmp_path / "adapt.yaml"
    path.write_text(yaml.safe_dump(adaptive_spec()))
    assert main(["sweep", "extend", str(path), "--replicates", "bogus", "--rounds", "1", "--target-ci-a", "0.1",
                 "--root", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --replicates must be one of all, auto") and err.count("\n") == 1, err
    assert not (tmp_path / "root" / "adapt").exists() or not list((tmp_path / "root" / "adapt").glob("runs/*"))


def test_extend_with_replicates_auto_trains_one_seed_then_adds_sizes_and_seeds(tmp_path):
    spec = adaptive_spec(name="autorep", widths=(8, 16, 24, 32), compute=(1e12, 3e12), seeds=(0, 1, 2))
    spec["grid"]["adaptive"] = {"rounds": 2, "target_ci_a": 1e-6, "replicates": "auto"}  # never met: 2 rounds
    out = extend(spec, root=tmp_path, workers=2, progress=False, bootstrap=50)
    runs = export("autorep", tmp_path)[0]
    assert (runs["status"] == "done").all() and (runs.loc[runs["round"] == 0, "seed"] == 0).all()  # the grid: seed 0
    assert len(runs[runs["round"] == 0]) == len(expand(load_spec({**spec, "seeds": [0]})))
    added = [a for h in out["rounds"] for a in h["added"]]
    assert [h["round"] for h in out["rounds"]] == [1, 2] and {a["kind"] for a in added} == {"size", "replicate"}
    for h in out["rounds"]:  # each added entry is exactly its seeds' runs, with its round
        mine = runs[runs["round"] == h["round"]]
        assert sorted(zip(mine["budget"], mine["N"], mine["seed"])) == sorted(
            (a["budget"], a["N"], s) for a in h["added"] for s in a["seeds"])
    for a in added:
        assert a["seeds"] == [0] if a["kind"] == "size" else a["seeds"][0] in (1, 2)
    # a replicate's cell was trained with the seeds before it
    for r in runs[runs["seed"] > 0].itertuples():
        cell = runs[np.isclose(runs["budget"], r.budget) & (runs["N"] == r.N)]
        assert set(range(r.seed)) <= set(cell["seed"])
    # by name, the sweep keeps its seeds for replicates (the store holds the one-seed grid)
    again = extend("autorep", rounds=2, root=tmp_path, progress=False, bootstrap=50)
    assert again["round"] == 2 and len(export("autorep", tmp_path)[0]) == len(runs)
