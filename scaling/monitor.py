"""While a run trains: check each logged loss against the plan and say early when it drifts.

    monitor = Monitor(plan)
    status = monitor.update(step, loss)       # -> Status(state="ok" | "drift" | "diverged" | "spike" | "flat" |
                                              #    "invalid", ...)

Each point also re-forecasts the run's final loss from its own observed prefix, with the plan as
the prior (:func:`reforecast`): ``status.forecast`` and its band ``forecast_lo``/``forecast_hi``.

``follow(path)`` tails a growing log (like ``tail -f``), surviving partial lines,
truncation and rotation; ``trainer_callback(plan)`` does the same inside a
Hugging Face ``Trainer``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .readers import read_log


@dataclass
class Status:
    step: int
    tokens: float
    loss: float
    expected: float | None
    lo: float | None
    hi: float | None
    deviation: float | None  # (loss - expected) / expected
    state: str  # ok, drift, diverged, spike, flat, invalid (a loss <= 0), before-plan, after-plan
    consecutive_out: int = 0
    message: str = ""
    smoothed: float | None = None  # the moving average compared with the band
    forecast: float | None = None  # the final loss re-forecast from the run so far (the plan's before any point)
    forecast_lo: float | None = None
    forecast_hi: float | None = None

    @property
    def off_track(self) -> bool:
        return self.state in ("drift", "diverged", "spike", "flat", "invalid")

    def to_dict(self) -> dict:
        """The status as plain values; NaN and infinities become None (JSON has no NaN)."""
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in asdict(self).items()}


_SEVERITY = {"diverged": 4, "invalid": 3, "spike": 3, "drift": 2, "flat": 1}


def _point(step, loss, tokens) -> tuple[int, float, float | None]:
    """A logged point as numbers, or one clear error (a None or a string from a log is not a loss)."""
    from .errors import DataError

    try:
        step_f = float(step)
        loss = float(loss)
        tokens = None if tokens is None else float(tokens)
    except (TypeError, ValueError):
        raise DataError(f"a logged point needs numbers: got step={step!r}, loss={loss!r}, tokens={tokens!r}") from None
    if not math.isfinite(step_f) or step_f < 0 or step_f != int(step_f):
        raise DataError(f"step must be a whole number >= 0, got {step!r}")
    return int(step_f), loss, tokens


#: the residuals of a run about its plan are correlated along the run: count at most this many as independent
MAX_INDEPENDENT = 20
#: the band's half-width, as a share of the part of a run's offset beyond any fitted run's: on the package's own
#: held-out runs such offsets kept 10-110% of their size to the end (benchmarks/RESULTS.md, "reforecast_nested.py")
BEYOND_SPREAD = 0.5


@dataclass
class Forecast:
    final: float
    lo: float
    hi: float
    weight: float  # how much of the run's offset the forecast takes (0: the plan alone; 1: the offset whole)
    offset: float  # log(observed / planned) over the later half of the points seen


def reforecast(expected, observed, final: float, band: tuple[float, float], seen: float,
               level: float = 0.9, calibration=None, shares=None) -> Forecast:
    """The final loss of a run re-forecast from its observed prefix, with a planned curve as the prior.

    ``expected``/``observed``: the plan's and the run's losses at the points seen so far, in order; ``final``:
    the planned final loss, ``band`` its interval; ``seen``: the share of the run's tokens seen; ``shares``: each
    point's share (default: the last point at ``seen``, the others earlier); ``calibration``: what the plan's fit
    learnt of its own runs (``plan["reforecast"]``, :mod:`scaling.laws.reforecast`). The run is taken as the plan
    times a run-specific factor: its offset ``a`` (the mean log ratio of observed to planned over the later half
    of the points seen) counted with the weight ``beta`` at this share of a run, the share of such offsets that
    lasted to the end in the fit's own runs. The part of ``a`` beyond the largest offset any fitted run had by
    this share counts whole: nothing in the fit says an offset that large washes out. Over the last
    ``END_BLEND`` of the run the forecast moves to the run's own level there (the mean log ratio of its points in
    that last stretch, so a training loss's batch noise is averaged): at the end, its final loss. Without a
    calibration (a plan from an older fit, or a fit on too few runs or on curves without run and step columns)
    ``beta`` is 0: the plan stands until that last stretch.

    The band: the plan's, narrowed by the share of the final residuals' spread the calibration explains, with
    the uncertainty of the offset itself (the residuals taken as at most MAX_INDEPENDENT independent points, as
    neighbouring points of a curve move together) and BEYOND_SPREAD of the part taken whole added in quadrature.
    ``weight`` is the share of ``a`` the forecast takes (1 at the end).

    The earlier rule, the offset weighted by seen / (seen + 10%) whatever the sweep, made the forecast of the
    held-out loss worse on the package's own sweeps (1.45x the configuration's error after 25% of a run); this
    one is learnt per fit and did no harm there (benchmarks/RESULTS.md, "reforecast_nested.py").
    """
    from statistics import NormalDist

    from .laws.reforecast import END_BLEND, at_share, late_half

    m = np.log(np.asarray(expected, float))
    y = np.log(np.asarray(observed, float))
    ok = np.isfinite(m) & np.isfinite(y)
    r = (y - m)[ok]
    lf = math.log(final)
    up0, dn0 = math.log(band[1]) - lf, lf - math.log(band[0])
    if r.size == 0 or not math.isfinite(seen) or seen <= 0:
        return Forecast(final, band[0], band[1], 0.0, 0.0)
    seen = min(float(seen), 1.0)
    late = late_half(r)
    a_hat = float(late.mean())
    var_r = float(late.var(ddof=1)) if late.size > 1 else float(r.var()) if r.size > 1 else 0.0
    se_a = math.sqrt(var_r / min(late.size, MAX_INDEPENDENT))
    beta, explained, q = at_share(calibration, seen)
    inside = min(max(a_hat, -q), q)
    a_cal = beta * inside + (a_hat - inside)
    u = min(max((seen - (1.0 - END_BLEND)) / END_BLEND, 0.0), 1.0)  # the last stretch: the run's own level
    tail = r[-1:]
    if shares is not None:
        sh = np.asarray(shares, float)[ok]
        tail = r[sh >= sh[-1] - END_BLEND] if sh.size == r.size else tail
    r_end = float(tail.mean())
    se_end = math.sqrt(float(tail.var(ddof=1)) / min(tail.size, MAX_INDEPENDENT)) if tail.size > 1 else math.sqrt(var_r)
    a = (1.0 - u) * a_cal + u * r_end
    zq = NormalDist().inv_cdf(0.5 + level / 2)
    shrink = (1.0 - u) * math.sqrt(1.0 - explained)
    w_cal = a_cal / a_hat if a_hat else beta  # the share of the offset taken
    slope = beta if abs(a_hat) <= q else 1.0  # how the forecast moves with the offset: its noise's share
    h_a = zq * ((1.0 - u) * slope * se_a + u * se_end)
    h_x = BEYOND_SPREAD * (1.0 - u) * abs(a_hat - inside)
    up = math.sqrt((shrink * up0) ** 2 + h_a ** 2 + h_x ** 2)
    dn = math.sqrt((shrink * dn0) ** 2 + h_a ** 2 + h_x ** 2)
    return Forecast(math.exp(lf + a), math.exp(lf + a - dn), math.exp(lf + a + up), (1.0 - u) * w_cal + u, a_hat)


@dataclass
class Monitor:
    """Compares points against a plan's curve and band.

    A run is flagged ``drift`` after ``consecutive`` points in a row outside the band,
    ``diverged`` on a NaN/inf loss, ``spike`` when a point exceeds ``spike`` times the
    expected loss, and ``flat`` when, over the last ``flat_window`` of the planned
    tokens, it gained less than a quarter of the improvement the plan expected (and the
    shortfall exceeds three standard deviations of the moving average's batch noise).
    """

    plan: dict
    consecutive: int = 3
    spike: float = 1.5
    flat_window: float = 0.15
    smooth: float | None = None  # EMA span in steps; default 1% of the planned steps
    history: list = field(default_factory=list)
    n_out: int = 0
    last_step: int = -1
    notes: list = field(default_factory=list)

    def __post_init__(self):
        from .plan import validate_plan

        validate_plan(self.plan)
        self._diverged: Status | None = None  # the first non-finite loss; later finite points do not undo it
        c = self.plan["curve"]
        self._t = np.log(np.asarray(c["tokens"], float))
        self._mean, self._lo, self._hi = (np.log(np.asarray(c[k], float)) for k in ("loss", "lo", "hi"))
        span = self.smooth if self.smooth is not None else max(1.0, 0.01 * self.plan.get("steps", 100))
        self._alpha = 2.0 / (span + 1.0)
        self._ema = None
        self._ema_tokens = 0.0
        self._alpha_now = self._alpha
        self._noise2 = None
        c_loss, c_lo, c_hi = (float(c[k][-1]) for k in ("loss", "lo", "hi"))
        self._final = float(self.plan.get("final_loss") or c_loss)
        band = self.plan.get("final_interval") or [c_lo, c_hi]
        self._final_band = (float(min(band[0], self._final)), float(max(band[1], self._final)))
        # a plan from a fit without bootstrap resamples has a band of width 0: drift is not judged against it
        self._band = bool(self.plan.get("band", True)) and bool(np.any(self._hi > self._lo))
        if not self._band:
            self.notes.append("the plan has no band (its fit has no bootstrap resamples): drift is not judged, only "
                              "spikes, divergence, invalid values and flat stretches")
        if not self.plan.get("reforecast"):
            self.notes.append("the plan's fit holds no re-forecast calibration (a fit file from before it, fewer than 8 "
                              "runs, or curves without run and step columns): the final-loss forecast stays the plan's "
                              "until the run's last 5%")
        self._best = math.inf  # the lowest finite positive loss so far: a spike before the plan's curve is judged by it
        self._n_spike = 0  # spikes in a row
        self._seen = np.empty((256, 3))  # (tokens, expected, loss) of the finite points on the plan, first _n_seen rows
        self._n_seen = 0

    def forecast(self) -> Forecast:
        """The run's final loss re-forecast from the points seen so far (the plan's, before any)."""
        if not self._n_seen:
            return Forecast(self._final, *self._final_band, 0.0, 0.0)
        t, e, o = self._seen[:self._n_seen].T
        shares = t / float(self.plan["tokens"])
        return reforecast(e, o, self._final, self._final_band, float(shares[-1]), level=float(self.plan.get("level", 0.9)),
                          calibration=self.plan.get("reforecast"), shares=shares)

    def _with_forecast(self, st: "Status") -> "Status":
        f = self.forecast()
        st.forecast, st.forecast_lo, st.forecast_hi = f.final, f.lo, f.hi
        return st

    def expected(self, tokens: float) -> tuple[float, float, float] | None:
        lt = math.log(tokens)
        if lt < self._t[0] or lt > self._t[-1] * 1.0001:
            return None
        return tuple(float(np.exp(np.interp(lt, self._t, a))) for a in (self._mean, self._lo, self._hi))

    def update(self, step: int, loss: float, tokens: float | None = None) -> Status:
        step, loss, tokens = _point(step, loss, tokens)
        if step <= self.last_step:  # restarted from a checkpoint: forget what came after it
            self.notes.append(f"step went back from {self.last_step} to {step}: treated as a resumed run")
            self.history = [h for h in self.history if h.step < step]
            self.n_out = 0
            self._n_spike = 0
            self._ema = None
            self._noise2 = None
            back_to = float(tokens) if tokens is not None and np.isfinite(tokens) else float(step) * self.plan["tokens_per_step"]
            self._n_seen = int(np.searchsorted(self._seen[:self._n_seen, 0], back_to))
            self._best = min((h.loss for h in self.history if math.isfinite(h.loss) and h.loss > 0), default=math.inf)
            if self._diverged is not None and self._diverged.step >= step:
                self.notes.append(f"resumed at step {step}, before the divergence at step {self._diverged.step}")
                self._diverged = None
        self.last_step = step
        tokens = float(tokens) if tokens is not None and np.isfinite(tokens) else float(step) * self.plan["tokens_per_step"]
        if not np.isfinite(loss):
            st = Status(step, tokens, float(loss), None, None, None, None, "diverged", self.n_out,
                        f"loss is {loss} at step {step}: the run diverged")
            if self._diverged is None:
                self._diverged = st
            self.history.append(self._with_forecast(st))
            return st
        raw = float(loss)
        exp = self.expected(tokens) if tokens > 0 else None
        mean, lo, hi = exp if exp is not None else (None, None, None)
        if raw <= 0:  # no cross-entropy is: kept out of the moving average and the forecast
            self._n_spike = 0
            return self._alone(Status(step, tokens, raw, mean, lo, hi, None, "invalid", self.n_out,
                                      f"loss {raw:g} at step {step} is not positive, which no cross-entropy loss is "
                                      "(a logging bug? a reward or a log-likelihood logged as the loss?)"))
        best, self._best = self._best, min(self._best, raw)
        if exp is None:
            self._n_spike = 0
            state = "before-plan" if tokens > 0 and math.log(tokens) < self._t[0] else "after-plan"
            st = Status(step, tokens, raw, None, None, None, None, state, self.n_out, "outside the planned curve's range")
            if raw > self.spike * best:  # no plan to compare with here: the run's own lowest loss so far
                st.state, st.message = "spike", (f"loss {raw:.4f} is {raw / best:.2f}x the lowest so far ({best:.4f}), "
                                                 "outside the planned curve's range")
            return self._alone(st)
        spike = raw > self.spike * mean
        self._n_spike = self._n_spike + 1 if spike else 0
        if spike and self._n_spike < max(2, self.consecutive):  # a blip: judged alone, out of the average and forecast
            return self._alone(Status(step, tokens, raw, mean, lo, hi, float((raw - mean) / mean), "spike", self.n_out,
                                      f"loss {raw:.4f} is {raw / mean:.2f}x the expected {mean:.4f}"))
        # `consecutive` spikes in a row are the run's level, not a blip: they count in the average and the forecast
        # per-step losses are noisier than the band (batch noise): compare a short moving average of the
        # run with the same moving average of the plan, so the average's lag cancels
        # the span is in optimizer steps: a log written every k steps moves the average k steps' worth at each point
        # (counted per point, a span of 1% of the steps would average over the whole run of a sparse log); counted
        # in tokens, so a log whose step counts samples or micro-batches is not taken as k times sparser
        tps = float(self.plan["tokens_per_step"])
        gap = max(1, round((tokens - self._ema_tokens) / tps)) if self._ema is not None else 1
        self._ema_tokens = tokens
        self._alpha_now = 1.0 - (1.0 - self._alpha) ** gap
        if self._ema is None:
            self._ema, self._ema_exp = raw, mean
        else:
            # batch noise of the raw losses (relative to the trend), for judging a "flat" stretch
            r2 = ((raw - self._ema) - (mean - self._ema_exp)) ** 2
            self._noise2 = r2 if self._noise2 is None else self._noise2 + 0.05 * (r2 - self._noise2)
            self._ema += self._alpha_now * (raw - self._ema)
            self._ema_exp += self._alpha_now * (mean - self._ema_exp)
        loss = self._ema * mean / self._ema_exp
        dev = (loss - mean) / mean
        outside = self._band and not (lo <= loss <= hi)
        self.n_out = self.n_out + 1 if outside else 0
        state, msg = "ok", "within the band"
        if spike:
            state, msg = "spike", (f"loss {raw:.4f} is {raw / mean:.2f}x the expected {mean:.4f}, {self._n_spike} points "
                                   "in a row: the run's level, not a blip")
        elif self.n_out >= self.consecutive:
            side = "above" if loss > hi else "below"
            state, msg = "drift", f"{self.n_out} points in a row {side} the band (now {100 * dev:+.1f}% from expected)"
        else:
            flat = self._flat(tokens, loss)
            if flat:
                state, msg = "flat", flat
            elif outside:
                msg = f"outside the band ({100 * dev:+.1f}%), {self.n_out} in a row"
        st = Status(step, tokens, raw, mean, lo, hi, float(dev), state, self.n_out, msg, float(loss))
        self._stay_diverged(st)
        if self._n_seen == len(self._seen):
            self._seen = np.concatenate([self._seen, np.empty_like(self._seen)])
        self._seen[self._n_seen] = (tokens, mean, raw)
        self._n_seen += 1
        self.history.append(self._with_forecast(st))
        return st

    def _alone(self, st: Status) -> Status:
        """A point judged on its own (kept out of the moving average and the forecast), recorded and returned."""
        self._stay_diverged(st)
        self.history.append(self._with_forecast(st))
        return st

    def _stay_diverged(self, st: Status) -> None:
        """A run that logged a NaN/inf loss stays diverged until it resumes from a checkpoint before that step."""
        d = self._diverged
        if d is not None:
            st.state = "diverged"
            st.message = (f"the run diverged at step {d.step} (loss {d.loss}); finite losses since do not undo "
                          f"that (resume from a checkpoint before step {d.step})")

    @property
    def diverged_at(self) -> int | None:
        """The step of the first NaN/inf loss, or None (cleared by resuming from before it)."""
        return None if self._diverged is None else self._diverged.step

    @property
    def worst(self) -> Status | None:
        """The first point of the most serious state seen (diverged > spike > drift > flat), else the last point.

        Judge a whole log by this, not by the last point: a spike mid-run or a
        divergence followed by finite losses is still a run off track.
        """
        if not self.history:
            return None
        w = max(self.history, key=lambda h: _SEVERITY.get(h.state, 0))  # max keeps the first of equals
        return w if w.off_track else self.history[-1]  # nothing off track: the run as it stands now

    @property
    def ever_off_track(self) -> bool:
        return any(h.off_track for h in self.history)

    def _flat(self, tokens: float, loss: float) -> str | None:
        """Compare the mean over the start of the last ``flat_window`` with the mean over its last tenth."""
        window = self.flat_window * self.plan["tokens"]
        seen = [h for h in self.history if h.expected is not None and h.smoothed is not None]
        past = [h for h in seen if tokens - window <= h.tokens < tokens - 0.5 * window]
        recent = [h for h in seen if h.tokens >= tokens - 0.1 * window]
        if not past or tokens < 2 * window:
            return None
        exp_now = self.expected(tokens)[0]
        expected_gain = np.mean([h.expected for h in past]) - np.mean([h.expected for h in recent] + [exp_now])
        actual_gain = np.mean([h.smoothed for h in past]) - np.mean([h.smoothed for h in recent] + [loss])
        # averages of moving averages still carry batch noise: a shortfall within three standard
        # deviations of it (taken, conservatively, as that of two single moving-average values) is not
        # evidence of a flat run
        sd_ema = math.sqrt(self._noise2 or 0.0) * math.sqrt(self._alpha_now / (2.0 - self._alpha_now))
        significant = expected_gain - actual_gain > 3.0 * math.sqrt(2.0) * sd_ema
        if expected_gain > 0 and actual_gain < 0.25 * expected_gain and significant:
            return (f"loss flat: improved {actual_gain:+.4f} since step {past[0].step}, the plan expected "
                    f"{expected_gain:.4f}")
        return None


def follow(path, *, reader: str = "auto", columns=None, interval: float = 2.0, once: bool = False,
           timeout: float | None = None, run: str | None = None) -> Iterator[tuple[int, float, float]]:
    """Yield (step, loss, tokens) for every new point of a growing log, like ``tail -f``.

    Re-reads the log when it grows; a log that shrinks (truncated or rotated) is
    read again from the start, and points already seen are not repeated.
    """
    seen = 0
    size = -1
    start = time.time()
    while True:
        p = Path(path)
        cur = p.stat().st_size if p.exists() else 0
        if cur != size:
            if cur < size:
                seen = 0  # rotated or truncated
            size = cur
            df = read_log(path, reader, columns, run=run) if p.exists() else None
            n = 0 if df is None else len(df)
            if n and not once and df.attrs.get("unterminated_step") == float(df["step"].iloc[-1]):
                n -= 1  # its last line has no newline yet: the writer may be mid-number, so wait for it
            if n > seen:
                for r in df.iloc[seen:n].itertuples():
                    yield int(r.step), float(r.loss), float(r.tokens)
                seen = n
        if once or (timeout is not None and time.time() - start > timeout):
            return
        time.sleep(interval)


def trainer_callback(plan: dict, **monitor_kwargs):
    """A ``transformers.TrainerCallback`` that checks every logged loss against ``plan``.

    It keeps the statuses on ``callback.monitor.history`` (``callback.monitor.worst``
    is the most serious) and prints a line when the run goes off track; set
    ``stop_on_drift=True`` to stop training then. Steps are turned into tokens with the
    plan's tokens per step unless ``tokens_per_step`` is given.

    The Trainer's ``logging_nan_inf_filter`` (on by default) replaces a NaN/inf training
    loss with the average of earlier ones, so a diverged run would log finite losses:
    the callback turns it off when training begins (``keep_nan_inf_filter=True`` leaves
    it). It follows one loss: ``loss`` (or ``eval_loss`` when the run logs only that),
    never both, so an evaluation logged at the same step is not read as a restart.
    """
    from ._extras import require

    require("torch", "transformers")
    import transformers

    stop = monitor_kwargs.pop("stop_on_drift", False)
    tokens_per_step = monitor_kwargs.pop("tokens_per_step", None)  # default: the plan's
    keep_filter = monitor_kwargs.pop("keep_nan_inf_filter", False)

    class PlanCallback(transformers.TrainerCallback):
        def __init__(self):
            self.monitor = Monitor(plan, **monitor_kwargs)
            self.key = None  # the logged loss this callback follows, fixed at the first log that has one

        def on_train_begin(self, args, state, control, **kwargs):
            if getattr(args, "logging_nan_inf_filter", False) and not keep_filter:
                args.logging_nan_inf_filter = False
                print("[scaling] turned off logging_nan_inf_filter: it logs a NaN/inf loss as the average of "
                      "earlier ones, which would hide a diverged run")

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if self.key is None:
                self.key = next((k for k in ("loss", "eval_loss") if k in logs), None)
            if self.key is None or logs.get(self.key) is None:
                return
            try:
                loss = float(logs[self.key])
            except (TypeError, ValueError):  # a loss that cannot be read is not a healthy one
                self.monitor.notes.append(f"step {state.global_step}: {self.key} {logs[self.key]!r} is not a number")
                loss = float("nan")
            tokens = None if tokens_per_step is None else state.global_step * tokens_per_step
            st = self.monitor.update(state.global_step, loss, tokens)
            if st.off_track:
                print(f"[scaling] step {st.step}: {st.state}: {st.message}")
                if stop:
                    control.should_training_stop = True

        def on_train_end(self, args, state, control, **kwargs):
            w = self.monitor.worst
            if w is not None and w.off_track:
                print(f"[scaling] the run went off track: {w.state} at step {w.step}: {w.message}")

    return PlanCallback()
