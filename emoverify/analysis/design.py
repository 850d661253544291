"""The resampling unit of a dataset, and the bootstrap, permutation, intervals and null rule built on it.

The study's datasets are matched frames: row *i* of every class is frame *i*, the same sentence with another
emotion word. A frame's prompts share what the sentence puts into the residual stream (its frame effect), and
a class-mean difference cancels it. So the frame is the unit of resampling:

- bootstrap (`bootstrap_units`): draw frames with replacement, all classes of a drawn frame together; the
  caller applies the same draws to every model;
- permutation (`permute_labels`): shuffle the labels within each frame (a frame's prompts get a random
  permutation of the classes), so every shuffled class still holds every frame once;
- jackknife (`jackknife_units`, for BCa's acceleration): leave out one frame.

A dataset without frames (e.g. real-world prompts) declares the prompt as its unit (`Design.independent`):
each class is resampled on its own and labels are shuffled across the pool, as `emoverify.resampling` does.
On frame-matched data that older scheme is wrong both ways: a per-class bootstrap draws different frames for
each class, so a draw's class-mean difference carries frame effects the estimate does not (the bootstrap of a
cross-model alignment sat at 0.25 around an estimate of 0.019), and a pooled shuffle builds null class means
from unequal frame mixes (a permutation median of 0.43 where within-frame shuffles give 0.026).
`tests/test_design_calibration.py` measures both failures on synthetic data with frame effects.

Every resample is expressed over the pooled prompts in class-major order (all of class 0, then class 1, ...),
as counts or averaging weights, so a statistic of class means is computed for every draw at once:
`weights @ acts` (`emoverify.resampling.weighted_means` takes these weights unchanged).

Intervals (`reported_interval`) follow `scipy.stats.bootstrap`: BCa when jackknife values over the units
are given, the percentile interval otherwise. An interval that does not contain its estimate is still the
one reported, with the bootstrap's bias and a note saying so: switching to another interval would hide that
the statistic is biased.

The null rule (stated here and nowhere else; `diagnostic` applies it):
    A figure is diagnostic only if it lies outside the central 95% range of its null distribution, that is
    strictly below the 2.5th or strictly above the 97.5th percentile of the null draws. The null draws are
    whatever the claim's protocol makes them: label shuffles, random-init models of several seeds, Procrustes
    completions, or several of these pooled into one set. A figure inside the range is one that chance or an
    arbitrary choice produces, and it is not evidence for the claim whatever its size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.special import ndtr, ndtri

from emoverify.errors import EmoverifyError

__all__ = [
    "Alternative",
    "Design",
    "NullVerdict",
    "Permutations",
    "ReportedInterval",
    "Resamples",
    "bca_acceleration",
    "bca_bounds",
    "bootstrap_units",
    "diagnostic",
    "jackknife_units",
    "percentile_bounds",
    "percentile_in_null",
    "permutation_p_value",
    "permute_labels",
    "reported_interval",
]

Alternative = Literal["greater", "less", "two-sided"]


def _frozen(a: np.ndarray) -> np.ndarray:
    """`a`, read-only: draws are shared by every model a caller applies them to."""
    a.flags.writeable = False
    return a


def _first_mismatch(frame_ids_by_class: Mapping[str, Sequence[str]]) -> str | None:
    """Why these classes are not matched frames (the first problem found), or None if they are."""
    if not frame_ids_by_class:
        return "no classes"
    (first, frames), *others = ((c, tuple(ids)) for c, ids in frame_ids_by_class.items())
    if not frames:
        return f"class {first!r} has no rows"
    seen: dict[str, int] = {}
    for row, frame in enumerate(frames):
        if frame in seen:
            return f"frame {frame!r} appears twice in class {first!r} (rows {seen[frame]} and {row})"
        seen[frame] = row
    for name, ids in others:
        for row, (want, got) in enumerate(zip(frames, ids, strict=False)):
            if want != got:
                return f"class {name!r} row {row} is frame {got!r} where class {first!r} has {want!r}"
        if len(ids) != len(frames):
            longer, shorter = (name, first) if len(ids) > len(frames) else (first, name)
            extra = (ids if len(ids) > len(frames) else frames)[min(len(ids), len(frames))]
            return (f"class {name!r} has {len(ids)} rows and class {first!r} {len(frames)}: frame {extra!r} "
                    f"(row {min(len(ids), len(frames))} of {longer!r}) is missing from {shorter!r}")
    return None


@dataclass(frozen=True)
class Design:
    """Which prompts resample together: the unit of a dataset's bootstrap, permutation and jackknife.

    Build one with `matched_frames`, `from_frames` or `independent`.

    Example:
        >>> design = Design.matched_frames(70, ("gratitude", "anger", "apology", "neutral"))
        >>> design.unit, design.n_units, design.n_total
        ('frame', 70, 280)
    """

    classes: tuple[str, ...]  # class names, in the pooled (class-major) order of every resample
    unit_ids: tuple[tuple[str, ...], ...]  # per class, the unit of each of its rows
    matched: bool  # True: row i of every class is frame i; False: every prompt is its own unit

    def __post_init__(self) -> None:
        if len(self.classes) != len(self.unit_ids) or len(set(self.classes)) != len(self.classes):
            raise EmoverifyError(f"a design needs distinct class names, one id list each; got classes "
                                 f"{list(self.classes)} with {len(self.unit_ids)} id lists")
        if not self.classes:
            raise EmoverifyError("a design needs at least one class")
        if self.matched:
            problem = _first_mismatch(dict(zip(self.classes, self.unit_ids, strict=True)))
            if problem:
                raise EmoverifyError(f"not matched frames: {problem}")
            return
        for name, ids in zip(self.classes, self.unit_ids, strict=True):
            if not ids:
                raise EmoverifyError(f"class {name!r} has no rows")
            if len(set(ids)) != len(ids):
                raise EmoverifyError(f"class {name!r} lists a prompt id twice")

    @classmethod
    def matched_frames(cls, n_frames: int, classes: Sequence[str]) -> Design:
        """The study's design: `n_frames` frames, one prompt per class each, ids `f001`, `f002`, ..."""
        if n_frames < 1:
            raise EmoverifyError(f"a matched design needs at least one frame (got {n_frames})")
        frames = tuple(f"f{i:03d}" for i in range(1, n_frames + 1))
        return cls(classes=tuple(classes), unit_ids=(frames,) * len(classes), matched=True)

    @classmethod
    def from_frames(cls, frame_ids_by_class: Mapping[str, Sequence[str]]) -> Design:
        """Matched frames from each class's frame ids (e.g. a dataset's `frame` column), in row order.

        Raises:
            EmoverifyError: the classes do not list the same frames in the same order, once each; the
                message names the first mismatch.
        """
        problem = _first_mismatch(frame_ids_by_class)
        if problem:
            raise EmoverifyError(f"not matched frames: {problem}")
        return cls(classes=tuple(frame_ids_by_class),
                   unit_ids=tuple(tuple(ids) for ids in frame_ids_by_class.values()), matched=True)

    @classmethod
    def independent(cls, sizes: Mapping[str, int]) -> Design:
        """A dataset without frames: `sizes[c]` prompts of class c, each its own unit."""
        bad = {c: n for c, n in sizes.items() if n < 1}
        if bad:
            raise EmoverifyError(f"every class needs at least one prompt (got {bad})")
        return cls(classes=tuple(sizes), unit_ids=tuple(tuple(f"{c}-{i:03d}" for i in range(1, n + 1))
                                                        for c, n in sizes.items()), matched=False)

    @property
    def unit(self) -> str:
        """What one resampling unit is, in words: `frame` or `prompt`."""
        return "frame" if self.matched else "prompt"

    @property
    def sizes(self) -> tuple[int, ...]:
        """Prompts per class."""
        return tuple(len(ids) for ids in self.unit_ids)

    @property
    def n_total(self) -> int:
        """Prompts in the pool."""
        return sum(self.sizes)

    @property
    def n_units(self) -> int:
        """Resampling units: frames, or prompts for an independent design."""
        return self.sizes[0] if self.matched else self.n_total

    @property
    def offsets(self) -> tuple[int, ...]:
        """Where each class starts in the pool."""
        return tuple(int(o) for o in np.cumsum((0, *self.sizes[:-1])))

    @property
    def labels(self) -> np.ndarray:
        """Class index of each pooled prompt. # [n_total]"""
        return np.repeat(np.arange(len(self.classes)), self.sizes)

    def class_index(self, name: str) -> int:
        """Position of class `name` in the pool."""
        if name not in self.classes:
            raise EmoverifyError(f"unknown class {name!r}; the design's classes are {list(self.classes)}")
        return self.classes.index(name)

    def to_json(self) -> dict[str, object]:
        return {"unit": self.unit, "n_units": self.n_units, "classes": list(self.classes),
                "per_class": dict(zip(self.classes, self.sizes, strict=True))}


@dataclass(frozen=True, eq=False)
class Resamples:
    """Bootstrap or jackknife resamples of a design's units, as counts over the pooled prompts.

    The same object serves every model: its rows index prompts, and every model has the same prompts in the
    same order.
    """

    design: Design
    counts: np.ndarray  # [B, n_total] times each pooled prompt (class-major) is in each resample
    strata: np.ndarray = field(repr=False)  # [B] jackknife: class of the left-out prompt (0 for frames)

    @property
    def n_draws(self) -> int:
        return self.counts.shape[0]

    def _class_slice(self, name: str) -> slice:
        c = self.design.class_index(name)
        start = self.design.offsets[c]
        return slice(start, start + self.design.sizes[c])

    def class_weights(self, name: str) -> np.ndarray:
        """Averaging weights over class `name`'s own prompts: `weights @ acts[name]` is each draw's class mean.

        A drop-in for `resampling.bootstrap_weights(n, B, rng)` of that class. # [B, n_c]
        """
        counts = self.counts[:, self._class_slice(name)]  # [B, n_c]
        return counts / counts.sum(axis=1, keepdims=True)

    def weights(self) -> np.ndarray:
        """Averaging weights of every class over the pool. # [B, n_classes, n_total]"""
        w = np.zeros((self.n_draws, len(self.design.classes), self.design.n_total))  # [B, C, n_total]
        for c, name in enumerate(self.design.classes):
            where = self._class_slice(name)
            w[:, c, where] = self.class_weights(name)
        return w

    def class_rows(self, name: str) -> np.ndarray:
        """The rows of class `name` in each resample, ascending, within the class (0..n_c-1). # [B, m_c]"""
        return self._rows(self.counts[:, self._class_slice(name)], name)

    def rows(self, classes: Sequence[str] | None = None) -> np.ndarray:
        """The rows of each resample in the pool of `classes` (class-major, in the design's order). # [B, m]

        With `classes` a subset (e.g. the three emotions), rows index the pool of those classes only:
        `np.concatenate([acts[c] for c in classes])[rows[b]]` is resample b.
        """
        names = list(self.design.classes) if classes is None else list(classes)
        ordered = sorted(names, key=self.design.class_index)
        if ordered != names:
            raise EmoverifyError(f"classes must follow the design's order {list(self.design.classes)}; "
                                 f"got {names}")
        counts = np.concatenate([self.counts[:, self._class_slice(c)] for c in names], axis=1)  # [B, m_all]
        return self._rows(counts, ", ".join(names))

    @staticmethod
    def _rows(counts: np.ndarray, what: str) -> np.ndarray:
        sizes = counts.sum(axis=1)  # [B]
        if np.any(sizes != sizes[0]):
            raise EmoverifyError(f"resamples of {what} differ in size (a jackknife of an independent design); "
                                 "use the weights")
        index = np.tile(np.arange(counts.shape[1]), counts.shape[0])  # [B * m_all]
        return np.repeat(index, counts.ravel().astype(np.int64)).reshape(counts.shape[0], -1)


@dataclass(frozen=True, eq=False)
class Permutations:
    """Label shuffles of a design: within frames, or across the pool for an independent design."""

    design: Design
    labels: np.ndarray  # [P, n_total] class index each pooled prompt carries under each shuffle

    @property
    def n_draws(self) -> int:
        return self.labels.shape[0]

    def weights(self) -> np.ndarray:
        """weights[p, c, i] = 1/|c| if prompt i has class c under shuffle p, else 0. # [P, n_classes, n_total]

        The same form as `resampling.permutation_weights`.
        """
        one_hot = self.labels[:, None, :] == np.arange(len(self.design.classes))[None, :, None]  # [P, C, n_total]
        return one_hot / np.asarray(self.design.sizes, dtype=np.float64)[None, :, None]

    def class_rows(self, name: str) -> np.ndarray:
        """The pooled rows labelled `name` under each shuffle, ascending. # [P, n_c]"""
        c = self.design.class_index(name)
        return np.nonzero(self.labels == c)[1].reshape(self.n_draws, self.design.sizes[c])


def bootstrap_units(design: Design, n_draws: int, rng: np.random.Generator) -> Resamples:
    """Bootstrap resamples of the design's units: frames (all classes together), or prompts within each class.

    Args:
        design: the dataset's design.
        n_draws: resamples to draw.
        rng: the generator; the same seed gives the same resamples.

    Returns:
        Resamples whose `counts` row b says how often each pooled prompt is in draw b. # [n_draws, n_total]
    """
    if design.matched:
        n = design.n_units
        frames = rng.integers(0, n, size=(n_draws, n))  # [B, n] like scipy's resampling of one sample
        per_frame = _counts(frames, n)  # [B, n]
        counts = np.tile(per_frame, (1, len(design.classes)))  # [B, C * n]
    else:
        counts = np.concatenate([_counts(rng.integers(0, n, size=(n_draws, n)), n) for n in design.sizes],
                                axis=1)  # [B, n_total]
    return Resamples(design=design, counts=_frozen(counts), strata=_frozen(np.zeros(n_draws, dtype=np.int64)))


def jackknife_units(design: Design) -> Resamples:
    """Leave-one-unit-out resamples: one per frame, or one per prompt for an independent design.

    Pass the statistic's values on these (# [J, ...]) to `reported_interval` as `jackknife`, and `strata` too
    for an independent design (each class is then a separate sample, as in scipy's multi-sample BCa).
    """
    if design.n_units < 2 or min(design.sizes) < 2:
        raise EmoverifyError(f"a jackknife needs at least two {design.unit}s per class (got {design.sizes})")
    if design.matched:
        n = design.n_units
        counts = np.tile(1.0 - np.eye(n), (1, len(design.classes)))  # [n, C * n]
        strata = np.zeros(n, dtype=np.int64)
    else:
        counts = 1.0 - np.eye(design.n_total)  # [n_total, n_total]
        strata = design.labels
    return Resamples(design=design, counts=_frozen(counts), strata=_frozen(strata))


def permute_labels(design: Design, n_perm: int, rng: np.random.Generator) -> Permutations:
    """Label shuffles: each frame's prompts get a random permutation of the classes; else across the pool.

    For an independent design the shuffles equal `resampling.permutation_weights`'s for the same generator state.

    Args:
        design: the dataset's design.
        n_perm: shuffles to draw.
        rng: the generator.
    """
    if design.matched:
        n_classes, n = len(design.classes), design.n_units
        # per_frame[p, f, c]: the label that class c's prompt of frame f carries under shuffle p
        per_frame = rng.permuted(np.broadcast_to(np.arange(n_classes), (n_perm, n, n_classes)), axis=2)
        labels = np.swapaxes(per_frame, 1, 2).reshape(n_perm, n_classes * n)  # [P, n_total], class-major
    else:
        labels = rng.permuted(np.tile(design.labels, (n_perm, 1)), axis=1)  # [P, n_total]
    return Permutations(design=design, labels=_frozen(labels))


def _counts(rows: np.ndarray, n: int) -> np.ndarray:
    """How often each of `n` items appears in each draw. # [B, n] from the drawn rows # [B, m]"""
    offsets = np.arange(rows.shape[0])[:, None] * n
    return np.bincount((rows + offsets).ravel(), minlength=rows.shape[0] * n).reshape(rows.shape[0], n).astype(
        np.float64)


# --- intervals ------------------------------------------------------------------------------------------------

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
    lo, hi = (float(x) for x in percentile_bounds(pooled, level))
    percentile = float(percentile_in_null(np.asarray(value), pooled))
    verdict = value < lo or value > hi
    where = "below" if value < lo else "above" if value > hi else "inside"
    few = (f" (only {pooled.size} draws: the range is close to their extremes)"
           if pooled.size < math.ceil(2.0 / (1.0 - level)) else "")
    reason = (f"{value:.4g} lies {where} the central {level:.0%} range [{lo:.4g}, {hi:.4g}] of {pooled.size} null "
              f"draws{few}, at percentile {percentile:.1f}: "
              + ("diagnostic" if verdict else "not diagnostic, chance or an arbitrary choice gives it"))
    return NullVerdict(value=value, lo=lo, hi=hi, level=level, n_draws=int(pooled.size), percentile=percentile,
                       diagnostic=verdict, reason=reason)
