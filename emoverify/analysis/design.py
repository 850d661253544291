"""The resampling unit of a dataset, and the bootstrap, jackknife and permutation draws that follow it.

The study's datasets are matched frames: row *i* of every class is frame *i*, the same sentence with another
emotion word. A frame's prompts share what the sentence puts into the residual stream (its frame effect), and
a class-mean difference cancels it. So the frame is the unit of resampling:

- bootstrap (`bootstrap_units`): draw frames with replacement, all classes of a drawn frame together; the
  caller applies the same draws to every model;
- permutation (`permute_labels`): shuffle the labels within each frame (a frame's prompts get a random
  permutation of the classes), so every shuffled class still holds every frame once;
- jackknife (`jackknife_units`, for BCa's acceleration): leave out one frame.

A dataset without frames (e.g. real-world prompts) declares the prompt as its unit (`Design.independent`):
each class is resampled on its own and labels are shuffled across the pool (`analysis.resampling` keeps that
older scheme's weights, for the calibration test's counter-example).
On frame-matched data that older scheme is wrong both ways: a per-class bootstrap draws different frames for
each class, so a draw's class-mean difference carries frame effects the estimate does not (the bootstrap of a
cross-model alignment sat at 0.25 around an estimate of 0.019), and a pooled shuffle builds null class means
from unequal frame mixes (a permutation median of 0.43 where within-frame shuffles give 0.026).
`tests/test_design_calibration.py` measures both failures on synthetic data with frame effects.

Every resample is expressed over the pooled prompts in class-major order (all of class 0, then class 1, ...),
as counts or averaging weights, so a statistic of class means is computed for every draw at once:
`weights @ acts` (`analysis.resampling.weighted_means` takes these weights unchanged).

Intervals on these draws and the rule that decides whether a figure is evidence live in `analysis.intervals`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from emoverify.errors import EmoverifyError

__all__ = ["Design", "Permutations", "Resamples", "bootstrap_units", "jackknife_units", "permute_labels"]


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

    def describe(self) -> dict[str, str]:
        """How each resampling treats this design, in words, for a claim's details."""
        if self.matched:
            return {"bootstrap": f"{self.n_units} frames drawn with replacement, every class of a drawn frame "
                                 "together, the same frames in every model",
                    "permutation": "labels shuffled within each frame (every shuffled class keeps one prompt of "
                                   "every frame), the same shuffles in every model",
                    "jackknife": "one frame left out at a time (BCa's acceleration)"}
        return {"bootstrap": "prompts drawn with replacement within each class, the same prompts in every model",
                "permutation": "labels shuffled across the pooled prompts, the same shuffles in every model",
                "jackknife": "one prompt left out at a time, each class a separate sample (BCa's acceleration)"}


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

    def pool_counts(self, classes: Sequence[str] | None = None) -> np.ndarray:
        """Times each prompt of the pool of `classes` (class-major, the design's order) is in each resample.

        Unlike `rows`, defined for every design and resample, a jackknife of an independent design included
        (its resamples differ in size). # [B, m]
        """
        names = list(self.design.classes) if classes is None else list(classes)
        ordered = sorted(names, key=self.design.class_index)
        if ordered != names:
            raise EmoverifyError(f"classes must follow the design's order {list(self.design.classes)}; "
                                 f"got {names}")
        return np.concatenate([self.counts[:, self._class_slice(c)] for c in names], axis=1)  # [B, m]

    def rows(self, classes: Sequence[str] | None = None) -> np.ndarray:
        """The rows of each resample in the pool of `classes` (class-major, in the design's order). # [B, m]

        With `classes` a subset (e.g. the three emotions), rows index the pool of those classes only:
        `np.concatenate([acts[c] for c in classes])[rows[b]]` is resample b.
        """
        names = list(self.design.classes) if classes is None else list(classes)
        return self._rows(self.pool_counts(names), ", ".join(names))

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
