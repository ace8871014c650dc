"""grid.around: each IsoFLOP budget's sizes centred on a guess of its optimum (issue #12, the quickstart's design)."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from scaling.errors import ScalingWarning
from scaling.laws import IsoFlopLaw
from scaling.sweep import expand, load_spec
from scaling.sweep.spec import SpecError

from test_sweep import toy_spec

WIDTHS = [4, 6, 8, 10, 12, 14, 16, 18, 20, 24, 28, 32, 36, 40, 48, 56, 64]
SHAPES = [{"n_layer": 2, "d_model": d, "n_head": 1} for d in WIDTHS]
BUDGETS = [1e10, 3e10, 1e11, 3e11]


def centred(around, budgets=BUDGETS, shapes=SHAPES, **grid):
    return toy_spec(model={"sizes": None, "shapes": shapes, "seq_len": 64}, batch={"tokens_per_step": 1024},
                    grid={"tokens": None, "compute": budgets, "around": around, **grid})


def sizes_by_budget(runs):
    out = {}
    for r in runs:
        out.setdefault(r["budget"], set()).add(r["N"])
    return {C: sorted(v) for C, v in out.items()}


def test_each_budget_gets_its_sizes_around_the_guessed_optimum():
    spec = load_spec(centred({"C": 1e11, "N": 12000, "a": 0.75}))
    g = spec["grid"]["around"]
    assert (g["sizes"], g["ratio"]) == (5, 1.8)  # the defaults, written in full
    assert g["N_opt"] == pytest.approx([12000 * (C / 1e11) ** 0.75 for C in BUDGETS], rel=1e-5)
    by = sizes_by_budget(expand(spec))
    all_N = sorted({r["N"] for r in expand(load_spec(centred(None)))})
    for C, N_opt in zip(BUDGETS, g["N_opt"]):
        N = np.array(by[C], float)
        assert len(N) == 5
        # the middle size is the shape nearest the guess (in log N), with two sizes on each side
        nearest = min(all_N, key=lambda n: abs(np.log(n / N_opt)))
        assert N[2] == nearest
        assert (N[:2] < N_opt).all() and (N[3:] > N_opt).all()
        # spanning about ratio^4 (the shapes are a discrete ladder, coarse at the smallest widths)
        assert (N[1:] / N[:-1] > 1.2).all()
        assert 1.8 ** 4 / 1.5 < N[-1] / N[0] < 1.8 ** 4 * 1.5
    # the optimum grows faster than C^0.5, and so do the sizes: the largest budget's smallest size is
    # above the smallest budget's largest
    assert by[3e11][0] > by[1e10][-1]


def test_a_wider_ratio_spreads_the_sizes_and_more_sizes_add_runs():
    narrow = sizes_by_budget(expand(load_spec(centred({"C": 1e11, "N": 12000, "a": 0.75, "ratio": 1.3}))))
    # 1.3 is finer than the ladder's steps at the smallest widths: targets that meet one shape take the next one
    assert all(len(narrow[C]) == 5 for C in BUDGETS)
    wide = sizes_by_budget(expand(load_spec(centred({"C": 1e11, "N": 12000, "a": 0.75, "ratio": 2.5}))))
    for C in BUDGETS:
        assert wide[C][-1] / wide[C][0] > narrow[C][-1] / narrow[C][0]
    seven = sizes_by_budget(expand(load_spec(centred({"C": 1e11, "N": 12000, "a": 0.75, "sizes": 7, "ratio": 1.4},
                                                     budgets=[1e11, 3e11]))))
    assert [len(v) for v in seven.values()] == [7, 7]


def test_the_guess_can_come_from_an_earlier_fit(tmp_path):
    # an IsoFLOP fit on exact parabolas whose vertices follow N_opt = 0.01 C^0.55
    rows = []
    for C in (1e10, 1e11, 1e12):
        n_opt = 0.01 * C ** 0.55
        for f in (0.25, 0.5, 1.0, 2.0, 4.0):
            N = n_opt * f
            rows.append({"N": N, "D": C / (6 * N), "C": C, "loss": 2.0 + 0.05 * np.log(f) ** 2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalingWarning)  # exact parabolas at one loss: no floor E to find
        fit = IsoFlopLaw(bootstrap=0).fit(pd.DataFrame(rows))
    path = tmp_path / "pilot.json"
    fit.save(path)
    spec = load_spec(centred({"from": str(path), "sizes": 3}))
    g = spec["grid"]["around"]
    assert g["from"] == str(path.resolve())
    assert g["N_opt"] == pytest.approx([0.01 * C ** 0.55 for C in BUDGETS], rel=1e-4)
    assert all(len(v) == 3 for v in sizes_by_budget(expand(spec)).values())


def test_too_few_shapes_warn_and_fewer_than_three_is_an_error():
    few = [{"n_layer": 2, "d_model": d, "n_head": 1} for d in (8, 16, 32, 64)]
    with pytest.warns(ScalingWarning, match="gets 4 sizes, not 5: it allows only 4"):
        runs = expand(load_spec(centred({"C": 1e11, "N": 12000, "a": 0.75}, budgets=[1e11], shapes=few)))
    assert len(runs) == 4
    with pytest.raises(SpecError, match="can train 2 size.*a parabola needs 3.*list more shapes"):
        expand(load_spec(centred({"C": 1e11, "N": 12000, "a": 0.75}, budgets=[1e11], shapes=few[:2])))


def test_a_guess_outside_the_sizes_names_what_refused_them():
    with pytest.warns(ScalingWarning, match="above the sizes it allows .* will not be bracketed: list shapes"):
        expand(load_spec(centred({"C": 1e11, "N": 3e5, "a": 0.75}, budgets=[1e11])))
    # the shapes exist but too few steps of a big batch refuse the largest: the warning says so, not "add shapes"
    spec = centred({"C": 1e11, "N": 12000, "a": 0.75}, budgets=[1e11])
    spec["batch"] = {"tokens_per_step": 65536}
    spec["grid"]["min_steps"] = 60
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expand(load_spec(spec))
    said = [str(w.message) for w in caught]
    assert any(re.search(r"above the sizes it allows.*refused at this budget \(fewer than grid.min_steps steps", m)
               for m in said), said
    assert not any("list shapes on that side" in m for m in said)


def test_the_sizes_can_sit_off_centre():
    centre = sizes_by_budget(expand(load_spec(centred({"C": 1e11, "N": 12000, "a": 0.75}, budgets=[1e11]))))[1e11]
    above = sizes_by_budget(expand(load_spec(centred({"C": 1e11, "N": 12000, "a": 0.75, "shift": 0.5},
                                                     budgets=[1e11]))))[1e11]
    n_opt = 12000
    assert sum(n < n_opt for n in centre) == 2 and sum(n < n_opt for n in above) == 2
    assert np.exp(np.mean(np.log(above))) > np.exp(np.mean(np.log(centre)))  # the set moved up
    assert sum(n > n_opt for n in above) == 3


def test_a_loaded_spec_loads_again_and_the_guess_is_worked_out_again(tmp_path):
    import json

    spec = load_spec(centred({"C": 1e11, "N": 12000, "a": 0.75}))
    again = load_spec(json.loads(json.dumps(spec)))  # what `sweep extend` does with the stored spec
    assert again["grid"]["around"] == spec["grid"]["around"]
    assert expand(again) == expand(spec)


def test_the_guess_can_come_from_one_fit_of_a_sweeps_fits_json():
    from pathlib import Path

    fits = Path(__file__).resolve().parent.parent / "data" / "sweeps" / "cpu-isoflop-seeds" / "fits.json"
    with pytest.raises(SpecError, match="pick one with grid.around.key"):
        load_spec(centred({"from": str(fits)}))
    spec = load_spec(centred({"from": str(fits), "key": "isoflop"}))
    from scaling.laws import Law

    truth = Law.load(fits, key="isoflop").compute_optimal(BUDGETS, interval=False)["N_opt"]
    assert spec["grid"]["around"]["N_opt"] == pytest.approx(list(truth), rel=1e-5)
    assert spec["grid"]["around"]["key"] == "isoflop"


def test_without_around_the_grid_is_unchanged():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = expand(load_spec(centred(None)))
    assert len(sizes_by_budget(plain)[1e10]) > 5


@pytest.mark.parametrize("around,grid,msg", [
    ({"C": 1e11, "N": 12000, "a": 0.75}, {"compute": None, "tokens": [1e6]}, "needs grid.compute"),
    ({"C": 1e11, "N": 12000}, {}, "missing a"),
    ({"C": 1e11, "N": 12000, "a": 0.75, "ratio": 1.0}, {}, "grid.around.ratio must be a number > 1"),
    ({"C": 1e11, "N": 12000, "a": 0.75, "sizes": 2}, {}, "grid.around.sizes must be an integer >= 3"),
    ({"C": 1e11, "N": 12000, "a": 0.75, "width": 3}, {}, "unknown key"),
    ({"C": 1e11, "N": 12000, "a": 7}, {}, "likely a typo"),
    ({"C": 1e11, "N": -5, "a": 0.75}, {}, "grid.around.N must be a number > 0"),
    ({"from": "pilot.json", "a": 0.5}, {}, "not both"),
    ({"from": "no/such/fit.json"}, {}, "no such fit file"),
    ({"C": 1e11, "N": 12000, "a": 0.75, "key": "isoflop"}, {}, "needs grid.around.from"),
    ({"C": 1e11, "N": 12000, "a": 0.75, "shift": "up"}, {}, "shift must be a number"),
    ({"C": 1e11, "N": 12000, "a": 0.75}, {"compute": [1e10, 1e10, 1e11]}, "grid.compute lists a value twice"),
    ([1e11, 12000], {}, "grid.around is a mapping"),
])
def test_bad_around_fails_before_training(around, grid, msg):
    spec = centred(around)
    spec["grid"].update(grid)
    with pytest.raises(SpecError, match=msg):
        load_spec(spec)
