"""The ``scaling`` command line: a thin layer over the library.

Every subcommand prints a readable report, or one JSON object with ``--json``.
Problems with the input print one line, ``error: ...``, and exit with status 2; any other
exception is a bug in the package: its traceback and a line asking to report it, status 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .errors import ScalingError


def _fmt_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def _num(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"not a finite number: {s!r}")
    return v


def _count(s: str) -> int:
    """A whole number >= 0 (bootstrap resamples, runs to drop)."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def _positive(s: str) -> int:
    v = _count(s)
    if v == 0:
        raise argparse.ArgumentTypeError("must be 1 or more, got 0")
    return v


def _pairs(s: str) -> dict[str, float]:
    out = {}
    for part in filter(None, (p.strip() for p in s.split(","))):
        if "=" not in part:
            raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {part!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = _num(v)
    return out


def _bounds(s: str) -> dict[str, tuple]:
    """'alpha=-inf:inf,beta=0:1' -> {'alpha': (None, None), 'beta': (0.0, 1.0)}; an empty side is open."""
    out = {}
    for part in filter(None, (p.strip() for p in s.split(","))):
        if "=" not in part or ":" not in part.split("=", 1)[1]:
            raise argparse.ArgumentTypeError(f"expected NAME=LOW:HIGH (e.g. alpha=-inf:inf), got {part!r}")
        k, v = part.split("=", 1)
        lo, hi = v.split(":", 1)
        side = []
        for x in (lo, hi):
            x = x.strip()
            try:
                f = float(x) if x else math.nan
            except ValueError:
                raise argparse.ArgumentTypeError(f"bound {x!r} of {k.strip()} is not a number") from None
            side.append(None if not math.isfinite(f) else f)
        out[k.strip()] = tuple(side)
    return out


def _merged(dicts: list[dict] | None, flag: str) -> dict | None:
    """Repeated ``--fix``/``--bound`` flags add up; naming one parameter twice is an error."""
    out: dict = {}
    for d in dicts or []:
        twice = sorted(set(out) & set(d))
        if twice:
            raise ScalingError(f"{flag} names {twice} more than once; give each parameter once")
        out.update(d)
    return out or None


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def _emit(obj, as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(_jsonable(obj), indent=1))
    else:
        print(text)


def _scalar(v):
    return float(np.asarray(v).reshape(-1)[0])


# ---------------------------------------------------------------- commands
def _given_settings(args) -> dict:
    """The objective and constraint settings given on the command line (fit and backtest)."""
    given = {"loss": args.loss, "delta": args.delta, "fixed": _merged(args.fix, "--fix"),
             "bounds": _merged(args.bound, "--bound"), "prune": False if args.no_prune else None}
    return {k: v for k, v in given.items() if v is not None}


def _where(args) -> None:
    """--where EXPR: the command reads only those rows of its table."""
    if getattr(args, "where", None):
        from .data import select_rows

        args.data = select_rows(args.data, args.where)


def _applies(flags: list[str]) -> str:
    """'--a applies' / '--a and --b apply', the start of a message refusing flags that do not belong."""
    return f"{' and '.join(flags)} appl{'ies' if len(flags) == 1 else 'y'}"


def _auto_only(args) -> None:
    """--target-N/-C and --candidates belong to --law auto."""
    if args.law != "auto":
        used = [f for f, v in (("--target-N", args.target_N), ("--target-C", args.target_C),
                               ("--candidates", args.candidates)) if v is not None]
        if used:
            raise ScalingError(f"{_applies(used)} to --law auto, "
                               f"not --law {args.law}")


def _law_options(args) -> dict:
    """`scaling fit`'s options of one law or another: setting name -> (flag, value given or None)."""
    return {"shared_alpha": ("--shared-alpha", args.shared_alpha or None),
            "kl_penalty": ("--kl-penalty", args.kl_penalty), "score": ("--score", args.score),
            "max_d": ("--max-d", args.max_d), "rm_data": ("--rm-data", args.rm_data),
            "tie_exponents": ("--tie-exponents", args.tie_exponents or None),
            "form": ("--form", args.form), "tolerance": ("--tolerance", args.tolerance),
            "x": ("--x", args.x), "method": ("--method", args.method), "resample": ("--resample", args.resample),
            "decay_by_size": ("--decay-by-size", args.decay_by_size or None)}


def _level_of(args, law) -> None:
    """--level, else the level the fit was made at (scaling fit --level), else 0.9."""
    if args.level is None:
        args.level = float(getattr(law, "level", None) or 0.9)


def _cmd_fit_auto(args) -> int:
    """`scaling fit DATA --law auto`: the candidates scored by nested backtests, the pick fitted on every run
    (seed replicates averaged into cells first, said in a warning, unless --no-average-seeds)."""
    from .selection import fit_auto

    own = [flag for name, (flag, value) in _law_options(args).items() if value is not None and name != "tie_exponents"]
    own += ["--runs"] if args.runs else []
    own += [f for f, v in (("--momentum", args.momentum), ("--curve-loss", args.curve_loss)) if v is not None]
    if own:
        raise ScalingError(f"{' '.join(own)} belong{'s' if len(own) == 1 else ''} to one law, not to --law auto (its "
                           "candidates are laws of a run's final loss from N, D, ...): name that law with --law")
    given = _given_settings(args)
    fixed = given.pop("fixed", None)
    if args.tie_exponents:
        given["tie_exponents"] = True  # refused by the selection with what to do instead
    result = fit_auto(args.data, candidates=args.candidates, target_N=args.target_N, target_C=args.target_C,
                      columns=args.columns, fixed=fixed, bootstrap=args.bootstrap, seed=args.seed, level=args.level,
                      dropna=args.dropna, drop_highest_loss=args.drop_highest_loss,
                      average_seeds=not args.no_average_seeds, **given)
    if args.out:
        result.save(args.out)
    _emit(result.summary(), args.json, result.report() + (f"\n\nsaved to {args.out}" if args.out else ""))
    return 0


def cmd_fit(args) -> int:
    from .laws import available_laws, get_law

    _check_out(args.out, "--out", "fit.json")
    _auto_only(args)
    _where(args)
    if args.law == "auto":
        return _cmd_fit_auto(args)
    cls = get_law(args.law)
    kwargs = dict(bootstrap=args.bootstrap, seed=args.seed, level=args.level)
    # settings the user gave: the law honours each or refuses it (it knows what it takes, not the CLI)
    kwargs.update(_given_settings(args))
    law_options = _law_options(args)
    takes = cls.options()
    for name, (flag, value) in law_options.items():
        if value is None:
            continue
        if name not in takes:
            users = [n for n in available_laws() if name in get_law(n).options()]
            raise ScalingError(f"{flag} does not apply to --law {args.law}; options like it apply to --law "
                               f"{' / '.join(users)}")
        kwargs[name] = value
    data = args.data
    if args.runs and not cls.curve_law:
        raise ScalingError(f"--runs applies to curve laws (fitted to a sweep's curves table), not --law {args.law}")
    curve_flags = [f for f, v in (("--momentum", args.momentum), ("--curve-loss", args.curve_loss)) if v is not None]
    if curve_flags and not cls.curve_law:
        raise ScalingError(f"{_applies(curve_flags)} to curve laws "
                           f"(--law tissue or mpl), not --law {args.law}")
    if args.curve_loss is not None and not args.runs:
        raise ScalingError("--curve-loss picks the column of a sweep's curves table fitted with --runs; a plain curves "
                           "table's loss column is mapped with --columns loss=<your column>")
    if args.momentum is not None and cls.curve_law and "S2" not in cls.inputs:
        raise ScalingError(f"--momentum sets tissue's annealing area S2, which --law {args.law} does not read")
    momentum = 0.999 if args.momentum is None else args.momentum
    if cls.curve_law:
        from .data import read_table
        from .laws.curve import curve_points

        table = read_table(args.data)
        if "S1" not in table.columns:
            if args.runs:
                data = curve_points(table, read_table(args.runs), loss=args.curve_loss or "eval_loss", lam=momentum)
            elif "run_id" in table.columns and "N" not in table.columns:
                raise ScalingError(f"--law {args.law} on a sweep's curves table needs its runs table: add --runs runs.csv")
            else:  # a plain curves table (run, N, step, lr, loss): issue 15
                from .curves import prepare_curve_points

                data = prepare_curve_points(table, columns=args.columns, lam=momentum, dropna=args.dropna)
                args.columns = None  # mapped already
    averaged = None
    columns = args.columns
    if not cls.curve_law and cls.target == "loss":
        from .data import seed_means

        data, columns, averaged, notes = seed_means(data, cls, args.columns, average=not args.no_average_seeds,
                                                    dropna=args.dropna)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    law = cls(**kwargs).fit(data, columns=columns, drop_highest_loss=args.drop_highest_loss,
                            dropna=args.dropna)
    if averaged is not None:
        from .data import replicate_note

        from .data import parse_columns

        target = parse_columns(args.columns).get(cls.target, cls.target)
        print(f"note: {replicate_note(data, averaged, target=target, law=law)}; --no-average-seeds fits every run",
              file=sys.stderr)
    if cls.curve_law and getattr(args, "runs", None) and isinstance(law._state.get("fit_info_"), dict):
        law._state["fit_info_"]["curve_loss"] = args.curve_loss or "eval_loss"  # plot reads the same column
    if args.out:
        law.save(args.out)
    text = law.report() + (f"\n\nsaved to {args.out}" if args.out else "")
    _emit(law.summary(), args.json, text)
    return 0


#: law inputs `scaling predict` takes besides N, D, C, S, U, d and rm_params
OTHER_INPUTS = {"D_f": "finetune: fine-tuning tokens", "D_pretrain": "finetune --x D_pretrain: pretraining tokens",
                "pet_params": "finetune --x pet_params: parameters the method tunes",
                "samples_per_prompt": "rlhf-samples: samples per prompt (k)"}


def cmd_predict(args) -> int:
    from .laws import Law

    law = Law.load(args.fit)
    _level_of(args, law)
    if law.curve_law or args.model or args.tokens:
        return _cmd_plan(args, law)
    from .laws.base import tokens_from_compute

    inputs = {k: getattr(args, k) for k in ("N", "D", "C", "S", "U", "d", "rm_params", *OTHER_INPUTS)
              if getattr(args, k) is not None}
    inputs = {k: float(v) if k in ("N", "D") else v for k, v in tokens_from_compute(inputs, law.inputs).items()}
    if tuple(law.inputs) == ("C",) and "C" not in inputs and {"N", "D"} <= set(inputs):  # as sweeps count it
        inputs["C"] = 6.0 * inputs.pop("N") * inputs.pop("D")
        print(f"note: C = 6 N D = {inputs['C']:.4g} FLOPs (this {law.name} fit predicts from compute alone)",
              file=sys.stderr)
    missing = [k for k in law.inputs if k not in inputs]
    if missing:
        raise ScalingError(f"this {law.name} fit predicts from {list(law.inputs)}; give " +
                           " ".join(f"--{k} VALUE" for k in missing))
    extra = [k for k in inputs if k not in law.inputs]
    if extra:
        raise ScalingError(f"this {law.name} fit predicts from {list(law.inputs)}; it does not use "
                           + " ".join(f"--{k}" for k in extra))
    X = {k: inputs[k] for k in law.inputs}
    pred = law.predict(**X)
    if hasattr(pred, "columns"):  # a table: a law of several outputs (hparams: the optimal lr and batch)
        return _predict_outputs(args, law, X, pred)
    loss = _scalar(pred)
    out = {"law": law.name, "inputs": X, law.target: loss, "interval": None, "level": args.level}
    text = f"{law.name}: predicted {law.target} at " + ", ".join(f"{k}={v:.4g}" for k, v in X.items()) + f": {loss:.4f}"
    if getattr(law, "bootstrap_theta_", None) is not None:
        lo, hi = law.predict_interval(level=args.level, kind="prediction", **X)
        out["interval"] = out["interval_noise"] = [_scalar(lo), _scalar(hi)]
        pct = int(round(100 * args.level))
        text += f"\n{pct}% prediction interval (a new run, noise only): [{out['interval'][0]:.4f}, {out['interval'][1]:.4f}]"
        if getattr(law, "form_error_", None):  # a fit with a form-error model (--law auto): the total one is the default
            lo, hi = law.predict_interval(level=args.level, kind="total", **X)
            out["interval"] = out["interval_total"] = [_scalar(lo), _scalar(hi)]
            text += (f"\n{pct}% total interval (noise + the form's extrapolation error; the default): "
                     f"[{out['interval'][0]:.4f}, {out['interval'][1]:.4f}]")
    else:
        text += "\n(no interval: this fit has no bootstrap; refit with --bootstrap B)"
    _emit(out, args.json, text)
    return 0


def _predict_outputs(args, law, X, pred) -> int:
    """`scaling predict` of a law with several outputs: each (``lr``, ``batch``) with its interval."""
    at = ", ".join(f"{k}={v:.4g}" for k, v in X.items())
    out = {"law": law.name, "inputs": X, **{k: _scalar(pred[k]) for k in pred.columns}, "level": args.level}
    lines = [f"{law.name}: predicted at {at}:"]
    band = None
    if getattr(law, "bootstrap_theta_", None) is not None:
        band = law.predict_interval(level=args.level, kind="prediction", **X)
    pct = int(round(100 * args.level))
    for k in pred.columns:
        out[f"{k}_interval"] = [_scalar(band[0][k]), _scalar(band[1][k])] if band is not None else None
        lines.append(f"  {k:<6} {out[k]:.4g}" + (f"   {pct}% interval [{out[f'{k}_interval'][0]:.4g}, "
                                                  f"{out[f'{k}_interval'][1]:.4g}]" if band is not None else "")
                     + ("   (in the unit of the fitted table's batch column: tokens, or sequences if it counted "
                        "them)" if k == "batch" else ""))
    if band is None:
        lines.append("(no intervals: this fit has no bootstrap; refit with --bootstrap B)")
    _emit(out, args.json, "\n".join(lines))
    return 0


def _cmd_plan(args, law) -> int:
    from .plan import make_plan, save_plan

    if args.tokens is None and args.D is not None:  # a curve fit's plan: its training tokens, named as elsewhere
        args.tokens = args.D
    elif args.D is not None and args.D != args.tokens:
        raise ScalingError(f"--D {args.D:.4g} and --tokens {args.tokens:.4g} disagree: a plan's training tokens are one "
                           "number (give one of them)")
    if args.tokens is None and args.model and Path(args.model).is_file():  # a sweep run's config.json holds its D
        from .plan import _read_model_file

        cfg = _read_model_file(Path(args.model))
        if isinstance(cfg.get("D"), (int, float)) and cfg["D"] > 0:
            args.tokens = float(cfg["D"])
            if args.tokens_per_step is None and isinstance(cfg.get("tokens_per_step"), int):
                args.tokens_per_step = cfg["tokens_per_step"]
            print(f"note: tokens D = {args.tokens:.4g} from {args.model} (give --tokens to plan another length)",
                  file=sys.stderr)
    if args.tokens is None:
        raise ScalingError("planning a run needs --tokens D (and --model SHAPE or --N)")
    if args.tokens_per_step is None:
        args.tokens_per_step = 4096
    _check_out(args.out, "--out", "plan.json")
    sched = {"type": args.schedule, "warmup": args.warmup, "final_lr_frac": args.final_lr_frac,
             "decay_frac": args.decay_frac}
    plan = make_plan(law, tokens=args.tokens, model=args.model, N=args.N, schedule_spec=sched,
                     tokens_per_step=args.tokens_per_step, level=args.level)
    if args.out:
        save_plan(plan, args.out)
    co = plan["compute_optimal"]
    pct = int(round(100 * args.level))
    text = (f"plan: N = {plan['N']:,.0f} non-embedding parameters, {plan['tokens']:,.0f} tokens "
            f"({plan['steps']} steps of {plan['tokens_per_step']}), C = {plan['C']:.3g} FLOPs, {args.schedule} schedule\n"
            f"final loss {plan['final_loss']:.4f}, "
            + (f"{pct}% interval for the run [{plan['final_interval'][0]:.4f}, {plan['final_interval'][1]:.4f}]"
               if plan["band"] else "no interval (the fit has no bootstrap resamples: refit with --bootstrap 200; "
                                    "watch then judges spikes, divergence and flat stretches, not drift)")
            + f"\ncompute-optimal? {'-' if co['is_optimal'] is None else ('yes' if co['is_optimal'] else 'no')}: {co['note']}"
            + (f"\nwrote {args.out} (check a live run with: scaling watch LOG --plan {args.out})" if args.out else ""))
    out = {k: plan[k] for k in ("N", "N_total", "tokens", "steps", "C", "final_loss", "final_interval", "compute_optimal")}
    out["loss"], out["interval"] = plan["final_loss"], plan["final_interval"] if plan["band"] else None
    out["final_interval"] = out["interval"]  # no bootstrap: no interval (the plan file keeps its band of width 0)
    _emit(out, args.json, text)
    return 0


def cmd_watch(args) -> int:
    from .monitor import Monitor, follow
    from .plan import load_plan

    plan = load_plan(args.plan)
    _check_out(args.plot, "--plot", "watch.png")
    if args.once and not Path(args.log).exists():  # following may wait for a log to appear; a one-off check cannot
        raise ScalingError(f"no such log: {args.log} (check the path; without --once, watch waits for it to appear)")
    cfg_path = Path(args.log).parent / "config.json"
    if cfg_path.exists():  # a sweep run directory: check the run is the planned one
        import json as _json

        try:
            cfg = _json.loads(cfg_path.read_text())
        except (ValueError, OSError):
            cfg = {}  # not a config this check understands: it is only a warning, the watch goes on
        if isinstance(cfg, dict) and isinstance(cfg.get("N"), (int, float)) and plan.get("N") \
                and abs(cfg["N"] - plan["N"]) > 0.01 * plan["N"]:
            print(f"warning: the run's config has N={cfg['N']:,} but the plan is for N={plan['N']:,.0f}; "
                  "the comparison is against the wrong curve", file=sys.stderr)
    mon = Monitor(plan, consecutive=args.consecutive)
    last, last_plot = None, time.time()
    if not args.json:
        band = plan.get("final_interval") or [plan["curve"]["lo"][-1], plan["curve"]["hi"][-1]]
        print(f"plan: final loss {mon.forecast().final:.4f} [{band[0]:.4f}, {band[1]:.4f}] after {plan['tokens']:.4g} "
              f"tokens. Each line: the loss, the plan's expected loss and band there and the smoothed loss's deviation "
              f"from it, then the final loss re-forecast from the run so far ('final'). Points before "
              f"{plan['curve']['tokens'][0]:.4g} tokens (where the plan's curve starts) are read, not judged.")
    for step, loss, tokens in follow(args.log, reader=args.reader, columns=args.columns, interval=args.interval,
                                     once=args.once, timeout=args.timeout, run=args.run):
        st = mon.update(step, loss, tokens)
        last = st
        if args.json:
            print(json.dumps(st.to_dict()))
        elif st.expected is not None or st.off_track:
            exp = "" if st.expected is None else f" expected {st.expected:.4f} [{st.lo:.4f}, {st.hi:.4f}] {100 * st.deviation:+6.2f}%"
            fc = "" if st.forecast is None else f"  final {st.forecast:.4f} [{st.forecast_lo:.4f}, {st.forecast_hi:.4f}]"
            print(f"step {st.step:>7} loss {st.loss:.4f}{exp}{fc}  {st.state.upper() if st.off_track else 'ok'}"
                  + (f": {st.message}" if st.off_track else ""))
        if args.plot and time.time() - last_plot > 5:  # keep the picture fresh, not redrawn per point
            _watch_plot(plan, mon, args.plot)
            last_plot = time.time()
    if args.plot and mon.history:
        _watch_plot(plan, mon, args.plot)
    for note in mon.notes:
        print(f"note: {note}", file=sys.stderr)
    from .readers import read_log

    if last is not None and Path(args.log).exists():
        attrs = read_log(args.log, args.reader, args.columns, run=args.run).attrs
        if attrs.get("unreadable"):
            print(f"warning: {attrs['unreadable']}", file=sys.stderr)
        if args.once and attrs.get("unterminated_step") is not None:
            print(f"warning: the log's last line (step {attrs['unterminated_step']:g}) has no newline: if the run is "
                  "still writing it, its number may be cut short; check again once it is complete", file=sys.stderr)
    if last is None:

        why = read_log(args.log, args.reader, args.columns, run=args.run).attrs.get("note", "no loss points") \
            if Path(args.log).exists() else "the log does not exist"
        if args.once:  # a run with nothing readable is not a healthy one
            raise ScalingError(f"nothing could be read from {args.log}: {why}")
        print(f"no points in the log yet ({why})", file=sys.stderr)
        return 0
    # the whole log decides, not its last point: a spike or a divergence mid-run is still a run off track
    off = [h for h in mon.history if h.off_track]
    worst = mon.worst
    summary = []
    if off:
        summary.append(f"{len(off)} point(s) off track; first at step {off[0].step} ({off[0].state}: {off[0].message})")
        if worst is not off[0]:
            summary.append(f"worst: {worst.state} at step {worst.step} ({worst.message})")
    unchecked = not any(h.expected is not None for h in mon.history) and not off
    if unchecked:
        summary.append(f"no point of the log lies within the planned curve (steps {mon.history[0].step} to "
                       f"{last.step}; the plan covers tokens {plan['curve']['tokens'][0]:.4g} to "
                       f"{plan['curve']['tokens'][-1]:.4g}): nothing was checked (exit 2)")
    for line in summary:
        print(line, file=sys.stderr if args.json else sys.stdout)
    return 1 if worst is not None and worst.off_track else 2 if unchecked else 0


def _watch_plot(plan, mon, out):
    from .plotting import _plt, save

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    c = plan["curve"]
    ax.plot(c["tokens"], c["loss"], color="C0", label="plan")
    ax.fill_between(c["tokens"], c["lo"], c["hi"], color="C0", alpha=0.2, label=f"{int(100 * plan['level'])}% band")
    h = [x for x in mon.history if np.isfinite(x.loss)]
    ax.plot([x.tokens for x in h], [x.loss for x in h], color="k", lw=1, label="run")
    off = [x for x in h if x.off_track]
    if off:
        ax.scatter([x.tokens for x in off], [x.loss for x in off], color="C3", zorder=3, s=12, label="off track")
    ax.set(xscale="log", yscale="log", xlabel="tokens", ylabel="loss")
    ax.legend(fontsize=8)
    save(fig, out)


def cmd_allocate(args) -> int:
    from .laws import Law, available_laws, get_law

    law = Law.load(args.fit)
    _level_of(args, law)
    if not law.allocates():
        raise ScalingError(f"a {law.name} fit has no compute-optimal allocation (laws that have one: "
                           f"{', '.join(n for n in available_laws() if get_law(n).allocates())})")
    unused = [c for c in ("U",) if getattr(args, c, None) is not None and c not in law.allocation_conditions]
    if unused:
        raise ScalingError(f"a {law.name} fit allocates from the compute alone; it does not use "
                           + " ".join(f"--{c}" for c in unused))
    conditions = {c: getattr(args, c, None) for c in law.allocation_conditions}
    if any(v is None for v in conditions.values()):
        missing = " ".join(f"--{c} VALUE" for c, v in conditions.items() if v is None)
        raise ScalingError(f"a {law.name} fit allocates compute given {list(conditions)}: add {missing}"
                           + (" (unique tokens available)" if "U" in conditions else ""))
    table = law.compute_optimal(args.compute, level=args.level, **conditions)
    co = table.iloc[0]
    out = {"law": law.name, "compute": args.compute}
    for k in ("N_opt", "D_opt", "tokens_per_param", "loss"):
        out[k] = float(co[k])
    text = (f"{law.name}: compute-optimal allocation for C = {args.compute:.3g} FLOPs\n"
            f"  N_opt = {out['N_opt']:.4g} parameters\n  D_opt = {out['D_opt']:.4g} tokens\n"
            f"  tokens per parameter = {out['tokens_per_param']:.3g}\n  loss = {out['loss']:.4f}")
    if "N_opt_lo" in co:
        out["interval"] = {k: [float(co[f"{k}_lo"]), float(co[f"{k}_hi"])]
                           for k in ("N_opt", "D_opt", "tokens_per_param", "loss")}
        out["level"] = args.level
        pct = int(round(100 * args.level))
        text += "\n" + "\n".join(f"  {pct}% CI {k}: [{v[0]:.4g}, {v[1]:.4g}]" for k, v in out["interval"].items())
        alts = table.attrs.get("alternatives")
        if alts:
            out["interval_includes"] = alts
            text += (f"\n  (the intervals include the allocations of {', '.join(alts)}: within noise of this fit in "
                     "its selection, and allocating differently)")
    if law.law.tied_params().get("beta") == "alpha" and not law.law.allocation_conditions:  # under U it is not C^0.5
        text += "\n  note: alpha and beta are tied in this fit, so a = b = 0.5 by construction, not measured"
    _emit(out, args.json, text)
    return 0


def cmd_plot(args) -> int:
    from .laws import Law
    from .plotting import plot_fit, save

    law = Law.load(args.fit)
    if (args.runs or args.curve_loss) and not law.curve_law:
        raise ScalingError(f"--runs and --curve-loss apply to curve fits (tissue, mpl), not a {law.name} fit")
    if args.curve_loss and not args.runs:
        raise ScalingError("--curve-loss picks the column of a sweep's curves table read with --runs")
    if args.where and not args.data:
        raise ScalingError("--where selects rows of DATA: give the table too (scaling plot FIT DATA --where ...)")
    _where(args)
    curve_loss = args.curve_loss or ((getattr(law, "fit_info_", None) or {}).get("curve_loss") if args.runs else None)
    fig = plot_fit(law, args.data, columns=args.columns, dropna=args.dropna, runs=args.runs, curve_loss=curve_loss,
                   compare=law.references())
    path = save(fig, args.out)
    print(f"wrote {path}")
    return 0


def cmd_backtest(args) -> int:
    from .backtest import backtest, plot_backtest
    from .plotting import save

    from .laws import available_laws, get_law

    _where(args)
    if args.decay_by_size and (args.law not in available_laws() or "decay_by_size" not in get_law(args.law).options()):
        raise ScalingError(f"--decay-by-size applies to --law mpl, not --law {args.law}")
    if args.holdout_runs is not None or (args.law in available_laws() and get_law(args.law).curve_law):
        return _curve_backtest(args)  # a curve law on whole curves (issue 15): its own library function
    _auto_only(args)
    if args.law in available_laws() and get_law(args.law).target != "loss":
        own = ("`scaling overopt backtest DATA --law " + args.law + "` (fit the smaller reward models, predict the "
               "largest one's curve and peak)" if args.law.startswith("gao") else
               "scaling.laws.rlhf.backtest_samples in Python (fit k <= 8, predict k >= 16)")
        raise ScalingError(f"--law {args.law} predicts {get_law(args.law).target}, not a run's final loss: backtest it "
                           f"with {own}")
    if args.target_N is not None or args.target_C is not None:
        raise ScalingError("scaling backtest --law auto takes its target from the held-out runs (their largest "
                           "--by); drop --target-N / --target-C")
    if args.by is not None and args.holdout is not None and args.law != "auto":
        raise ScalingError("--by ranks the runs for --holdout-top; --holdout EXPR names the held-out runs itself "
                           "(e.g. --holdout 'C > 1e21')")
    settings = _given_settings(args)
    if args.tie_exponents:
        settings["tie_exponents"] = True
    res = backtest(args.data, args.law, holdout=args.holdout, holdout_top=args.holdout_top, by=args.by or "N",
                   level=args.level, bootstrap=args.bootstrap, columns=args.columns, seed=args.seed,
                   drop_highest_loss=args.drop_highest_loss, dropna=args.dropna, candidates=args.candidates,
                   average_seeds=not args.no_average_seeds, **settings)
    results = res if isinstance(res, list) else [res]
    if args.plot:
        save(plot_backtest(results[0]), args.plot)
    if args.json:
        out = results[0].to_dict() if not isinstance(res, list) else {"ranking": [r.to_dict() for r in results]}
        _emit(out, True, "")
        return 0
    lines = [r.summary_line() for r in results]
    for r in results:
        if r.coverage_note():
            print(r.coverage_note(), file=sys.stderr)
    if not isinstance(res, list):
        t = res.table
        lines.append("")
        lines.append(t.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    else:
        lines.insert(0, "laws ranked by mean absolute relative error on the held-out runs:")
    if args.plot:
        lines.append(f"\nwrote {args.plot}")
    print("\n".join(lines))
    return 0


def _curve_backtest(args) -> int:
    from .curve_backtest import curve_backtest

    if args.holdout_runs is None:
        raise ScalingError(f"--law {args.law} is a curve law: backtest it on a curves table (run, N, step, lr, loss) "
                           "with --holdout-runs R1,R2,... (those runs' whole curves are held out)")
    if args.holdout is not None or args.holdout_top is not None:
        raise ScalingError("--holdout-runs names the held-out curves; drop --holdout / --holdout-top")
    unused = [f for f, v in (("--tie-exponents", args.tie_exponents), ("--drop-highest-loss", args.drop_highest_loss),
                             ("--no-average-seeds", args.no_average_seeds)) if v]
    if unused:
        raise ScalingError(f"{_applies(unused)} to laws of a run's final "
                           f"loss, not to a curve law's backtest")
    settings = _given_settings(args)
    if args.decay_by_size:  # cmd_backtest checked the law takes it
        settings["decay_by_size"] = True
    res = curve_backtest(args.data, args.law, holdout_runs=args.holdout_runs, columns=args.columns,
                         level=args.level, bootstrap=args.bootstrap, seed=args.seed, dropna=args.dropna, **settings)
    if args.plot:
        from .curve_backtest import plot_curve_backtest
        from .plotting import save

        print(f"wrote {save(plot_curve_backtest(res), args.plot)}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        _emit(res.to_dict(), True, "")
        return 0
    per_run = res.table.groupby("run", sort=False).agg(points=("ape", "size"), mape=("ape", "mean"),
                                                       max_ape=("ape", "max")).reset_index()
    print(res.summary_line() + "  (curve points)\n\n"
          + per_run.to_string(index=False, float_format=lambda v: f"{100 * v:.3f}%"))
    if res.coverage_note():
        print(res.coverage_note(), file=sys.stderr)
    return 0


def cmd_compare(args) -> int:
    from .compare import compare, format_comparison

    table = compare(args.data, compute=args.compute, curves=args.curves, bootstrap=args.bootstrap, level=args.level,
                    seed=args.seed, columns=args.columns)
    _emit({"compute": args.compute, "level": args.level, "approaches": table.replace({np.nan: None}).to_dict(orient="records")},
          args.json, format_comparison(table, args.compute, args.level if args.bootstrap else None))
    if args.curves is None:
        print("note: Approach 1 (the envelope of training curves) was not run: it needs the runs' curves "
              "(--curves CURVES, with run, N, tokens, loss)", file=sys.stderr)
    if table["law"].isna().all():
        print("error: no approach could run on these data (reasons above)", file=sys.stderr)
        return 2
    return 0


def _resume_options(args) -> str:
    """The options of an interrupted sweep command that its resume command should repeat (workers, executor)."""
    out = ""
    if getattr(args, "workers", None) is not None:
        out += f" --workers {args.workers}"
    if getattr(args, "executor", "local") not in (None, "local"):
        out += f" --executor {args.executor}"
    return out


def _interrupted(exc: KeyboardInterrupt, command: str, args, unit: str = "runs") -> int:
    """Ctrl-C or SIGTERM during a sweep: one line saying what is kept and how to resume; 130 (143 for SIGTERM)."""
    import signal

    root = "" if args.root in ("out/sweeps", "out/overopt", "out/finetune") else f" --root {args.root}"
    root += _resume_options(args)
    done = exc.summary() if hasattr(exc, "summary") else f"the finished {unit} are kept"
    print(f"interrupted: {done}; resume with: scaling {command} run {args.definition}{root}", file=sys.stderr)
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


def _write_table(df, path, float_format: str | None = None) -> None:
    """A table to ``path``: Parquet when it is named .parquet, else CSV (``float_format`` for the CSV)."""
    path = Path(path)
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False, float_format=float_format)


def _check_out(path, what: str = "--out", example: str = "runs.csv") -> Path | None:
    """An output file's path, checked (and its folder made) before any work: not a directory, folder writable.

    ``None`` (the option not given) passes through.
    """
    if not path:
        return None
    out = Path(path)
    if out.is_dir():
        raise ScalingError(f"{what} {out} is a directory; give a file name, such as {out / example}")
    if out.parent.exists() and not out.parent.is_dir():
        raise ScalingError(f"{what} {out}: {out.parent} is a file, not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScalingError(f"cannot create the folder for {what} {out}: {exc.strerror or exc}") from None
    import os

    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ScalingError(f"cannot write {what} {out}: permission denied")
    return out


def cmd_sweep_run(args) -> int:
    from .sweep import run_sweep, status

    try:
        run_sweep(args.definition, executor=args.executor, workers=args.workers, root=args.root,
                  retry_failed=args.retry_failed)
    except KeyboardInterrupt as exc:
        return _interrupted(exc, "sweep", args)
    from .sweep.spec import load_spec

    spec = load_spec(args.definition)
    st = status(spec["name"], args.root)
    print(f"sweep {st['name']}: {st['done']} done, {st['failed']} failed, {st['diverged']} diverged of {st['total']}")
    if spec["grid"].get("adaptive"):  # the grid is round 0; extend places the next rounds
        root = "" if args.root == "out/sweeps" else f" --root {args.root}"
        print(f"grid.adaptive: add sizes around each budget's optimum in rounds with `scaling sweep extend "
              f"{args.definition}{root}`" + (" (replicates: auto places seeds only under extend: `sweep run` trained "
                                             "every seed of the grid)" if spec["grid"]["adaptive"].get("replicates")
                                             == "auto" else ""))
    if st["failed"]:
        root = "" if args.root == "out/sweeps" else f" --root {args.root}"
        print(f"failed runs are not retried again: `scaling sweep status {st['name']}{root}` shows their errors; "
              f"fix the cause, then `scaling sweep run {args.definition}{root} --retry-failed`", file=sys.stderr)
    return 0 if st["failed"] == 0 else 1


def cmd_sweep_extend(args) -> int:
    import signal

    from .sweep.adaptive import extend

    try:
        out = extend(args.sweep, rounds=args.rounds, target_ci_a=args.target_ci_a, replicates=args.replicates,
                     root=args.root,
                     executor=args.executor, workers=args.workers, progress=not args.json)
    except KeyboardInterrupt as exc:
        root = "" if args.root == "out/sweeps" else f" --root {args.root}"
        done = exc.summary() if hasattr(exc, "summary") else "the finished runs are kept"
        print(f"interrupted: {done}; the round's runs are in the store: resume with: scaling sweep extend "
              f"{args.sweep}{root}{_resume_options(args)}", file=sys.stderr)
        return 128 + int(getattr(exc, "signum", signal.SIGINT))
    ci = "no interval" if out["ci_a"] is None else f"[{out['ci_a'][0]:.3f}, {out['ci_a'][1]:.3f}]"
    a = "no fit" if out["a"] is None else f"{out['a']:.3f}"
    text = (f"sweep {out['name']}: round {out['round']}, {out['runs']} runs, {out['flops_trained']:.3g} FLOPs trained; "
            f"a = {a}, 90% interval {ci} (target: narrower than {out['target_ci_a']:g})\n  {out['stopped']}")
    text += "".join(f"\n  C={p['budget']:.3g}: " + (f"N_opt={p['N_opt']:.3g}" if p["N_opt"] else
                                                   f"not used: {p['status']}") for p in out["profiles"])
    _emit(out, args.json, text)
    return 0


def cmd_sweep_status(args) -> int:
    from .sweep import status

    st = status(args.name, args.root)
    eta = "-" if st["eta_s"] is None else f"{st['eta_s'] / 60:.1f} min"
    stopped = ""
    if not st["driver"] and st["remaining"]:
        stopped = "  (no driver is running" + (": they stopped with it; `scaling sweep run` resumes them)"
                                                if st["running"] else ")")
    text = (f"sweep {st['name']}: {st['total']} runs\n  done      {st['done']}\n  running   {st['running']}{stopped}\n"
            f"  pending   {st['pending']}\n  failed    {st['failed']}\n  diverged  {st['diverged']}\n"
            f"  remaining {st['remaining']}  (ETA {eta})")
    if set(st.get("kinds") or {}) - {"run"}:  # WSD branches: what the grid would cost alone, what it trains
        k = st["kinds"]
        text += (f"\n  cells     {sum(k.get('stable', {}).values())} stable runs, {sum(k.get('branch', {}).values())} "
                 f"cooldown branches\n  FLOPs     {st['flops']:.3g} as independent runs; trained {st['flops_trained']:.3g}"
                 f" so far of {st['flops_planned']:.3g} ({st['flops_planned'] / st['flops']:.2f} of independent)")
    text += "".join(f"\n  failed: {r['run_id']} after {r['attempts']} attempt(s): {r['error']}" for r in st["failed_runs"])
    _emit(st, args.json, text)
    return 0


def _curves_path(out: Path, what: str = "curves") -> Path:
    """The curves file beside a runs file: curves.csv beside runs.csv, else <stem>_curves beside <stem>
    (``what``: another companion, best_hparams)."""
    return out.with_name((what if out.stem == "runs" else f"{out.stem}_{what}") + out.suffix)


def cmd_sweep_export(args) -> int:
    from .sweep import export

    out = _check_out(args.out)
    curves_path = _check_out(args.curves or _curves_path(out), "--curves")
    if curves_path.resolve() == out.resolve():
        raise ScalingError(f"--curves and --out are the same file ({out}); give the curves another name")
    best_path = _check_out(_curves_path(out, "best_hparams"), "--best-hparams") if args.best_hparams else None
    runs, curves = export(args.name, args.root)
    _write_table(runs, out)
    _write_table(curves, curves_path)
    print(f"wrote {out} ({len(runs)} runs) and {curves_path} ({len(curves)} curve points)")
    if "status" in runs and (runs["status"] != "done").any():
        counts = runs.loc[runs["status"] != "done", "status"].value_counts()
        print(f"note: {int(counts.sum())} of {len(runs)} runs are not done ("
              + ", ".join(f"{n} {k}" for k, n in counts.items()) + "): their rows have no final loss"
              + ("; `scaling sweep run` finishes them" if counts.index.isin(["pending", "running"]).any() else ""),
              file=sys.stderr)
    if "branch_start" in runs and runs["branch_start"].notna().any():  # WSD branches: what the sweep trained
        print(f"WSD branches: the sweep trained {runs['flops_trained'].sum():.3g} FLOPs (flops_trained: each stable run "
              f"once plus every branch), {runs['flops_trained'].sum() / runs['flops'].sum():.2f} of the "
              f"{runs['flops'].sum():.3g} its runs would cost trained alone (flops)")
    if best_path is not None:
        from .data import best_hparams

        best = best_hparams(runs)
        lo, hi = int(best["n_settings"].min()), int(best["n_settings"].max())
        if hi == 1:
            print("\n--best-hparams: this sweep has no hyperparameter axis (each (N, D) cell ran one setting of lr, "
                  "batch and warmup): nothing to compare, no file written. Add grid.lr, grid.warmup or "
                  "grid.batch_tokens to the definition to compare settings")
            return 0
        _write_table(best, best_path)
        shown = best.rename(columns={"D_grid": "D"}).drop(columns=["n_settings"])
        print(f"\nbest setting per (N, D) cell, on the mean loss over seeds ({lo if lo == hi else f'{lo}-{hi}'} "
              "settings a cell; gap: the runner-up's mean minus the best's):")
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        tied = best[best["gap"] == 0]
        if len(tied):
            cells = "; ".join(f"N={r.N:.6g}, D={r.D_grid if 'D_grid' in best else r.D:.4g}" for r in tied.itertuples())
            print(f"tie: {len(tied)} cell(s) where two or more settings have exactly the same mean loss (gap 0; the "
                  f"one first in the runs table is shown): {cells}")
        from .data import settings_at_edge

        for note in settings_at_edge(runs, best):
            print(f"edge: {note}")
        print(f"wrote {best_path} ({len(best)} cells)")
    return 0


def cmd_data_prepare(args) -> int:
    from .sweep.prepare import prepare

    try:
        meta = prepare(args.out, text=args.text, hf_dataset=args.hf_dataset, text_column=args.text_column,
                       tokenizer=args.tokenizer, val_fraction=args.val_fraction, eos_token=args.eos_token,
                       progress=not args.json)
    except KeyboardInterrupt:
        # the token files are written beside the folder's and swapped in only when whole
        print(f"\ninterrupted: no new files in {args.out} (a corpus prepared there before is unchanged); run the "
              "same command again to prepare it",
              file=sys.stderr)
        return 130
    if args.json:
        _emit({k: v for k, v in meta.items() if k != "settings"}, True, "")
    elif not meta.get("skipped"):
        out = Path(args.out)
        print(f"wrote {out / 'train.bin'} ({meta['n_train_tokens']:,} tokens) and {out / 'val.bin'} "
              f"({meta['n_val_tokens']:,} tokens) from {meta['n_documents']:,} document{'s' if meta['n_documents'] != 1 else ''}: {meta['dtype']}, vocabulary "
              f"{meta['vocab_size']:,}, documents separated by id {meta['eos_id']}; {out / 'meta.json'}\n"
              f"train on it with `corpus: {{name: tokens, path: {out}}}` in a sweep definition")
    return 0


def cmd_overopt_run(args) -> int:
    from .overopt import export, load_spec, run_overopt, status

    spec = load_spec(args.definition)
    if args.out:
        _check_out(args.out)
    try:
        df = run_overopt(spec, executor=args.executor, workers=args.workers, root=args.root,
                         retry_failed=args.retry_failed)
    except KeyboardInterrupt as exc:
        return _interrupted(exc, "overopt", args, unit="cells")
    st = status(spec["name"], args.root)
    if args.out:
        _write_overopt(df, export(spec["name"], args.root, per_prompt=True), args.out)
    _emit(st, args.json, f"overopt {st['name']}: {st['done']} of {st['total']} cells done, {st['failed']} failed; "
          f"{len(df)} result rows" + (f"; wrote {args.out}" if args.out else ""))
    return 0 if st["failed"] == 0 else 1


def _write_overopt(df, per_prompt, out) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_table(df, out, float_format="%.8g")
    # one row per prompt and point: large, so compressed (read_table and pandas read it as is)
    per_prompt.to_csv(out.with_name(out.stem + "-prompts.csv.gz"), index=False, float_format="%.6g")
    if "samples_per_prompt" in df.columns and (df["method"] == "rl").any():  # the RLHF axes: gold at RL's end
        from .overopt.axes import final_gold

        final_gold(df).to_csv(out.with_name(out.stem + "-final.csv"), index=False, float_format="%.8g")


def cmd_overopt_status(args) -> int:
    from .overopt import status

    st = status(args.name, args.root)
    stages = "\n".join(f"  {k:<7} " + ", ".join(f"{n} {s}" for s, n in v.items()) for k, v in st["stages"].items())
    failed = "".join(f"\n  failed: {r['run_id']}: {r['error']}" for r in st.get("failed_cells", []))
    _emit(st, args.json, f"overopt {st['name']}: {st['total']} cells; {st['done']} done, {st['running']} running, "
          f"{st['pending']} pending, {st['failed']} failed\n{stages}{failed}")
    return 0


def cmd_overopt_export(args) -> int:
    from .overopt import export

    _check_out(args.out)
    df = export(args.name, args.root)
    if df.empty:
        raise ScalingError(f"overoptimization sweep {args.name!r} has no finished best-of-n, RL or DPO cells yet")
    _write_overopt(df, export(args.name, args.root, per_prompt=True), args.out)
    print(f"wrote {args.out} ({len(df)} rows) and its per-prompt table beside it")
    return 0


def cmd_finetune_run(args) -> int:
    from .finetune import load_spec
    from .finetune.runner import run_finetune, status

    name = load_spec(args.definition, resolve=False)["name"]
    try:
        df = run_finetune(args.definition, executor=args.executor, workers=args.workers, root=args.root,
                          retry_failed=args.retry_failed, progress=not args.json)
    except KeyboardInterrupt as exc:
        return _interrupted(exc, "finetune", args, unit="cells")
    st = status(name, args.root)
    root = "" if args.root == "out/finetune" else f" --root {args.root}"
    _emit(st, args.json, f"finetune {name}: {st['done']} of {st['total']} cells done, {st['diverged']} diverged; "
          f"{len(df)} result rows; write them with `scaling finetune export {name}{root}`")
    return 0 if st["failed"] == 0 else 1


def cmd_finetune_status(args) -> int:
    from .finetune.runner import status

    st = status(args.name, args.root)
    methods = "\n".join(f"  {m:<7} " + ", ".join(f"{n} {s}" for s, n in v.items()) for m, v in st["methods"].items())
    failed = "".join(f"\n  failed: {r['run_id']}: {r['error']}" for r in st["failed_cells"])
    _emit(st, args.json, f"finetune {st['name']}: {st['total']} cells; {st['done']} done, {st['running']} running, "
          f"{st['pending']} pending, {st['failed']} failed, {st['diverged']} diverged\n{methods}{failed}")
    return 0


def cmd_finetune_export(args) -> int:
    from .finetune.runner import export

    out = Path(args.out)  # a folder (DIR/NAME.csv), or the file itself when it is named .csv or .parquet
    out = _check_out(out if out.suffix in (".csv", ".parquet") else out / f"{args.name}.csv", what="--out", example="")
    df = export(args.name, args.root)
    if df.empty:
        raise ScalingError(f"fine-tuning sweep {args.name!r} has no finished cells yet "
                           f"(`scaling finetune status {args.name}` says where it is)")
    _write_table(df, out, float_format="%.8g")
    method = "lora" if "lora" in set(df["method"]) else str(df["method"].iloc[0])
    print(f"wrote {out} ({len(df)} rows, methods {', '.join(sorted(set(df['method'])))}); fit it with "
          f"`scaling fit {out} --law finetune --x N --method {method}`")
    return 0


def cmd_overopt_backtest(args) -> int:
    from .laws import backtest_largest, get_law

    kw = dict(bootstrap=args.bootstrap, kl_penalty=args.kl_penalty, max_d=args.max_d, rm_data=args.rm_data)
    if args.law == "gao-bon":
        kw.pop("kl_penalty")
    res = backtest_largest(get_law(args.law), args.data, **kw)
    res.pop("law")
    pk, own = res["predicted_peak"], res["fitted_peak"]
    f = (lambda v: "none" if v is None else f"{v:.3g}")
    text = (f"{args.law}: fitted on RMs {', '.join(f'{n:,}' for n in res['trained_on'])}; predicting RM "
            f"{res['rm_params']:,} over {res['n_test']} points: mean abs error {res['mae']:.3g}, max {res['max_abs_error']:.3g}\n"
            f"  predicted peak: d* {f(pk['d_star'])}, KL* {f(pk['kl_star'])}, gold* {f(pk['gold_star'])}\n"
            f"  its own fit:    d* {f(own['d_star'])}, KL* {f(own['kl_star'])}, gold* {f(own['gold_star'])}"
            + ("" if res["fitted_peak_in_data"] else
               f" (beyond its data, d <= {res['d_max']:.3g}: its gold had not turned down where it was measured)"))
    _emit(res, args.json, text)
    return 0


def cmd_overopt_plot(args) -> int:
    from .data import read_table
    from .laws import Law
    from .plotting import plot_overopt, save

    laws = {}
    for f in args.fit or []:
        law = Law.load(f)
        if law.figure != "overopt":
            raise ScalingError(f"{f} is a {law.name} fit; overlay gao-bon or gao-rl fits")
        laws[law.method] = law
    fig = plot_overopt(read_table(args.data), laws, kl_penalty=args.kl_penalty, rm_data=args.rm_data)
    print(f"wrote {save(fig, args.out)}")
    return 0


def _axis_choices(args) -> dict:
    return {k: getattr(args, k, None) for k in ("policy", "rm_params", "rm_data", "kl_penalty")}


def cmd_overopt_samples(args) -> int:
    """`scaling overopt samples EXPORT`: rlhf-samples fitted to gold at the end of RL against samples per prompt."""
    from .overopt.axes import fit_samples

    _check_out(args.out, "--out", "samples.json")
    fixed = _merged(args.fix, "--fix")
    fit = fit_samples(args.data, **_axis_choices(args), bootstrap=args.bootstrap, seed=args.seed, level=args.level,
                      **({"fixed": fixed} if fixed else {}))
    if args.out:
        fit.save(args.out)
    _emit(fit.summary(), args.json, fit.report() + (f"\n\nsaved to {args.out}" if args.out else ""))
    return 0


def cmd_overopt_peaks(args) -> int:
    """`scaling overopt peaks EXPORT`: per policy, the highest gold along the optimisation and the KL there."""
    from .overopt.axes import peaks_by_policy

    kw = {k: v for k, v in _axis_choices(args).items() if k != "policy"}
    res = peaks_by_policy(args.data, method=args.method, samples_per_prompt=args.samples_per_prompt,
                          bootstrap=args.bootstrap, level=args.level, seed=args.seed, **kw)
    pct = int(round(100 * args.level))
    point = "n_star" if args.method == "bon" else "step_star"
    lines = [f"{args.method}: peak of mean gold per policy ({pct}% intervals over held-out prompts)"]
    for r in res.itertuples():
        ci = (lambda a, b: "" if np.isnan(a) else f" [{a:.3f}, {b:.3f}]")
        lines.append(f"  {r.policy:<14} {r.policy_params:>12,.0f} params: gold* {r.gold_star:.3f}"
                     f"{ci(r.gold_star_lo, r.gold_star_hi)} at {point[:-5]} {getattr(r, point):g}, d* {r.d_star:.3f}"
                     f"{ci(r.d_star_lo, r.d_star_hi)}; gold at the end {r.gold_end:.3f}"
                     + ("" if r.peaked else " (no peak: the best point is the last one, so d* is a lower bound)"))
    _emit({"method": args.method, "level": args.level, "policies": res.to_dict(orient="records")}, args.json,
          "\n".join(lines))
    return 0


def cmd_laws(args) -> int:
    from .laws import available_laws, get_law

    rows = {n: {"formula": get_law(n).formula, "inputs": list(get_law(n).inputs), "params": get_law(n).param_names()}
            for n in available_laws()}
    lines = []
    for n, r in rows.items():
        lines.append(f"{n:<12} {r['formula']}")
        forms = getattr(get_law(n), "forms", None)  # a law with several forms (hparams): each under --form
        if forms:
            r["forms"] = {f: {"formula": c.formula, "inputs": list(c.inputs), "params": c.param_names()}
                          for f, c in forms().items()}
            lines += [f"{'':<12}   --form {f}: {c['formula']}" for f, c in r["forms"].items()]
    _emit(rows, args.json, "\n".join(lines))
    return 0


def cmd_quickstart(args) -> int:
    from .quickstart import run

    try:
        run(args.out, bootstrap=args.bootstrap, root=args.root, workers=args.workers, seed=args.seed)
    except KeyboardInterrupt as exc:
        import signal

        done = exc.summary() if hasattr(exc, "summary") else "the finished runs are kept"
        print(f"interrupted: {done}; run `make quickstart` (or `scaling quickstart`) again to resume",
              file=sys.stderr)
        return 128 + int(getattr(exc, "signum", signal.SIGINT))
    return 0


# ------------------------------------------------------------------ parser
def _fit_settings_args(parser) -> None:
    """The fit settings `scaling fit` and `scaling backtest` both take."""
    parser.add_argument("--columns", help="map law names to your columns, e.g. N=params,loss=val_loss")
    parser.add_argument("--drop-highest-loss", type=_count, default=0, metavar="K", help="drop the K highest-loss runs")
    parser.add_argument("--dropna", action="store_true", help="drop rows with missing values instead of failing")
    parser.add_argument("--where", metavar="EXPR", help="use only the rows where EXPR holds, over the file's columns, "
                        "e.g. 'D_pretrain == 3999744 and rank == 4' (pandas DataFrame.eval)")
    parser.add_argument("--loss", choices=["huber", "squared"], help="objective (default: the law's, huber for most)")
    parser.add_argument("--delta", type=_num, help="Huber delta (default 1e-3)")
    parser.add_argument("--fix", type=_pairs, action="append", help="fix parameters, e.g. E=1.69,alpha=0.34 "
                        "(repeatable); with --law auto, the values of the -fixed- candidates")
    parser.add_argument("--bound", type=_bounds, action="append", help="bounds, e.g. alpha=0:1; alpha=-inf:inf lifts "
                        "the default non-negative exponent bound")
    parser.add_argument("--tie-exponents", action="store_true", help="chinchilla: fit alpha = beta")
    parser.add_argument("--no-prune", action="store_true", help="run every start to convergence")
    parser.add_argument("--no-average-seeds", action="store_true",
                        help="use every run; by default a table with a seed column is fitted on each cell's mean over "
                             "its seeds (a cell: one value of each column the law reads, N, D or C, and of lr, batch "
                             "and warmup, equal within 1e-9; each seed counted once; NaN seeds left out of the mean)")
    parser.add_argument("--target-N", dest="target_N", type=_num, metavar="N",
                        help="--law auto: the model size the prediction is for (default: one decade beyond the runs)")
    parser.add_argument("--target-C", dest="target_C", type=_num, metavar="C",
                        help="--law auto: the compute budget the prediction is for (extrapolation measured in C)")
    parser.add_argument("--candidates", help="--law auto: the candidates, e.g. chinchilla,chinchilla-tied,kaplan "
                        "(default: every applicable law and variant; -fixed-E with --fix E=VALUE)")


def _uncertainty_args(parser, bootstrap: int) -> None:
    parser.add_argument("--bootstrap", type=_count, default=bootstrap, metavar="B", help="bootstrap resamples (0: none)")
    parser.add_argument("--level", type=_num, default=0.9, help="interval level")
    parser.add_argument("--seed", type=int, default=0)


def _run_and_status(sub, unit: str, root: str, run_fn, status_fn, status_help: str):
    """`run DEFINITION` and `status NAME` subcommands of a sweep kind; returns the run parser."""
    r = sub.add_parser("run", help="run (or resume) the sweep of a YAML definition")
    r.add_argument("definition")
    r.add_argument("--executor", default="local", help="local (default) or submitit")
    r.add_argument("--workers", type=_positive, help=f"parallel {unit} (default: one per core, or per GPU)")
    r.add_argument("--root", default=root, help="where the sweep's store and working directories live")
    r.set_defaults(func=run_fn)
    st = sub.add_parser("status", help=status_help)
    st.add_argument("name")
    st.add_argument("--root", default=root)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=status_fn)
    return r


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scaling", description="Scaling laws for language models: fit, predict, allocate, plot.")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="fit a law to a run table (CSV or Parquet)")
    f.add_argument("data")
    f.add_argument("--law", default="chinchilla", help="law name (see `scaling laws`), or 'auto': pick the law by "
                   "nested backtests on these runs")
    _fit_settings_args(f)
    _uncertainty_args(f, 1000)
    f.add_argument("--runs", help="--law tissue: the sweep's runs table (DATA is its curves table)")
    f.add_argument("--curve-loss", help="curve laws with --runs: the sweep curves' column to fit (default eval_loss)")
    f.add_argument("--momentum", type=_num, help="curve laws: momentum lambda of tissue's annealing area (default 0.999)")
    f.add_argument("--decay-by-size", action="store_true", help="--law mpl: what a learning-rate decay buys grows as a "
                   "power of N (kappa_B; else one B for every size): for new schedules at the sizes fitted, not for "
                   "larger ones")
    f.add_argument("--form", choices=["steplaw", "deepseek"], help="--law hparams: eta_opt and B_opt in N and D "
                   "(StepLaw) or in compute alone (DeepSeek)")
    f.add_argument("--tolerance", type=_num, help="--law hparams: near-optimal = loss within this fraction of a "
                   "cell's best (default 0.0025)")
    f.add_argument("--x", choices=["N", "D_pretrain", "pet_params"],
                   help="--law finetune: the scaling factor X (base-model size, its pretraining tokens, PET params)")
    f.add_argument("--method", help="--law finetune: fit the rows of this fine-tuning method (full, lora, prompt)")
    f.add_argument("--resample", choices=["residuals", "runs"], help="--law isoflop: what the bootstrap resamples: "
                   "the parabolas' residuals with the design fixed (default; calibrated) or runs within each budget")
    f.add_argument("--shared-alpha", action="store_true", help="--law gao-*: one alpha for every RM size")
    f.add_argument("--kl-penalty", type=_num, help="--law gao-rl: fit only the runs with this KL penalty")
    f.add_argument("--score", choices=["gold", "proxy"], help="--law gao-*: which reward to fit (default gold)")
    f.add_argument("--max-d", type=_num, help="--law gao-*: fit only points with sqrt(KL) <= this")
    f.add_argument("--rm-data", type=_num, help="--law gao-*: reward models trained on this many pairs")
    f.add_argument("--out", help="write the fit (with bootstrap samples) to this JSON file")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_fit)

    pr = sub.add_parser("predict", help="predict loss from a saved fit")
    pr.add_argument("fit")
    for k, what in (("N", "non-embedding parameters"), ("D", "training tokens"),
                    ("C", "training FLOPs (with --N: D = C / 6N)"), ("S", "kaplan-ns: optimizer steps S_min"),
                    ("U", "data-constrained laws: unique tokens"), ("d", "overoptimization laws: sqrt(KL) distance")):
        pr.add_argument(f"--{k}", type=_num, help=what)
    pr.add_argument("--rm_params", "--rm-params", dest="rm_params", type=_num, help="gao laws: proxy RM parameters")
    for k, what in OTHER_INPUTS.items():
        pr.add_argument(f"--{k}", f"--{k.replace('_', '-')}", dest=k, type=_num, help=what)
    pr.add_argument("--level", type=_num, help="interval level (default: the fit's, 0.9 unless fitted with --level)")
    pr.add_argument("--model", help="plan a run: model shape 'n_layer=4,d_model=128' or a config file")
    pr.add_argument("--tokens", type=_num, help="plan a run: training tokens")
    pr.add_argument("--schedule", choices=["cosine", "wsd", "constant"], default="cosine")
    pr.add_argument("--warmup", type=_num, default=0.05, help="warmup steps, or a fraction of them")
    pr.add_argument("--final-lr-frac", type=_num, default=0.1)
    pr.add_argument("--decay-frac", type=_num, default=0.2, help="wsd: fraction of steps that decay")
    pr.add_argument("--tokens-per-step", type=_positive,
                    help="plan a run: tokens per optimizer step, the run's batch (default 4,096); in the units the "
                         "fit's curves counted (a fit on curves with no token counts works in steps: give 1)")
    pr.add_argument("--out", help="write the plan (predicted curve with band) to this JSON file")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_predict)

    wa = sub.add_parser("watch", help="follow a training log and check it against a plan")
    wa.add_argument("log", help="JSONL/CSV log, trainer_state.json, TensorBoard events, MLflow run dir")
    wa.add_argument("--plan", required=True)
    wa.add_argument("--reader", default="auto", help="auto, jsonl, csv, hf, tensorboard, mlflow")
    wa.add_argument("--columns", help="e.g. step=global_step,loss=train/loss")
    wa.add_argument("--run", help="a table of several runs' curves (a run, run_id or run_name column): the run to watch")
    wa.add_argument("--once", action="store_true", help="check what is there, exit 1 if the run is off track")
    wa.add_argument("--interval", type=_num, default=2.0, help="seconds between polls")
    wa.add_argument("--timeout", type=_num, help="stop following after this many seconds")
    wa.add_argument("--consecutive", type=_positive, default=3, help="points outside the band before flagging drift")
    wa.add_argument("--plot", help="write (and keep updating) a PNG of the run against the plan")
    wa.add_argument("--json", action="store_true", help="one JSON status per point")
    wa.set_defaults(func=cmd_watch)

    a = sub.add_parser("allocate", help="compute-optimal N and D for a budget")
    a.add_argument("fit")
    a.add_argument("--compute", type=_num, required=True, help="FLOPs")
    a.add_argument("--U", type=_num, help="unique tokens available (data-constrained fits)")
    a.add_argument("--level", type=_num, help="interval level (default: the fit's, 0.9 unless fitted with --level)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_allocate)

    bt = sub.add_parser("backtest", help="fit on small runs, predict the held-out large ones, score it")
    bt.add_argument("data")
    bt.add_argument("--law", default="chinchilla", help="law name, 'all' to rank every applicable law, or 'auto' to "
                    "run the selection of --law auto on the training runs only")
    _fit_settings_args(bt)
    bt.add_argument("--holdout", help="held-out runs, e.g. 'N > 2.5e9'")
    bt.add_argument("--holdout-top", type=_num, metavar="FRACTION", help="hold out the top fraction of sizes")
    bt.add_argument("--by", choices=["N", "C"], default=None,
                    help="what --holdout-top ranks the runs by (and --law auto's target): N (default) or C")
    bt.add_argument("--holdout-runs", metavar="R1,R2,...", help="curve laws (mpl, tissue) on a curves table (run, N, "
                    "step, lr, loss): hold out these runs' whole curves")
    bt.add_argument("--decay-by-size", action="store_true", help="--law mpl: as in scaling fit")
    _uncertainty_args(bt, 200)
    bt.add_argument("--plot", help="write a PNG of held-out runs vs predictions")
    bt.add_argument("--json", action="store_true")
    bt.set_defaults(func=cmd_backtest)

    cp = sub.add_parser("compare", help="Chinchilla Approaches 1, 2 and 3 side by side")
    cp.add_argument("data", help="final-loss runs table (Approaches 2 and 3)")
    cp.add_argument("--curves", help="curves table: run, N, tokens, loss (Approach 1)")
    cp.add_argument("--compute", type=_num, required=True, help="budget for the allocation column (FLOPs)")
    cp.add_argument("--columns")
    _uncertainty_args(cp, 200)
    cp.add_argument("--json", action="store_true")
    cp.set_defaults(func=cmd_compare)

    pl = sub.add_parser("plot", help="plot a saved fit (and its data)")
    pl.add_argument("fit")
    pl.add_argument("data", nargs="?")
    pl.add_argument("--columns")
    pl.add_argument("--runs", help="a curve fit made from a sweep's curves: its runs table (as for fit --runs)")
    pl.add_argument("--curve-loss", help="with --runs: the curves' column the fit used (default: the one the fit "
                    "recorded, else eval_loss)")
    pl.add_argument("--where", help="plot only the rows of DATA where this pandas expression holds, as the fit "
                    "did (e.g. \"D_pretrain == 3999744\")")
    pl.add_argument("--dropna", action="store_true", help="leave out rows with missing values, as the fit did with "
                    "--dropna")
    pl.add_argument("--out", required=True)
    pl.set_defaults(func=cmd_plot)

    sw = sub.add_parser("sweep", help="train families of models: run, status, export")
    swsub = sw.add_subparsers(dest="sweep_command", required=True)
    r = _run_and_status(swsub, "runs", "out/sweeps", cmd_sweep_run, cmd_sweep_status,
                        "done, running, failed (with their errors), remaining, ETA")
    r.add_argument("--retry-failed", action="store_true",
                   help="give runs that failed all their attempts in an earlier run a fresh set of retries")
    ext = swsub.add_parser("extend", help="adaptive placement: add sizes around each IsoFLOP budget's optimum in "
                           "rounds, train them, stop once a's 90%% interval is narrower than the target")
    ext.add_argument("sweep", help="the sweep's name (under --root) or its YAML definition")
    ext.add_argument("--rounds", type=int, help="the last round to run (round 0 is the grid; default: the "
                     "definition's grid.adaptive.rounds)")
    ext.add_argument("--target-ci-a", type=_num, help="stop once a's 90%% interval is narrower than this (default: "
                     "grid.adaptive.target_ci_a)")
    ext.add_argument("--replicates", metavar="all|auto", help="all: every added size trains every seed; auto: "
                     "the grid trains one seed, rounds add sizes or seeds where they narrow a's interval most per "
                     "FLOP (default: grid.adaptive.replicates, else all)")
    ext.add_argument("--executor", default="local", help="local (default) or submitit")
    ext.add_argument("--workers", type=_positive, help="parallel runs (default: one per core, or per GPU)")
    ext.add_argument("--root", default="out/sweeps")
    ext.add_argument("--json", action="store_true")
    ext.set_defaults(func=cmd_sweep_extend)
    exp = swsub.add_parser("export", help="write the runs table (and curves) as CSV or Parquet")
    exp.add_argument("name")
    exp.add_argument("--out", required=True)
    exp.add_argument("--curves", help="curves file (default: curves.csv beside runs.csv; beside X.csv, X_curves.csv)")
    exp.add_argument("--root", default="out/sweeps")
    exp.add_argument("--best-hparams", action="store_true",
                     help="also the best (lr, batch, warmup) per (N, D) cell on the mean loss over seeds: "
                          "printed, and written beside --out (best_hparams.csv beside runs.csv, "
                          "X_best_hparams.csv beside X.csv)")
    exp.set_defaults(func=cmd_sweep_export)

    da = sub.add_parser("data", help="turn your own text into token files a sweep trains on")
    dasub = da.add_subparsers(dest="data_command", required=True)
    dp = dasub.add_parser("prepare", help="text -> DIR/train.bin, DIR/val.bin, DIR/meta.json (documents separated "
                          "by EOS; safe to interrupt and rerun)")
    src = dp.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", action="extend", nargs="+", metavar="PATH_OR_GLOB",
                     help="plain text files: files, folders or a quoted glob ('data/**/*.txt'; unquoted, the shell's "
                          "list of files works too); repeatable")
    src.add_argument("--hf-dataset", metavar="DIR", help="a Hugging Face datasets dataset saved with save_to_disk")
    dp.add_argument("--text-column", default="text", help="--hf-dataset: the column holding the text (text)")
    dp.add_argument("--tokenizer", required=True, metavar="DIR|bytes",
                    help="a local tokenizer folder (transformers.AutoTokenizer.from_pretrained), or bytes "
                    "(UTF-8 bytes, EOS 256)")
    dp.add_argument("--eos-token", help="the token separating documents, when the tokenizer has no EOS token")
    dp.add_argument("--val-fraction", type=_num, default=0.01,
                    help="share of the tokens held out for evaluation, spread over the corpus (0.01)")
    dp.add_argument("--out", required=True, metavar="DIR")
    dp.add_argument("--json", action="store_true", help="print the meta as one JSON object (no progress bar)")
    dp.set_defaults(func=cmd_data_prepare)

    oo = sub.add_parser("overopt", help="reward-model overoptimization sweeps (Gao et al. 2022)")
    oosub = oo.add_subparsers(dest="overopt_cmd", required=True)
    r = _run_and_status(oosub, "cells", "out/overopt", cmd_overopt_run, cmd_overopt_status,
                        "cells done, running, pending, failed, by stage")
    r.add_argument("--out", help="also write the results CSV here (and NAME-prompts.csv.gz beside it)")
    r.add_argument("--retry-failed", action="store_true",
                   help="give cells that failed all their attempts in an earlier run a fresh set of retries")
    r.add_argument("--json", action="store_true")
    r = oosub.add_parser("export", help="write the results CSV (and the per-prompt CSV beside it)")
    r.add_argument("name")
    r.add_argument("--out", required=True)
    r.add_argument("--root", default="out/overopt")
    r.set_defaults(func=cmd_overopt_export)
    r = oosub.add_parser("backtest", help="fit a gao law on the smaller RMs, predict the largest one's curve and peak")
    r.add_argument("data")
    r.add_argument("--law", choices=["gao-bon", "gao-rl"], required=True)
    r.add_argument("--kl-penalty", type=_num, help="gao-rl: runs with this KL penalty only")
    r.add_argument("--max-d", type=_num, help="fit only points with sqrt(KL) <= this")
    r.add_argument("--rm-data", type=_num, help="reward models trained on this many pairs")
    r.add_argument("--bootstrap", type=_count, default=200)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_overopt_backtest)
    r = oosub.add_parser("plot", help="gold and proxy vs sqrt(KL) per RM size, with fitted laws overlaid")
    r.add_argument("data")
    r.add_argument("--fit", action="append", help="a gao-bon or gao-rl fit JSON (repeatable)")
    r.add_argument("--kl-penalty", type=_num, help="RL runs to show (default: those without a penalty, else all)")
    r.add_argument("--rm-data", type=_num, help="reward models trained on this many pairs (default: the most)")
    r.add_argument("--out", required=True)
    r.set_defaults(func=cmd_overopt_plot)
    for name, helptext, func in (
            ("samples", "fit rlhf-samples (R(k) = R_inf - c k^-gamma) to gold at the end of RL vs samples per prompt",
             cmd_overopt_samples),
            ("peaks", "per policy: the highest gold along the optimisation, the KL there, intervals over prompts",
             cmd_overopt_peaks)):
        r = oosub.add_parser(name, help=helptext)
        r.add_argument("data", help="an overoptimization export (the per-prompt one gives peaks intervals)")
        if name == "samples":
            r.add_argument("--policy", help="the policy (e.g. d64-l2-h4) when the export has several")
            r.add_argument("--out", help="save the fit here (JSON)")
            r.add_argument("--fix", type=_pairs, action="append", help="fix parameters, e.g. gamma=0.5")
        else:
            r.add_argument("--method", choices=["bon", "rl", "dpo"], default="rl")
            r.add_argument("--samples-per-prompt", type=_num, help="RL runs with this k (when there are several)")
        r.add_argument("--rm-params", type=_num, help="the reward model (parameters) when there are several")
        r.add_argument("--rm-data", type=_num, help="reward models trained on this many pairs")
        r.add_argument("--kl-penalty", type=_num, help="RL runs with this KL penalty (when there are several)")
        r.add_argument("--bootstrap", type=_count, default=1000)
        r.add_argument("--level", type=float, default=0.9)
        r.add_argument("--seed", type=int, default=0)
        r.add_argument("--json", action="store_true")
        r.set_defaults(func=func)

    ft = sub.add_parser("finetune", help="fine-tuning sweeps: base models x full / LoRA / prompt tuning x D_f "
                        "(Zhang et al. 2024)")
    ftsub = ft.add_subparsers(dest="finetune_cmd", required=True)
    r = _run_and_status(ftsub, "cells", "out/finetune", cmd_finetune_run, cmd_finetune_status,
                        "cells done, running, pending, failed (with their errors), diverged, by method")
    r.add_argument("--retry-failed", action="store_true",
                   help="give cells that failed all their attempts in an earlier run a fresh set of retries")
    r.add_argument("--json", action="store_true", help="print the status as JSON (no progress bar)")
    r = ftsub.add_parser("export", help="write DIR/NAME.csv: run_id, method, N, D_pretrain, pet_params, D_f, loss, "
                         "seed, then the settings (fit it with `scaling fit ... --law finetune`)")
    r.add_argument("name")
    r.add_argument("--out", default="data/finetune", metavar="DIR", help="the folder to write NAME.csv in "
                   "(data/finetune), or a file name ending in .csv")
    r.add_argument("--root", default="out/finetune")
    r.set_defaults(func=cmd_finetune_export)

    lw = sub.add_parser("laws", help="list the laws")
    lw.add_argument("--json", action="store_true")
    lw.set_defaults(func=cmd_laws)

    q = sub.add_parser("quickstart", help="the README's main job: fit, predict, allocate, plot")
    q.add_argument("--out", default="out/quickstart")
    q.add_argument("--bootstrap", type=_count, default=1000)
    q.add_argument("--root", default="out/sweeps", help="where the sweep store lives")
    q.add_argument("--workers", type=_positive)
    q.add_argument("--seed", type=_count, help="train the grid with this training seed instead, as its own sweep "
                   "(quickstart-seedS): how much do the exponents move with the seed?")
    q.set_defaults(func=cmd_quickstart)
    return p


#: printed under the traceback of an exception that is not one of the package's own errors
BUG_REPORT = ("this is a bug in scaling, not in your input: please report it with the command you ran "
              "and the traceback above")


def main(argv: list[str] | None = None) -> int:
    """Run one command. The package's own errors (:class:`ScalingError`: bad input, a missing
    extra) print one ``error:`` line and exit 2; anything else is a bug in the package and
    prints its traceback and :data:`BUG_REPORT`, exit 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _fmt_warning
    try:
        return args.func(args)
    except ScalingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `scaling ... | head`: the reader left; not an error of ours
        import os

        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except Exception as exc:
        from ._extras import from_import_error

        missing = from_import_error(exc) if isinstance(exc, ImportError) else None
        if missing is not None:  # torch or another optional module imported outside a require()
            print(f"error: {missing}", file=sys.stderr)
            return 2
        import traceback

        traceback.print_exc()
        print(BUG_REPORT, file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
