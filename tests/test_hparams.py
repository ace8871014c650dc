"""The hyperparameter law (issue #12): optimal learning rate and batch size as power laws."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scaling
from scaling.cli import main
from scaling.errors import DataError, SettingsError
from scaling.laws import DeepSeekHyperparameterLaw, HyperparameterLaw, get_law

from test_law_contract import HP, hparam_runs

STEPLAW = Path(__file__).resolve().parents[2] / "shared" / "ref" / "steplaw_dense_lr_bs_loss.csv"


def test_recovers_known_optima_from_lr_and_batch_sweeps():
    law = HyperparameterLaw(bootstrap=300).fit(hparam_runs())
    for k, v in HP.items():
        assert law.params_[k] == pytest.approx(v, rel=0.02 if k in ("eta0", "B0") else 0.01), k
        lo, hi = law.ci_[k]
        assert lo <= law.params_[k] <= hi
    opt = law.predict(N=3e8, D=3e10)
    assert opt["lr"][0] == pytest.approx(HP["eta0"] * 3e8 ** HP["eta_N"] * 3e10 ** HP["eta_D"], rel=0.03)
    assert opt["batch"][0] == pytest.approx(HP["B0"] * 3e10 ** HP["B_D"], rel=0.03)
    lo, hi = law.predict_interval(N=3e8, D=3e10)
    assert lo["lr"][0] < opt["lr"][0] < hi["lr"][0]


def test_each_cell_weighs_the_same_and_near_optimal_settings_are_kept():
    df = hparam_runs(noise=0.0)
    law = HyperparameterLaw(bootstrap=0, tolerance=0.05).fit(df)
    # within 5% of the best: lr factors 2^-2..2^2 and batch factors 2^-2..2^2 where the bowl allows
    assert law.fit_info_["n_cells"] == 12 and law.fit_info_["n_near_optimal"] > 12
    assert law.params_["eta_N"] == pytest.approx(HP["eta_N"], abs=1e-9)  # symmetric bowls: exact


def test_deepseek_form_in_compute_alone_and_json_keys(tmp_path, capsys):
    rows = []
    for C in np.logspace(18, 21, 6):
        lr_opt, b_opt = 0.3 * C ** -0.125, 0.29 * C ** 0.3271
        for i in range(-3, 4):
            for j in range(-2, 3):
                rows.append(dict(C=C, lr=lr_opt * 2.0**i, batch=b_opt * 2.0**j, loss=2.0 * (1 + 0.01 * i * i + 0.005 * j * j)))
    path = tmp_path / "hp.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    code = main(["fit", str(path), "--law", "hparams", "--form", "deepseek", "--bootstrap", "50", "--json",
                 "--out", str(tmp_path / "fit.json")])
    d = json.loads(capsys.readouterr().out)
    assert code == 0 and set(d["params"]) == {"eta0", "eta_C", "B0", "B_C"}
    assert d["params"]["eta_C"] == pytest.approx(-0.125, abs=1e-6) and d["params"]["B_C"] == pytest.approx(0.3271, abs=1e-6)
    back = scaling.load(tmp_path / "fit.json")
    assert isinstance(back.law, DeepSeekHyperparameterLaw)
    np.testing.assert_allclose(back.predict(C=1e22)["lr"], 0.3 * 1e22 ** -0.125, rtol=1e-6)


def test_steplaw_form_json_keys_and_bad_input(capsys, tmp_path):
    path = tmp_path / "hp.csv"
    hparam_runs().rename(columns={"batch": "bs"}).to_csv(path, index=False)
    code = main(["fit", str(path), "--law", "hparams", "--columns", "batch=bs", "--bootstrap", "0", "--json"])
    assert code == 0 and set(json.loads(capsys.readouterr().out)["params"]) == {"eta0", "eta_N", "eta_D", "B0", "B_D"}
    with pytest.raises(SettingsError, match="form must be one of"):
        HyperparameterLaw(form="adam")
    with pytest.raises(SettingsError, match="tolerance"):
        HyperparameterLaw(tolerance=-1)
    with pytest.raises(DataError, match="missing column"):
        HyperparameterLaw().fit(hparam_runs().drop(columns="batch"))
    one_n = hparam_runs()
    with pytest.raises(DataError, match="share one value of N"):
        HyperparameterLaw().fit(one_n[one_n["N"] == one_n["N"].iloc[0]])
    code = main(["fit", str(path), "--law", "chinchilla", "--form", "steplaw"])
    assert code == 2 and "--form does not apply to --law chinchilla" in capsys.readouterr().err


@pytest.mark.skipif(not STEPLAW.exists(), reason="the StepLaw runs live in the shared reference folder")
def test_close_to_steplaw_published_exponents_on_their_runs():
    # Li et al. 2025: eta_opt = 1.79 N^-0.713 D^0.307, B_opt = 0.58 D^0.571, fitted on their optima
    df = pd.read_csv(STEPLAW)
    law = get_law("hparams")(bootstrap=300).fit(df, columns={"batch": "bs", "loss": "smooth loss"})
    assert law.params_["eta_N"] == pytest.approx(-0.713, abs=0.1)
    assert law.params_["eta_D"] == pytest.approx(0.307, abs=0.1)
    assert law.params_["B_D"] == pytest.approx(0.571, abs=0.05)
    lo, hi = law.ci_["B_D"]
    assert lo <= 0.571 <= hi
