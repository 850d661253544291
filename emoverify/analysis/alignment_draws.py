"""The resampling design of the neutral-space alignment (SUB-2, SUB-3) and its refits in Gram space.

Every random draw of the analysis is made by `draw_alignment`, from one generator in one fixed order,
before any work runs on threads: the same seed gives the same figures whatever the number of threads. The
bootstrap, jackknife and label permutations follow the dataset's design (`analysis.design`): frames drawn
with every class of a frame together, labels shuffled within frames, the same draws in every model.
The refitted controls (label permutations, the refit bootstrap, shuffled pairings) fit a map per draw on
the models' pooled prompts, seen through their Gram matrices (`PooledPrompts`, `refitted_mean_cos2`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from emoverify.analysis.design import Design, Resamples, bootstrap_units, jackknife_units, permute_labels
from emoverify.analysis.gram import gram_fit, gram_mapped_cos2
from emoverify.analysis.threads import thread_map

__all__ = ["AlignmentDraws", "PooledPrompts", "draw_alignment", "forward_pairs", "ordered_pairs",
           "refitted_mean_cos2"]

Pair = tuple[int, int]  # (source model, target model): positions in the input


def forward_pairs(n_models: int) -> list[Pair]:
    """The pairs in the paper's order: (0, 1), (0, 2), (1, 2), ..."""
    return list(combinations(range(n_models), 2))


def ordered_pairs(n_models: int) -> list[Pair]:
    """Every (source, target) pair, reverse directions included."""
    return [(i, j) for i in range(n_models) for j in range(n_models) if i != j]


@dataclass(frozen=True)
class AlignmentDraws:
    """Every random choice of the analysis, the same in every model (they saw the same prompts).

    Attributes:
        fit_half: neutral prompts the held-out map is fitted on, ascending. # [n // 2]
        test_half: the other neutral prompts, ascending. # [n - n // 2]
        permutation: class weights over the pooled prompts under the design's label shuffles. # [P, C, N]
        bootstrap: the design's bootstrap resamples (`class_weights`, `class_rows` per group). # [B, N]
        jackknife: its leave-one-unit-out resamples, for BCa. # [J, N]
        pairing_shuffles: ordered pair -> orders of B's neutral prompts paired to A's. # [S, n]
        completion_seeds: ordered pair -> seed of its Procrustes completions.
    """

    fit_half: np.ndarray
    test_half: np.ndarray
    permutation: np.ndarray
    bootstrap: Resamples
    jackknife: Resamples
    pairing_shuffles: dict[Pair, np.ndarray]
    completion_seeds: dict[Pair, int]


def draw_alignment(design: Design, reference: str, n_models: int, seed: int, n_bootstrap: int,
                   n_permutations: int, n_pairing_shuffles: int) -> AlignmentDraws:
    """All the draws, in the order that fixes them: held-out split, permutations, bootstrap, pairings, seeds.

    Args:
        design: the dataset's design; its classes are the groups in the pooled order (the reference included).
        reference: the neutral group, on which the maps are fitted.
    """
    rng = np.random.default_rng(seed)
    n = design.sizes[design.class_index(reference)]
    half = rng.permutation(n)
    permutation = permute_labels(design, n_permutations, rng).weights()  # [P, C, N]
    bootstrap = bootstrap_units(design, n_bootstrap, rng)
    ordered = ordered_pairs(n_models)
    shuffles = {pair: np.stack([rng.permutation(n) for _ in range(n_pairing_shuffles)]) for pair in ordered}
    seeds = dict(zip(ordered, rng.integers(0, 2**63, size=len(ordered)).tolist(), strict=True))
    return AlignmentDraws(fit_half=np.sort(half[: n // 2]), test_half=np.sort(half[n // 2:]),
                          permutation=permutation, bootstrap=bootstrap, jackknife=jackknife_units(design),
                          pairing_shuffles=shuffles, completion_seeds=seeds)


@dataclass(frozen=True)
class PooledPrompts:
    """Every model's prompts, groups concatenated in order and centred, seen through their Gram matrices.

    Every direction the refits map is a contrast (weights summing to zero), so centring changes no cosine;
    it keeps the residual stream's large common offset out of the Gram entries, for precision.

    Attributes:
        grams: each model's X X^T of the pooled, centred prompts. # [N, N]
        offsets: group -> its first row in the pooled order.
        sizes: group -> its number of prompts.
        reference: the neutral group.
    """

    grams: tuple[np.ndarray, ...]
    offsets: dict[str, int]
    sizes: dict[str, int]
    reference: str

    @classmethod
    def of(cls, groups: Sequence[Mapping[str, np.ndarray]], reference: str) -> PooledPrompts:
        """From each model's group -> residuals (# [n_e, d]), the same groups in the same order."""
        pooled = [np.concatenate(list(g.values())) for g in groups]  # [N, d]
        pooled = [x - x.mean(axis=0) for x in pooled]
        sizes = {e: len(x) for e, x in groups[0].items()}
        offsets = dict(zip(sizes, np.cumsum([0, *list(sizes.values())[:-1]]).tolist(), strict=True))
        return cls(grams=tuple(x @ x.T for x in pooled), offsets=offsets, sizes=sizes, reference=reference)

    @property
    def n_total(self) -> int:
        return int(sum(self.sizes.values()))

    @property
    def neutral_rows(self) -> np.ndarray:
        """The reference group's rows in the pooled order. # [n]"""
        return self.offsets[self.reference] + np.arange(self.sizes[self.reference])

    def weights(self, per_group: Mapping[str, np.ndarray]) -> np.ndarray:
        """Weights over the pooled prompts from weights over each group's prompts. # [..., N]"""
        lead = next(iter(per_group.values())).shape[:-1]
        w = np.zeros((*lead, self.n_total))
        for e, gw in per_group.items():
            w[..., self.offsets[e]:self.offsets[e] + gw.shape[-1]] += gw
        return w

    def vector_weights(self, emotions: Sequence[str]) -> np.ndarray:
        """neutral_diff vectors as weights: 1/n_e on the class's prompts, -1/n on the neutral ones. # [k, N]"""
        n = self.sizes[self.reference]
        return np.stack([self.weights({e: np.full(self.sizes[e], 1.0 / self.sizes[e]),
                                       self.reference: np.full(n, -1.0 / n)}) for e in emotions])


def refitted_mean_cos2(grams: Sequence[np.ndarray], rows: np.ndarray, dirs: np.ndarray, pairs: Sequence[Pair],
                       chunk: int) -> dict[Pair, np.ndarray]:
    """Mean per-vector cos^2 after a map refitted on each draw's rows, for each (source, target) pair.

    Draw b fits on the prompts `rows[b]` (the same in both models) and maps the directions `dirs[b]`
    (weights over the pooled prompts, the same in both models). Chunks of draws run on CPU threads; a
    source's fits are shared by its targets.

    Args:
        grams: each model's Gram matrix of the pooled, centred prompts. # [N, N]
        rows: # [R, n]
        dirs: # [R, k, N]
        pairs: (source, target) model indices.
        chunk: draws per batched solve and thread task.

    Returns:
        (source, target) -> # [R]
    """
    slices = [slice(start, min(start + chunk, len(rows))) for start in range(0, len(rows), chunk)]
    tasks = [(i, s) for i in sorted({i for i, _ in pairs}) for s in slices]

    def run(task: tuple[int, slice]) -> dict[int, np.ndarray]:
        i, s = task
        fit = gram_fit(grams[i], rows[s])
        return {j: gram_mapped_cos2(grams[i], grams[j], rows[s], rows[s], dirs[s], dirs[s], fit=fit).mean(axis=1)
                for source, j in pairs if source == i}

    parts: dict[Pair, list[np.ndarray]] = {}
    for (i, _), by_target in zip(tasks, thread_map(run, tasks), strict=True):
        for j, values in by_target.items():
            parts.setdefault((i, j), []).append(values)
    return {pair: np.concatenate(values) for pair, values in parts.items()}
