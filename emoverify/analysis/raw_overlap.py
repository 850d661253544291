"""Raw subspace overlap (SUB-1): how much models' emotion subspaces overlap, each in its own coordinates.

A model's emotion subspace is the top-k principal directions of its emotion prompts (every class but the
reference, pooled and centred). For every pair of models: the mean cos^2 of the principal angles between
the two spans at the chosen layer, at every layer, and for every k of a sweep (chance is k/d); a bootstrap
and a jackknife over the design's units (`analysis.design`: frames, the same frames in every model); and the
span of the emotion vectors (k = 3) with its permutation null (labels shuffled within frames, the same
shuffles in every model). Shuffling labels does not change a PCA of the pooled emotion prompts, so the
permutation applies to the label-dependent span only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from emoverify.analysis.design import Design, bootstrap_units, jackknife_units, permute_labels
from emoverify.analysis.gram import resampled_pca_overlaps
from emoverify.analysis.resampling import weighted_means
from emoverify.analysis.subspace import SubspaceOverlap, orthonormal_basis, pca_bases, subspace_overlap
from emoverify.analysis.threads import thread_map
from emoverify.analysis.vectors import class_means, emotion_vectors
from emoverify.errors import EmoverifyError

__all__ = ["RAW_OVERLAP_VERSION", "RESULT_TYPES", "PairOverlap", "RawOverlap", "raw_subspace_overlap"]

# Bumped whenever the analysis, its draws or its result types change: part of a stored result's key.
# 2: frames resampled (was: pooled prompts), labels shuffled within frames, a jackknife over frames kept.
RAW_OVERLAP_VERSION = 2


@dataclass(frozen=True)
class PairOverlap:
    """Raw overlap of models `a` and `b` (positions in the input).

    Attributes:
        pca: the top-k PCA spans at the chosen layer.
        bootstrap: `pca`'s mean cos^2 on bootstrap resamples of the design's units. # [B]
        jackknife: `pca`'s mean cos^2 with one unit left out, for BCa. # [J]
        k_sweep: mean cos^2 of the top-k' spans for each k' of `RawOverlap.k_sweep`. # [n_k]
        by_layer: mean cos^2 of the top-k spans at every layer. # [n_layers + 1]
        span: the spans of the emotion vectors (k = 3).
        span_null: `span`'s mean cos^2 with the labels shuffled. # [P]
    """

    a: int
    b: int
    pca: SubspaceOverlap
    bootstrap: np.ndarray
    jackknife: np.ndarray
    k_sweep: np.ndarray
    by_layer: np.ndarray
    span: SubspaceOverlap
    span_null: np.ndarray


@dataclass(frozen=True)
class RawOverlap:
    """Every pair's `PairOverlap`, in the order (0, 1), (0, 2), (1, 2), ..., with what it is of."""

    k: int
    k_sweep: tuple[int, ...]  # the sweep's dimensions below the number of prompts
    d: int
    n_prompts: int  # emotion prompts pooled
    layer: int
    unit: str  # the design's resampling unit: frame, or prompt for a design without frames
    jackknife_strata: np.ndarray  # class of each jackknife's left-out unit (all 0 for frames) # [J]
    pairs: tuple[PairOverlap, ...]


RESULT_TYPES = (RawOverlap, PairOverlap, SubspaceOverlap)


def raw_subspace_overlap(residuals: Sequence[Mapping[str, np.ndarray]], design: Design, reference: str, layer: int,
                         k: int, k_sweep: Sequence[int], seed: int, n_bootstrap: int, n_permutations: int,
                         ) -> RawOverlap:
    """SUB-1 for every pair of models.

    Args:
        residuals: per model, group -> residuals at every layer (# [n_e, n_layers + 1, d]); the same groups,
            prompts and order in every model, `reference` (neutral) among them.
        design: the dataset's resampling design, its classes the groups in order.
        reference: the group left out of the emotion prompts, from which the vectors are measured.
        layer: the layer the figure is of (an index on the layer axis).
        k: the subspace dimension.
        k_sweep: further dimensions to report (those not below the number of prompts are dropped).
        seed: seeds the bootstrap and the permutations.
    """
    groups = [{e: x[:, layer] for e, x in r.items()} for r in residuals]  # [n_e, d] each
    _check_design(design, groups)
    emotions = [e for e in groups[0] if e != reference]
    rng = np.random.default_rng(seed)
    prompts = [np.concatenate([g[e] for e in emotions]) for g in groups]  # [m, d] each, the same prompts
    m = prompts[0].shape[0]
    n_layers = next(iter(residuals[0].values())).shape[1]
    k_max = max(kk for kk in (*k_sweep, k) if kk < m)
    # One decomposition per model and layer gives every k of the sweep (the top directions are nested).
    tops = thread_map(lambda r: pca_bases(np.swapaxes(np.concatenate([r[e] for e in emotions]), 0, 1), k_max),
                      residuals)  # [n_layers + 1, d, k_max] per model, largest first
    spans = [orthonormal_basis(np.stack(list(emotion_vectors(class_means(g), "neutral_diff", reference).values())))
             for g in groups]  # [d, 3] each
    # Bootstrap and jackknife over the design's units (frames): the same resamples in every model.
    boot = resampled_pca_overlaps(prompts, bootstrap_units(design, n_bootstrap, rng).pool_counts(emotions), k)
    jackknife = jackknife_units(design)
    jack = resampled_pca_overlaps(prompts, jackknife.pool_counts(emotions), k)  # (i, j) -> [J]
    perm_spans = _permuted_spans(groups, design, reference, n_permutations, rng)
    sweep = tuple(kk for kk in k_sweep if kk < m)
    pairs = []
    for i, j in combinations(range(len(residuals)), 2):
        def overlap(at: int, kk: int, i: int = i, j: int = j) -> SubspaceOverlap:
            return subspace_overlap(tops[i][at][:, :kk], tops[j][at][:, :kk], kk)

        pairs.append(PairOverlap(
            a=i, b=j, pca=overlap(layer, k), bootstrap=boot[(i, j)], jackknife=jack[(i, j)],
            k_sweep=np.array([overlap(layer, kk).mean_cos2 for kk in sweep]),
            by_layer=np.array([overlap(at, k).mean_cos2 for at in range(n_layers)]),
            span=subspace_overlap(spans[i], spans[j], 3),
            span_null=np.sum((np.swapaxes(perm_spans[i], 1, 2) @ perm_spans[j]) ** 2, axis=(1, 2)) / 3))
    return RawOverlap(k=k, k_sweep=sweep, d=int(groups[0][reference].shape[1]), n_prompts=m, layer=layer,
                      unit=design.unit, jackknife_strata=np.asarray(jackknife.strata), pairs=tuple(pairs))


def _check_design(design: Design, groups: Sequence[Mapping[str, np.ndarray]]) -> None:
    """The design must describe the groups: the same classes, in order, of the same sizes."""
    sizes = tuple(len(x) for x in groups[0].values())
    if design.classes != tuple(groups[0]) or design.sizes != sizes:
        raise EmoverifyError(f"the design's classes {dict(zip(design.classes, design.sizes, strict=True))} are "
                             f"not the groups {dict(zip(groups[0], sizes, strict=True))}")


def _permuted_spans(groups: Sequence[Mapping[str, np.ndarray]], design: Design, reference: str,
                    n_permutations: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Each model's emotion-vector span under the design's label shuffles, the same in every model. # [P, d, k]"""
    perm_w = permute_labels(design, n_permutations, rng).weights()  # [P, C, n]
    out = []
    for g in groups:
        means = weighted_means(perm_w, np.concatenate(list(g.values())))  # [P, C, d]
        ref = list(g).index(reference)
        diffs = np.delete(means, ref, axis=1) - means[:, ref:ref + 1]  # [P, k, d]
        out.append(np.linalg.qr(np.swapaxes(diffs, 1, 2))[0])  # [P, d, k]
    return out
