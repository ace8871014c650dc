"""The README's main job: run a small sweep, fit it, predict a 10x larger model, allocate compute, plot.

Then, for scale, the same fit on the published Chinchilla runs.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

from .data import load_chinchilla, replicate_means, replicate_note, sweep_definition
from .laws import ChinchillaLaw, IsoFlopLaw
from .plotting import plot_fit, plot_isoflop, save

SWEEP = sweep_definition("quickstart")  # shipped in the package: an install finds it too


def run(out: str | Path = "out/quickstart", bootstrap: int = 1000, sweep: str | Path = SWEEP,
        root: str | Path = "out/sweeps", workers: int | None = None, seed: int | None = None) -> dict:
    """``seed``: train the same grid with another training seed, as a sweep of its own
    (``quickstart-seed1``), to see how much the fitted exponents move with it."""
    from .sweep import export, run_sweep
    from .sweep.spec import load_spec, read_definition

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if seed is not None:
        raw, _ = read_definition(sweep)
        raw = {**raw, "seeds": [int(seed)], "name": f"{raw['name']}-seed{int(seed)}"}
        sweep = raw
    spec = load_spec(sweep)
    print(f"== 1. sweep: {spec['name']} (seeds {spec['seeds']}) ==")
    print(f"IsoFLOP budgets {spec['grid']['compute']} on the {spec['corpus']['name']} corpus; runs already in the "
          "store are skipped, so a second call is instant")
    t = time.perf_counter()
    run_sweep(sweep, root=root, workers=workers)
    runs, curves = export(spec["name"], root)
    runs_path, curves_path = out / "runs.csv", out / "curves.csv"
    runs.to_csv(runs_path, index=False)
    curves.to_csv(curves_path, index=False)
    print(f"{len(runs)} runs in {time.perf_counter() - t:.0f} s -> {runs_path}, {curves_path}")
    runs = runs[runs["status"] == "done"]
    all_runs = runs
    means = replicate_means(runs)  # several seeds: fit each cell's mean; the seeds' scatter goes in the notes
    if len(means) < len(runs):
        runs = means
    c = spec["corpus"]
    H = bayes = None
    if c["name"] == "synthetic":  # a language whose best possible loss is known
        from .sweep.corpus import load_corpus, synthetic_automaton

        auto = synthetic_automaton(c)
        H = auto.entropy_rate()
        bayes = auto.bayes_loss(load_corpus(c)[1], int(spec["model"]["seq_len"]), n_windows=2000)

    print("\n== 2. fit: Approach 2 (IsoFLOP profiles) and Approach 3 (parametric) ==")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        iso = IsoFlopLaw(bootstrap=1000).fit(runs)  # the residual bootstrap; 1,000 steadies the 5%/95% ends
        law = ChinchillaLaw(bootstrap=bootstrap).fit(runs)
    for w in caught:
        print(f"note: {w.message}")
    if runs is means:
        print(f"note: {replicate_note(means, len(all_runs), law=law)}")
    print(iso.report())
    print()
    print(law.report())
    if H is not None:
        print(f"\ntruth: the language's entropy rate is {H:.4f} nats/byte, and the best possible loss under this "
              f"evaluation ({spec['model']['seq_len']}-token windows, state unknown at their start) is {bayes:.4f}; "
              f"the fitted E is {law.params_['E']:.4f} [{law.ci_['E'][0]:.4f}, {law.ci_['E'][1]:.4f}]")

    print("\n== 3. predict a 10x larger model ==")
    top = runs[runs["C"] >= runs["C"].max() / 1.1]
    best = top.loc[top["loss"].idxmin()]
    N_big = 10 * runs["N"].max()
    tpp = best["D"] / best["N"]  # the tokens-per-parameter of the best run at the largest budget
    D_big = tpp * N_big
    C_big = 6 * N_big * D_big
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lo, hi = law.predict_interval(N=N_big, D=D_big)
        pred = law.predict(N=N_big, D=D_big)[0]
    print(f"N = {N_big:,.0f} parameters (10x the largest trained) on D = {D_big:,.0f} tokens ({tpp:.0f} tokens per "
          f"parameter, like the best run at the largest budget; C = {C_big:.3g} FLOPs): loss {pred:.4f}, "
          f"{int(100 * law.level)}% interval for a new run [{lo[0]:.4f}, {hi[0]:.4f}]")

    print("\n== 4. compute-optimal allocation ==")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for C in (runs["C"].max() * 10, C_big):
            co = law.compute_optimal(C).iloc[0]
            ico = iso.compute_optimal(C, interval=False).iloc[0]
            beyond = math.log10(C / runs["C"].max())
            print(f"C = {C:.3g} ({beyond:.1f} decades above the largest budget trained: an extrapolation): parametric "
                  f"N_opt = {co['N_opt']:,.0f} [{co['N_opt_lo']:,.0f}, {co['N_opt_hi']:,.0f}], "
                  f"{co['tokens_per_param']:.2g} tokens/param; IsoFLOP N_opt = {ico['N_opt']:,.0f}, "
                  f"{ico['tokens_per_param']:.2g} tokens/param")
    ci = iso.ci_.get("a")
    print(f"exponents: parametric a = {law.summary()['compute_optimal']['a']:.3f}, IsoFLOP a = {iso.params_['a']:.3f}"
          + (f" (90% CI [{ci[0]:.3f}, {ci[1]:.3f}])" if ci else "") + ". They describe these models "
          f"({runs['N'].min():,.0f}-{runs['N'].max():,.0f} parameters"
          + (f", {int(all_runs['steps'].min()):,}-{int(all_runs['steps'].max()):,} steps" if "steps" in all_runs else "")
          + "), where short runs favour small models; at scale a is about 0.5 (Hoffmann et al. 2022). "
          "Another training seed: `scaling quickstart --seed 1`")

    plots = [save(plot_isoflop(iso, runs), out / "isoflop.png"), save(plot_fit(law, runs), out / "parametric_fit.png")]
    law.save(out / "fit.json")
    iso.save(out / "isoflop_fit.json")

    print("\n== 5. the same parametric fit on the published Chinchilla runs (Besiroglu et al. 2024 extraction) ==")
    df = load_chinchilla(drop_highest_loss=5)
    ch = ChinchillaLaw(bootstrap=bootstrap).fit(df)
    p = ch.params_
    a_lo, a_hi = ch.allocation_exponent_intervals()["a"]
    print(f"E={p['E']:.4f} A={p['A']:.1f} B={p['B']:.0f} alpha={p['alpha']:.4f} beta={p['beta']:.4f}, "
          f"a = {ch.summary()['compute_optimal']['a']:.3f} [{a_lo:.3f}, {a_hi:.3f}] (Besiroglu et al.: 0.513; Hoffmann et al.: 0.46)")
    h = ChinchillaLaw.hoffmann2022().labelled("Hoffmann et al. 2022")
    plots.append(save(plot_fit(ch, df, compare=[h]), out / "chinchilla_published.png"))
    ch.save(out / "chinchilla_published_fit.json")

    print("\nwrote:")
    for f in [runs_path, curves_path, out / "fit.json", out / "isoflop_fit.json", *plots]:
        print(f"  {f}")
    print(f"next: scaling predict {out / 'fit.json'} --N 1e6 --D 2e7    |    scaling allocate {out / 'fit.json'} --compute 1e14")
    return {"law": law, "isoflop": iso, "runs": all_runs, "fitted": runs, "entropy_rate": H, "bayes_loss": bayes}
