"""What a newcomer meets first: ``scaling.fit`` / ``scaling.load``, a law spec, a result and their messages."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scaling
from scaling.errors import DataError, FitError, NotFittedError, ScalingWarning, SettingsError
from scaling.laws import ChinchillaLaw, FitResult, HyperparameterLaw, KaplanLaw, LossCurveLaw
from scaling.synthetic import sample_runs

CHIN = dict(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.30)
FITS = Path(__file__).resolve().parent.parent / "data/sweeps/cpu-chinchilla/fits.json"


def runs(seeds=1, noise=0.01):
    grid = {"N": np.logspace(7, 9.5, 6), "D": np.logspace(9, 11.5, 6)}
    tables = [sample_runs(ChinchillaLaw.from_params(**CHIN), grid, noise=noise, seed=s).assign(seed=s)
              for s in range(seeds)]
    return pd.concat(tables, ignore_index=True)


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


# ------------------------------------------------------------- 1. a spec holds no fit
@pytest.mark.parametrize("name", ["params_", "stderr_", "ci_", "covariance_", "objective_", "fit_info_", "theta_",
                                  "residuals_", "bootstrap_theta_", "se", "ci"])
def test_a_fitted_value_asked_of_a_spec_says_fit_returns_a_result(name):
    law = ChinchillaLaw()
    with pytest.raises(NotFittedError, match=r"law spec.*\.fit\(data\) returns a FitResult.*result = law\.fit\(df\)"):
        getattr(law, name)
    assert not hasattr(law, name)  # an AttributeError: hasattr and getattr(..., default) still work
    assert getattr(law, name, "absent") == "absent"


def test_the_old_pattern_points_at_the_result():
    law = ChinchillaLaw(bootstrap=0)
    result = quiet(law.fit, runs())
    with pytest.raises(NotFittedError, match="result = law.fit"):
        law.params_
    assert result.params_ == result.params
    assert law.params is None  # a setting (an lmfit.Parameters of constraints and starts), not fitted values
    assert ChinchillaLaw.__doc__ is None or "never fitted values" in scaling.laws.Law.__doc__
    with pytest.raises(AttributeError, match="has no attribute 'nonsense'"):
        law.nonsense


# ------------------------------------------------------------- 2. law= takes a spec or a class
def test_fit_takes_a_law_spec_or_class_and_refuses_settings_beside_a_spec():
    df = runs()
    by_spec = quiet(scaling.fit, df, law=ChinchillaLaw(loss="squared", bootstrap=0))
    by_name = quiet(scaling.fit, df, law="chinchilla", loss="squared", bootstrap=0)
    by_class = quiet(scaling.fit, df, law=ChinchillaLaw, loss="squared", bootstrap=0)
    assert by_spec.params_ == by_name.params_ == by_class.params_
    assert by_spec.law.loss == "squared"
    with pytest.raises(SettingsError, match="put the settings on the spec"):
        scaling.fit(df, law=ChinchillaLaw(), bootstrap=0)
    with pytest.raises(SettingsError, match="law=result.law"):
        scaling.fit(df, law=by_spec)


# ------------------------------------------------------------- 3. seeds averaged as the CLI does
def test_fit_averages_seeds_into_cells_and_says_so():
    df = runs(seeds=3)
    with pytest.warns(ScalingWarning, match=r"108 runs -> 36 cells.*average_seeds=False"):
        result = scaling.fit(df, law="chinchilla", bootstrap=0)
    assert result.n_points_ == 36
    assert result.fit_info_["averaged_seeds"] == {"runs": 108, "cells": 36}
    assert result.to_dict()["fit_info"]["averaged_seeds"] == {"runs": 108, "cells": 36}
    assert "fitted on 36 cell means (108 runs averaged over seeds into 36 cells)" in result.report()
    every = quiet(scaling.fit, df, law="chinchilla", bootstrap=0, average_seeds=False)
    assert every.n_points_ == 108 and "averaged_seeds" not in every.fit_info_
    raw = quiet(ChinchillaLaw(bootstrap=0).fit, df)  # Law.fit fits the rows it is given
    assert raw.n_points_ == 108


def test_a_seed_column_without_replicates_changes_nothing(recwarn):
    result = quiet(scaling.fit, runs(seeds=1), law="chinchilla", bootstrap=0)
    assert result.n_points_ == 36 and "averaged_seeds" not in result.fit_info_
    assert "fitted on 36 runs" in result.report()


def test_a_mapped_seed_column_is_averaged_too():
    df = runs(seeds=2).rename(columns={"seed": "run_seed", "loss": "val_loss"})
    result = quiet(scaling.fit, df, law="chinchilla", columns="loss=val_loss,seed=run_seed", bootstrap=0)
    assert result.fit_info_["averaged_seeds"] == {"runs": 72, "cells": 36}


def test_python_and_cli_average_the_same_cells(tmp_path, capsys):
    """scaling.fit and `scaling fit` share one cell rule: a per-run column (a wall time) and float noise in D
    do not keep a cell's seeds apart, in either."""
    from scaling.cli import main

    df = runs(seeds=3)
    rng = np.random.default_rng(0)
    df = df.assign(wall_time=rng.uniform(10, 20, len(df)), D=df["D"] * (1 + 1e-12 * rng.standard_normal(len(df))))
    result = quiet(scaling.fit, df, law="chinchilla", bootstrap=0)
    assert result.fit_info_["averaged_seeds"] == {"runs": 108, "cells": 36}
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False)
    main(["fit", str(path), "--law", "chinchilla", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["n_points"] == 36
    assert out["params"]["E"] == pytest.approx(result.params_["E"], rel=1e-9)


# ------------------------------------------------------------- 4. reprs and attribute errors
def test_reprs_say_result_and_spec_settings():
    result = quiet(ChinchillaLaw(loss="squared", fixed={"E": 1.7}, bootstrap=20).fit, runs())
    r = repr(result)
    assert r.startswith("FitResult(chinchilla: E=1.7, A=") and r.endswith("; n=36, bootstrap=20)")
    assert repr(result.law) == "ChinchillaLaw(loss='squared', fixed={'E': 1.7}, bootstrap=20)"
    assert repr(ChinchillaLaw()) == "ChinchillaLaw()"
    assert "unfitted" not in repr(ChinchillaLaw())
    with pytest.raises(AttributeError, match="'FitResult' of chinchilla has no attribute 'foo'"):
        result.foo


# ------------------------------------------------------------- 5. one name per value, aliases documented
def test_short_names_are_documented_aliases():
    import scaling.laws.result as mod

    assert "result.params_, result.stderr_, result.ci_, result.covariance_" in mod.__doc__
    for short, long in (("params", "params_"), ("se", "stderr_"), ("ci", "ci_"), ("covariance", "covariance_"),
                        ("objective", "objective_"), ("fit_info", "fit_info_"), ("residuals", "residuals_")):
        assert f"Alias of ``{long}``" in getattr(FitResult, short).__doc__
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "aliases" in readme


# ------------------------------------------------------------- 7. published values
def test_published_values_name_their_source_and_have_no_uncertainty():
    h = ChinchillaLaw.hoffmann2022()
    assert h.label == "Hoffmann et al. 2022" and "Hoffmann et al. 2022" in repr(h)
    assert ChinchillaLaw.besiroglu2024().label == "Besiroglu et al. 2024"
    assert KaplanLaw.kaplan2020().label == "Kaplan et al. 2020"
    with pytest.raises(FitError, match="published values carry no uncertainty.*fit data"):
        h.predict_interval(N=1e9, D=2e10)
    assert ChinchillaLaw.from_params(**CHIN).label == "chinchilla"


# ------------------------------------------------------------- 8. hparams: a meaningless selection
def hparams_runs(lr_scale=1.0, batches=(64, 128, 256), flat=False):
    rows = []
    for N in (1e7, 3e7, 1e8):
        for D in (1e9, 3e9, 1e10):
            lr_opt, b_opt = 1e-2 * N ** -0.3 * lr_scale, 10 * D ** 0.2
            for lr in lr_opt * np.array([0.25, 0.5, 1.0, 2.0, 4.0]):
                for b in batches:
                    gap = 0 if flat else 0.02 * np.log(lr / lr_opt) ** 2 + 0.01 * np.log(b / b_opt) ** 2
                    rows.append(dict(N=N, D=D, lr=lr, batch=b, loss=3.0 * (1 + gap)))
    return pd.DataFrame(rows)


def test_hparams_warns_when_every_run_is_near_optimal():
    with pytest.warns(ScalingWarning, match=r"all 135 of 135 runs lie within"):
        scaling.fit(hparams_runs(flat=True), law="hparams", bootstrap=20)


def test_hparams_marks_an_exponent_not_identified_when_its_setting_never_varies():
    df = hparams_runs(batches=(128,))
    with pytest.warns(ScalingWarning, match=r"every run has batch = 128.*\['B_D'\] are not identified"):
        result = scaling.fit(df, law="hparams", bootstrap=50)
    assert result.ci_["B_D"] is None and result.stderr_["B_D"] is None
    assert result.ci_["eta_N"] is not None
    assert "(not identified: every run has batch = 128)" in result.report()
    again = FitResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.ci_["B_D"] is None  # a saved fit keeps it


# ------------------------------------------------------------- 9. warnings name the caller's line
def test_warnings_from_fit_name_the_callers_line():
    df = runs(seeds=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scaling.fit(df, law="chinchilla", bootstrap=0)  # this line
    assert caught and all(w.filename == __file__ for w in caught), [(w.filename, w.lineno) for w in caught]


# ------------------------------------------------------------- 10. a file of several fits
def test_load_says_a_file_holds_several_fits_and_loads_one_by_key():
    with pytest.raises(DataError, match=r"several fits keyed by name \(isoflop, chinchilla.*key='isoflop'"):
        scaling.load(FITS)
    result = scaling.load(FITS, key="isoflop")
    assert result.law.name == "isoflop"
    assert scaling.laws.Law.load(FITS, key="chinchilla").law.name == "chinchilla"
    with pytest.raises(DataError, match="no fit under key 'nope'"):
        scaling.load(FITS, key="nope")


# ------------------------------------------------------------- 11. the right noun
def test_a_curve_fit_counts_curve_points():
    from tests.test_law_contract import curve_runs

    result = quiet(LossCurveLaw(bootstrap=0).fit, curve_runs())
    assert f"fitted on {result.n_points_} curve points" in result.report()
    assert result.fit_info_["unit"] == "curve points"


def test_an_hparams_fit_of_seed_means_says_so():
    df = pd.concat([hparams_runs().assign(seed=s) for s in range(2)], ignore_index=True)
    result = quiet(scaling.fit, df, law=HyperparameterLaw(bootstrap=0))
    assert result.fit_info_["averaged_seeds"] == {"runs": 270, "cells": 135}
    assert "of 135 seed means" in result.fit_info_["procedure"]
    assert "fitted on 135 cell means (270 runs" in result.report()
