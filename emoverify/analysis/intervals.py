"""Intervals and null distributions over design-aware resamples (`analysis.design`), and the diagnostic rule.

Intervals (`reported_interval`) follow `scipy.stats.bootstrap`: BCa when jackknife values over the units
are given, the percentile interval otherwise. An interval that does not contain its estimate is still the
one reported, with the bootstrap's bias and a note saying so: switching to another interval would hide that
the statistic is biased.

The null rule (stated here and nowhere else; `diagnostic` applies it to one number, `null_reaches` to a claim's
expectation, and the claim harness's null-model control applies it through them):
    A figure is diagnostic only if it lies outside the central 95% range of its null distribution. The range
    of S null draws is empirical (`null_range`): from the 2.5th to the 97.5th percentile of the draws when
    2.5% of them is at least one draw (S >= 40), and from the smallest to the largest draw when it is not,
    since fewer than 40 draws cannot place a 2.5% tail. A figure on the edge is inside. The null draws are
    whatever the claim's protocol makes them: label shuffles, random-init models of several seeds, Procrustes
    completions, or several of these pooled into one set. A figure inside the range is one that chance or an
    arbitrary choice produces, and it is not evidence for the claim whatever its size.

    For a claim the figure is its expectation (a band, a sign, a bound) and the null draws are its
    computation run on random-init stand-ins of several seeds (the harness's null-model control). The figure
    lies inside the null range when the expectation holds on a draw inside that range, and a measured claim
    is then "not diagnostic". Below 40 seeds every draw is inside, so in practice: a claim is not diagnostic
    when its expectation holds on at least one null seed (with one seed, the single null model of before).
    Where the figure is a number or a list of numbers (`approx`), each number is also judged on its own with
    `diagnostic`, for the reader.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import ndtr, ndtri

from emoverify.errors import EmoverifyError

__all__ = ["Alternative", "NullVerdict", "ReportedInterval", "bca_acceleration", "bca_bounds", "diagnostic",
           "min_tail_draws", "null_range", "null_reaches", "percentile_bounds", "percentile_in_null",
           "permutation_p_value", "reported_interval"]

Alternative = Literal["greater", "less", "two-sided"]


@dataclass(frozen=True)
class ReportedInterval:
    """The interval to report for one statistic, with the evidence a reader needs to trust it."""

    lo: float
    hi: float
    level: float
    method: str  # "BCa" or "percentile"
    estimate: float
    bias: float  # median of the bootstrap draws minus the estimate
    contains_estimate: bool
    note: str  # empty when the interval is an ordinary one; otherwise what is unusual about it

    def covers(self, value: float) -> bool:
        return self.lo <= value <= self.hi

    def to_json(self) -> dict[str, object]:
        return {"lo": round(self.lo, 6), "hi": round(self.hi, 6), "level": self.level, "method": self.method,
                "estimate": round(self.estimate, 6), "bias": round(self.bias, 6),
                "contains_estimate": self.contains_estimate, "note": self.note}


def percentile_bounds(draws: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the first axis of `draws` (# [B, ...]): two arrays # [...]."""
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.asarray(draws, dtype=np.float64), [tail, 1.0 - tail], axis=0)
    return lo, hi


def bca_acceleration(jackknife: np.ndarray, strata: np.ndarray | None = None) -> np.ndarray:
    """BCa's acceleration from jackknife values, as scipy computes it (Efron & Tibshirani 14.15, 15.36).

    Args:
        jackknife: the statistic with one unit left out, one row per unit. # [J, ...]
        strata: for several independent samples, the sample of each left-out unit; None for one. # [J]

    Returns:
        a, 0 where the jackknife values do not vary. # [...]
    """
    values = np.asarray(jackknife, dtype=np.float64)
    strata = np.zeros(len(values), dtype=np.int64) if strata is None else np.asarray(strata)
    num = np.zeros(values.shape[1:])
    den = np.zeros(values.shape[1:])
    for s in np.unique(strata):
        v = values[strata == s]  # [n_s, ...]
        n = float(len(v))
        u = (n - 1.0) * (v.mean(axis=0) - v)
        num += np.sum(u**3, axis=0) / n**3
        den += np.sum(u**2, axis=0) / n**2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / (6.0 * np.where(den > 0, den, 1.0) ** 1.5), 0.0)


def bca_bounds(draws: np.ndarray, estimate: np.ndarray, jackknife: np.ndarray, level: float = 0.95,
               strata: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """BCa interval of `scipy.stats.bootstrap(..., method='BCa')` from precomputed draws, batched.

    Args:
        draws: the statistic on each bootstrap resample. # [B, ...]
        estimate: the statistic on the data. # [...]
        jackknife: the statistic with one unit left out. # [J, ...]
        level: confidence level.
        strata: see `bca_acceleration`.

    Returns:
        (lo, hi), NaN where BCa is undefined: every draw on one side of the estimate. # [...] each
    """
    draws = np.asarray(draws, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    below = (np.sum(draws < estimate, axis=0) + np.sum(draws <= estimate, axis=0)) / (2.0 * len(draws))  # [...]
    z0 = ndtri(below)
    a = bca_acceleration(jackknife, strata)
    z = ndtri((1.0 - level) / 2.0)
    with np.errstate(invalid="ignore"):
        alpha_lo = ndtr(z0 + (z0 + z) / (1.0 - a * (z0 + z)))
        alpha_hi = ndtr(z0 + (z0 - z) / (1.0 - a * (z0 - z)))
    ordered = np.sort(draws, axis=0)
    return _quantile_of_sorted(ordered, alpha_lo), _quantile_of_sorted(ordered, alpha_hi)


def _quantile_of_sorted(ordered: np.ndarray, q: np.ndarray) -> np.ndarray:
    """np.quantile's linear method with a level per element: ordered # [B, ...], q # [...] -> # [...]."""
    q = np.asarray(q, dtype=np.float64)
    ok = np.isfinite(q)
    pos = np.where(ok, q, 0.0) * (len(ordered) - 1)
    low = np.floor(pos).astype(np.int64)
    high = np.minimum(low + 1, len(ordered) - 1)
    lo_value = np.take_along_axis(ordered, low[None, ...], axis=0)[0]
    hi_value = np.take_along_axis(ordered, high[None, ...], axis=0)[0]
    return np.where(ok, lo_value + (pos - low) * (hi_value - lo_value), np.nan)


def reported_interval(draws: np.ndarray, estimate: float, jackknife: np.ndarray | None = None, *,
                      strata: np.ndarray | None = None, level: float = 0.95) -> ReportedInterval:
    """The interval to report for a scalar statistic: BCa with jackknife values over units, else percentile.

    The interval is reported as computed. When it does not contain the estimate, the bootstrap distribution
    sits off the estimate by more than its spread: the statistic is biased (noise inflates a norm or a cos^2,
    for instance) and the draws' bias, not a different interval, is what the reader needs; `note` says so.

    Args:
        draws: the statistic on each bootstrap resample (non-finite draws are left out, and counted). # [B]
        estimate: the statistic on the data.
        jackknife: the statistic on `jackknife_units(design)`'s resamples, for BCa. # [J]
        strata: `jackknife_units(design).strata`: the classes of an independent design are separate samples
            (for frames, all zero, the same as None).
        level: confidence level.

    Example:
        >>> draws = np.random.default_rng(0).normal(1.0, 0.1, 999)
        >>> reported_interval(draws, 1.0).method
        'percentile'
    """
    draws = np.asarray(draws, dtype=np.float64).ravel()
    finite = np.isfinite(draws)
    if not finite.any():
        raise EmoverifyError("no finite bootstrap draws: the statistic is undefined on every resample")
    notes = [f"{int((~finite).sum())} of {draws.size} draws were not finite and were left out"] \
        if not finite.all() else []
    draws = draws[finite]
    estimate = float(estimate)
    bias = float(np.median(draws) - estimate)
    method = "percentile"
    if jackknife is not None:
        lo, hi = (float(x) for x in bca_bounds(draws, np.asarray(estimate), np.asarray(jackknife, dtype=np.float64),
                                               level, strata))
        method = "BCa"
        if not (math.isfinite(lo) and math.isfinite(hi)):
            side = "above" if np.all(draws > estimate) else "below"
            notes.append(f"BCa is undefined: all {draws.size} draws lie {side} the estimate; the percentile "
                         "interval is reported")
            method = "percentile"
    if method == "percentile":
        lo, hi = (float(x) for x in percentile_bounds(draws, level))
    contains = lo <= estimate <= hi
    if not contains:
        side = "below" if estimate < lo else "above"
        notes.append(f"the estimate {estimate:.4g} lies {side} the {method} interval [{lo:.4g}, {hi:.4g}]: the "
                     f"bootstrap draws are shifted by {bias:+.4g} (median minus estimate), more than their spread "
                     "allows, so the statistic is biased; read the interval as the draws' spread, not as a "
                     "confidence interval for the true value")
    return ReportedInterval(lo=lo, hi=hi, level=level, method=method, estimate=estimate, bias=bias,
                            contains_estimate=contains, note="; ".join(notes))


# --- null distributions ---------------------------------------------------------------------------------------

def percentile_in_null(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Percentile (0-100) of `observed` (# [...]) among the null draws (# [P, ...]); ties count half."""
    observed = np.asarray(observed)
    null = np.asarray(null)
    return 100.0 * (np.mean(null < observed, axis=0) + 0.5 * np.mean(null == observed, axis=0))


def permutation_p_value(observed: np.ndarray, null: np.ndarray, alternative: Alternative = "greater",
                        ) -> np.ndarray:
    """Permutation p-value (1 + #null at least as extreme) / (1 + P), as `scipy.stats.permutation_test`.

    Null draws equal to `observed` up to rounding (a relative 100 machine epsilons) count as extreme, so a
    shuffle that reproduces the data's labels is not lost to floating-point order. Two-sided: twice the
    smaller one-sided p-value, at most 1.

    Args:
        observed: the statistic on the data. # [...]
        null: the statistic under each shuffle. # [P, ...]
        alternative: `greater` (observed larger than chance), `less`, or `two-sided`.

    Returns:
        # [...]
    """
    observed = np.asarray(observed, dtype=np.float64)
    null = np.asarray(null, dtype=np.float64)
    gamma = np.abs(observed) * np.finfo(np.float64).eps * 100
    greater = (1.0 + np.sum(null >= observed - gamma, axis=0)) / (1.0 + len(null))
    less = (1.0 + np.sum(null <= observed + gamma, axis=0)) / (1.0 + len(null))
    if alternative == "greater":
        return greater
    if alternative == "less":
        return less
    if alternative == "two-sided":
        return np.minimum(1.0, 2.0 * np.minimum(greater, less))
    raise EmoverifyError(f"alternative must be greater, less or two-sided (got {alternative!r})")


def min_tail_draws(level: float = 0.95) -> int:
    """The fewest null draws whose central `level` range leaves a draw in each tail: 40 for 95%."""
    return math.ceil(round(2.0 / (1.0 - level), 9))


def null_range(draws: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The central `level` range of null draws (# [S, ...]) by the module's rule: the percentile range from
    `min_tail_draws(level)` draws on, the smallest to the largest draw below that. Two arrays # [...].

    Example:
        >>> [float(x) for x in null_range(np.array([0.3, 0.1, 0.2]))]
        [0.1, 0.3]
    """
    draws = np.asarray(draws, dtype=np.float64)
    if len(draws) < min_tail_draws(level):
        return draws.min(axis=0), draws.max(axis=0)
    return percentile_bounds(draws, level)


def null_reaches(holds: Sequence[bool], values: Sequence[Any], level: float = 0.95) -> bool:
    """Whether a claim's expectation lies inside its null distribution, by the module's rule: whether it holds
    on a null draw inside the central range.

    Args:
        holds: per null draw (one per seed that measured), whether the claim's expectation holds on it.
        values: per null draw, its value. Numbers or equal-length lists of numbers are placed against the
            range element by element (a draw is inside when each of its numbers is); other values (booleans,
            text, ragged lists) cannot be, and every draw counts as inside, as below `min_tail_draws` anyway.
        level: the central range's mass.

    Example:
        >>> null_reaches([False, True, False, False, False], [0.2, 0.5, 0.3, 0.1, 0.25])
        True
    """
    holding = np.asarray([bool(h) for h in holds], dtype=bool)
    if len(holding) != len(values):
        raise EmoverifyError(f"{len(holding)} null verdicts for {len(values)} null values")
    if len(holding) < min_tail_draws(level):
        return bool(holding.any())
    draws = _numbers(values)  # [S, k] or None
    if draws is None:
        return bool(holding.any())
    lo, hi = null_range(draws, level)
    inside = np.all((draws >= lo) & (draws <= hi), axis=1)
    return bool(np.any(holding & inside))


def _numbers(values: Sequence[Any]) -> np.ndarray | None:
    """Values that are numbers or equal-length lists of numbers as # [S, k]; None for anything else."""
    rows = [list(v) if isinstance(v, (list, tuple)) else [v] for v in values]
    numbers = all(isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)
                  for row in rows for x in row)
    if len({len(row) for row in rows}) != 1 or not numbers:
        return None
    return np.asarray(rows, dtype=np.float64)


@dataclass(frozen=True)
class NullVerdict:
    """Whether a figure is diagnostic under the module's null rule, and why."""

    value: float
    lo: float  # the central range of the null draws
    hi: float
    level: float
    n_draws: int
    percentile: float  # of the value among the null draws, 0-100
    diagnostic: bool
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"value": round(self.value, 6), "null_range": [round(self.lo, 6), round(self.hi, 6)],
                "level": self.level, "n_null_draws": self.n_draws, "percentile": round(self.percentile, 2),
                "diagnostic": self.diagnostic, "reason": self.reason}


def diagnostic(paper_value: float, null_draws: np.ndarray | Sequence[np.ndarray], level: float = 0.95,
               ) -> NullVerdict:
    """Apply the null rule of the module docstring to one figure.

    Args:
        paper_value: the figure (the paper's, or ours measured the same way).
        null_draws: its null draws; a sequence of arrays (seeds, completions, shuffles) is pooled.
        level: the central range's mass; 0.95 is the rule, a claim may state a stricter one.

    Example:
        >>> diagnostic(0.9, np.linspace(0.0, 0.5, 101)).diagnostic
        True
    """
    parts = [null_draws] if isinstance(null_draws, np.ndarray) else list(null_draws)
    pooled = np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts]) if parts else np.empty(0)
    pooled = pooled[np.isfinite(pooled)]
    if pooled.size == 0:
        raise EmoverifyError("no finite null draws to judge the figure against")
    value = float(paper_value)
    lo, hi = (float(x) for x in null_range(pooled, level))
    percentile = float(percentile_in_null(np.asarray(value), pooled))
    verdict = value < lo or value > hi
    where = "below" if value < lo else "above" if value > hi else "inside"
    few = (f" (only {pooled.size} draws: fewer than {min_tail_draws(level)} place no tail, the range spans them all)"
           if pooled.size < min_tail_draws(level) else "")
    reason = (f"{value:.4g} lies {where} the central {level:.0%} range [{lo:.4g}, {hi:.4g}] of {pooled.size} null "
              f"draws{few}, at percentile {percentile:.1f}: "
              + ("diagnostic" if verdict else "not diagnostic, chance or an arbitrary choice gives it"))
    return NullVerdict(value=value, lo=lo, hi=hi, level=level, n_draws=int(pooled.size), percentile=percentile,
                       diagnostic=verdict, reason=reason)
