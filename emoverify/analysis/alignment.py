"""Neutral-space alignment (SUB-2) and Procrustes (SUB-3): maps fitted on neutral prompts, and their controls.

For every ordered pair of models (A, B), on the same prompts in both:

- maps from A's to B's centred neutral residuals: minimum-norm least squares, ridge with the penalty
  chosen by k-fold cross-validation, and orthogonal Procrustes (scipy's solution, the part of it the data
  determine, and the range of solutions that differ only where the data are silent);
- measure: per-emotion cos^2(v_A W, v_B), v = class mean - neutral mean, before (raw coordinates) and after;
  the overlap of the spans (k = 3) and of the top-k PCA subspaces mapped through W;
- controls: held-out R^2 on half of the neutral prompts, vectors of prompts no map saw, B's prompts paired
  to the wrong A prompts, emotion labels shuffled within frames (forward pairs only), the map refitted on
  resampled frames, and a bootstrap and jackknife of the frames with the maps fixed (fitted on every neutral
  prompt): the interval. Every resample follows the dataset's design (`analysis.design`).

`neutral_space_alignment` returns a `NeutralAlignment`: frozen dataclasses of the figures and of every
draw (so a summary can be recomputed from a stored result); `pair_report` turns one pair into the JSON
the claims report. Every random draw is made before the pairs run on threads (`alignment_draws`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from emoverify.analysis.alignment_draws import (
    AlignmentDraws,
    Pair,
    PooledPrompts,
    draw_alignment,
    forward_pairs,
    ordered_pairs,
    refitted_mean_cos2,
)
from emoverify.analysis.design import Design
from emoverify.analysis.gram import gram_mapped_cos2
from emoverify.analysis.procrustes import batched_procrustes_directions, procrustes_completions
from emoverify.analysis.resampling import weighted_means
from emoverify.analysis.subspace import (
    LinearMap,
    RidgeSelection,
    SubspaceOverlap,
    default_alpha_grid,
    fit_linear_map,
    fit_procrustes,
    orthonormal_basis,
    pca_basis,
    r2_score,
    reverse_procrustes,
    select_ridge_alpha,
    subspace_overlap,
    vector_cos2,
)
from emoverify.analysis.threads import thread_map
from emoverify.analysis.vectors import class_means, emotion_vectors
from emoverify.errors import EmoverifyError

__all__ = [
    "ALIGNMENT_VERSION",
    "RESULT_TYPES",
    "AlignmentNulls",
    "AlignmentSettings",
    "BootstrapDraws",
    "HeldOut",
    "MappedCos2",
    "NeutralAlignment",
    "PairAlignment",
    "SpanOverlaps",
    "UnseenPrompts",
    "neutral_diff_vectors",
    "neutral_space_alignment",
]

# Bumped whenever the analysis, its draws or its result types change: part of a stored result's key.
# 2: frames resampled with the reference mean (was: emotion prompts per class), labels shuffled within frames,
# a jackknife over frames kept for BCa.
ALIGNMENT_VERSION = 2


@dataclass(frozen=True)
class AlignmentSettings:
    """How much of each control to draw; every field changes the figures, so all go into a stored key."""

    n_bootstrap: int  # resamples of the design's units (and the refit bootstrap's pool)
    n_permutations: int  # label shuffles (within frames)
    n_refit: int  # refit-bootstrap draws: the first n_refit bootstrap draws, the map refitted on each draw
    n_pairing_shuffles: int  # refits with B's neutral prompts paired to the wrong A prompts
    n_completions: int  # Procrustes solutions that differ only where the data leave R free
    ridge_folds: int = 5  # cross-validation folds for the ridge penalty
    pca_k: int = 100  # dimension of the PCA subspaces mapped through W
    chunk: int = 50  # draws per batched Gram-space solve and thread task (fixes the padding, so the bits)


@dataclass(frozen=True)
class MappedCos2:
    """Per-emotion cos^2(v_A W, v_B) under each map, and in raw coordinates. # [n_emotions] each"""

    before: np.ndarray
    lstsq: np.ndarray
    ridge: np.ndarray
    procrustes: np.ndarray  # scipy's solution
    procrustes_determined: np.ndarray  # the part of R every Procrustes solution shares


@dataclass(frozen=True)
class UnseenPrompts:
    """Emotion vectors of prompts no map was fitted on (those only `extended` has): mean cos^2."""

    n_per_class: int
    before: float
    after_full_fit: float  # the map fitted on every neutral prompt
    after_half_fit: float  # the map fitted on `fit_half`


@dataclass(frozen=True)
class HeldOut:
    """R^2 of the map fitted on half of the neutral prompts, on that half and on the other."""

    r2_fit_half: float
    r2_held_out_half: float
    r2_held_out_half_ridge: float  # ridge with the full set's cross-validated penalty
    unseen: UnseenPrompts | None  # None where no held-out prompts were given


@dataclass(frozen=True)
class SpanOverlaps:
    """Overlaps of the emotion-vector spans (k = 3) and of the top-k PCA subspaces, before and after lstsq."""

    k3_before: SubspaceOverlap
    k3_after: SubspaceOverlap
    pca_before: SubspaceOverlap
    pca_after: SubspaceOverlap


@dataclass(frozen=True)
class AlignmentNulls:
    """What the fitted maps give where they should find nothing, and where the data leave R free."""

    pairing_shuffled: np.ndarray  # mean cos^2 after maps fitted on mispaired neutral prompts # [S]
    permutation: np.ndarray | None  # after, emotion labels shuffled; forward pairs only # [P]
    refit: np.ndarray  # after, the map refitted on the resampled frames' neutral prompts # [R]
    completion_gain: np.ndarray  # Procrustes gain under completions drawn where the data are silent # [C]


@dataclass(frozen=True)
class BootstrapDraws:
    """Mean cos^2 over resampled units (frames), the maps fixed: bootstrap # [B] and jackknife # [J] each."""

    before: np.ndarray
    after: np.ndarray  # after lstsq
    gain: np.ndarray  # after Procrustes minus before
    before_jackknife: np.ndarray
    after_jackknife: np.ndarray
    gain_jackknife: np.ndarray


@dataclass(frozen=True)
class PairAlignment:
    """The maps from model `source` to model `target` and every control of them."""

    source: int
    target: int
    cos2: MappedCos2
    ridge: RidgeSelection
    neutral_variance: float  # total variance of the source's centred neutral residuals: the penalty's scale
    spans: SpanOverlaps
    held_out: HeldOut
    nulls: AlignmentNulls
    bootstrap: BootstrapDraws


@dataclass(frozen=True)
class NeutralAlignment:
    """Every ordered pair's `PairAlignment`, with what the figures are of."""

    emotions: tuple[str, ...]
    n_fit: int  # neutral prompts the maps are fitted on
    d: int
    unit: str  # the design's resampling unit: frame, or prompt for a design without frames
    jackknife_strata: np.ndarray  # class of each jackknife's left-out unit (all 0 for frames) # [J]
    pairs: tuple[PairAlignment, ...]  # in `ordered_pairs` order

    def pair(self, source: int, target: int) -> PairAlignment:
        return next(p for p in self.pairs if (p.source, p.target) == (source, target))


RESULT_TYPES = (NeutralAlignment, PairAlignment, MappedCos2, RidgeSelection, SubspaceOverlap, SpanOverlaps,
                HeldOut, UnseenPrompts, AlignmentNulls, BootstrapDraws)


def neutral_diff_vectors(groups: Mapping[str, np.ndarray], reference: str) -> np.ndarray:
    """Class mean minus the reference mean, for each group but the reference, in order. # [n_emotions, d]"""
    return np.stack(list(emotion_vectors(class_means(groups), "neutral_diff", reference).values()))


@dataclass(frozen=True)
class _Shared:
    """What every pair reads: computed once per model (or per unordered pair), before the pairs run."""

    groups: Sequence[Mapping[str, np.ndarray]]
    reference: str
    seed: int
    settings: AlignmentSettings
    draws: AlignmentDraws
    pooled: PooledPrompts
    vector_w: np.ndarray  # neutral_diff vectors as weights over the pooled prompts # [k, N]
    vectors: list[np.ndarray]  # neutral_diff vectors per model # [k, d]
    pca: list[np.ndarray]  # top-k PCA basis of the emotion prompts per model # [d, pca_k]
    resample_w: dict[str, dict[str, np.ndarray]]  # bootstrap|jackknife -> group -> class weights # [B|J, n_e]
    resampled_vectors: dict[str, list[np.ndarray]]  # bootstrap|jackknife -> per model # [B|J, k, d]
    procrustes: dict[Pair, LinearMap]
    permuted: dict[Pair, np.ndarray]  # label-permutation null, forward pairs # [P]
    refit: dict[Pair, np.ndarray]  # refit bootstrap # [R]
    held_out: Sequence[Mapping[str, np.ndarray]] | None


def neutral_space_alignment(groups: Sequence[Mapping[str, np.ndarray]], design: Design, reference: str, seed: int,
                            settings: AlignmentSettings,
                            held_out: Sequence[Mapping[str, np.ndarray]] | None = None) -> NeutralAlignment:
    """SUB-2 and SUB-3 for every ordered pair of models.

    Args:
        groups: per model, group -> residuals at the layer (# [n_e, d]); the same groups, prompts and order
            in every model, `reference` (neutral) among them.
        design: the dataset's resampling design, its classes the groups in order.
        reference: the group the maps are fitted on and the vectors are measured from.
        seed: seeds every draw.
        settings: draw counts and sizes.
        held_out: per model, the same groups on prompts no map is fitted on; None to skip that control.
    """
    emotions = tuple(e for e in groups[0] if e != reference)
    sizes = {e: len(x) for e, x in groups[0].items()}
    if design.classes != tuple(sizes) or design.sizes != tuple(sizes.values()):
        raise EmoverifyError(f"the design's classes {dict(zip(design.classes, design.sizes, strict=True))} are "
                             f"not the groups {sizes}")
    draws = draw_alignment(design, reference, len(groups), seed, settings.n_bootstrap, settings.n_permutations,
                           settings.n_pairing_shuffles)
    shared = _shared(groups, reference, seed, settings, draws, emotions, held_out)
    # Pairs on CPU threads: most of the work is LAPACK, BLAS and ufuncs, which release the GIL.
    pairs = thread_map(lambda pair: _pair_alignment(shared, pair), ordered_pairs(len(groups)))
    return NeutralAlignment(emotions=emotions, n_fit=sizes[reference], d=int(groups[0][reference].shape[1]),
                            unit=design.unit, jackknife_strata=np.asarray(draws.jackknife.strata), pairs=tuple(pairs))


def _shared(groups: Sequence[Mapping[str, np.ndarray]], reference: str, seed: int, settings: AlignmentSettings,
            draws: AlignmentDraws, emotions: tuple[str, ...],
            held_out: Sequence[Mapping[str, np.ndarray]] | None) -> _Shared:
    """The refitted nulls (in Gram space), and each model's vectors, PCA basis, resampled vectors and maps."""
    pooled = PooledPrompts.of(groups, reference)
    resample_w = {name: {e: resamples.class_weights(e) for e in groups[0]}
                  for name, resamples in (("bootstrap", draws.bootstrap), ("jackknife", draws.jackknife))}
    order = list(pooled.sizes)
    ref_index, emotion_index = order.index(reference), [order.index(e) for e in emotions]
    r = settings.n_refit
    # The prompts labelled neutral under each shuffle: the rows of the permutation's neutral class.
    neutral_mask = draws.permutation[:, ref_index] > 0  # [P, N]
    perm_neutral = np.nonzero(neutral_mask)[1].reshape(len(neutral_mask), -1)  # [P, n], ascending per row
    perm_dirs = draws.permutation[:, emotion_index] - draws.permutation[:, ref_index:ref_index + 1]  # [P, k, N]
    # Refit bootstrap: the resampled frames' neutral prompts are both the fit set and the reference.
    boot_w = resample_w["bootstrap"]
    refit_w = np.stack([pooled.weights({e: boot_w[e][:r], reference: -boot_w[reference][:r]})
                        for e in emotions], axis=1)  # [R, k, N]
    refit_rows = pooled.neutral_rows[draws.bootstrap.class_rows(reference)[:r]]  # [R, n]
    forward, ordered = forward_pairs(len(groups)), ordered_pairs(len(groups))
    # Label permutation: the whole analysis with shuffled emotion labels (same shuffle in A and B);
    # forward pairs only. Sensitivity: refitting the map on each draw's neutral prompts (~63% distinct) maps
    # exactly the part of a vector that is a combination of those prompts (reported, not the interval).
    permuted = refitted_mean_cos2(pooled.grams, perm_neutral, perm_dirs, forward, settings.chunk)
    refit = refitted_mean_cos2(pooled.grams, refit_rows, refit_w, ordered, settings.chunk)
    # One Procrustes solution per unordered pair: R^T solves the reverse problem (see `reverse_procrustes`).
    procrustes = dict(zip(forward, thread_map(
        lambda pair: fit_procrustes(groups[pair[0]][reference], groups[pair[1]][reference]), forward), strict=True))
    procrustes.update({(j, i): reverse_procrustes(procrustes[(i, j)]) for i, j in forward})
    return _Shared(
        groups=groups, reference=reference, seed=seed, settings=settings, draws=draws, pooled=pooled,
        vector_w=pooled.vector_weights(emotions), vectors=[neutral_diff_vectors(g, reference) for g in groups],
        pca=[pca_basis(np.concatenate([g[e] for e in emotions]), settings.pca_k) for g in groups],
        # Bootstrap and jackknife, conditional on the fit: frames resampled, every class of a frame (the
        # reference's too) together, so a frame's effect cancels in each vector as in the estimate; the maps
        # fitted on every neutral prompt are kept, so each draw's vectors go through them (no refit needed).
        resample_w=resample_w,
        resampled_vectors={name: [_resampled_vectors(g, reference, w) for g in groups]
                           for name, w in resample_w.items()},
        procrustes=procrustes, permuted=permuted, refit=refit, held_out=held_out)


def _resampled_vectors(groups: Mapping[str, np.ndarray], reference: str, class_w: Mapping[str, np.ndarray],
                       weight: np.ndarray | None = None) -> np.ndarray:
    """neutral_diff vectors of resampled prompts (every group, the reference's too), mapped by `weight` if given.

    Equals `(weighted class means - weighted reference mean) @ weight` but maps each class's prompts once
    rather than every draw's mean: no d x d product per draw. # [B, n_emotions, d_B]
    """
    def mapped(x: np.ndarray) -> np.ndarray:
        return x if weight is None else x @ weight

    emotions = [e for e in groups if e != reference]
    ref = weighted_means(class_w[reference], mapped(groups[reference]))  # [B, d_B]
    out = np.empty((ref.shape[0], len(emotions), ref.shape[-1]))
    for k, e in enumerate(emotions):
        out[:, k] = weighted_means(class_w[e], mapped(groups[e]))
    out -= ref[:, None, :]
    return out


def _pair_alignment(shared: _Shared, pair: Pair) -> PairAlignment:
    """Everything measured for the maps from model i to model j (runs on a worker thread)."""
    i, j = pair
    settings, ref = shared.settings, shared.reference
    na, nb = shared.groups[i][ref], shared.groups[j][ref]  # [n, d]
    va, vb = shared.vectors[i], shared.vectors[j]  # [k, d]
    before = vector_cos2(va, vb)
    lstsq = fit_linear_map(na, nb)
    ridge_sel = select_ridge_alpha(na, nb, default_alpha_grid(na), settings.ridge_folds,
                                   np.random.default_rng(shared.seed))
    ridge = fit_linear_map(na, nb, ridge_sel.alpha)
    procrustes = shared.procrustes[pair]
    det = batched_procrustes_directions(na[None], nb[None], va[None])[0]
    cos2 = MappedCos2(before=before, lstsq=vector_cos2(lstsq.apply_directions(va), vb),
                      ridge=vector_cos2(ridge.apply_directions(va), vb),
                      procrustes=vector_cos2(procrustes.apply_directions(va), vb),
                      procrustes_determined=vector_cos2(det, vb))
    completions = vector_cos2(procrustes_completions(na, nb, va, settings.n_completions,
                                                     np.random.default_rng(shared.draws.completion_seeds[pair])), vb)
    qa, qb = shared.pca[i], shared.pca[j]
    spans = SpanOverlaps(
        k3_before=subspace_overlap(orthonormal_basis(va), orthonormal_basis(vb), 3),
        k3_after=subspace_overlap(orthonormal_basis(lstsq.apply_directions(va)), orthonormal_basis(vb), 3),
        pca_before=subspace_overlap(qa, qb, settings.pca_k),
        pca_after=subspace_overlap(orthonormal_basis(lstsq.apply_directions(qa.T)), qb, settings.pca_k))
    # Pairing shuffle: B's neutral rows in another order, so the map learns no correspondence.
    shuffles = shared.draws.pairing_shuffles[pair]  # [S, n]
    rows = shared.pooled.neutral_rows
    dirs = np.broadcast_to(shared.vector_w, (len(shuffles), *shared.vector_w.shape))
    shuffled = gram_mapped_cos2(shared.pooled.grams[i], shared.pooled.grams[j], np.broadcast_to(rows, shuffles.shape),
                                rows[shuffles], dirs, dirs).mean(axis=1)  # [S]
    nulls = AlignmentNulls(pairing_shuffled=shuffled, permutation=shared.permuted.get(pair), refit=shared.refit[pair],
                           completion_gain=completions.mean(axis=1) - before.mean())
    # Bootstrap and jackknife: the same resampled frames in both models, through the fixed maps.
    resampled = {name: _resampled_cos2(shared, name, pair, lstsq, procrustes) for name in ("bootstrap", "jackknife")}
    (before_b, after_b, gain_b), (before_j, after_j, gain_j) = resampled["bootstrap"], resampled["jackknife"]
    return PairAlignment(
        source=i, target=j, cos2=cos2, ridge=ridge_sel, neutral_variance=float(np.sum((na - na.mean(axis=0)) ** 2)),
        spans=spans, held_out=_held_out(shared, pair, lstsq, ridge_sel.alpha), nulls=nulls,
        bootstrap=BootstrapDraws(before=before_b, after=after_b, gain=gain_b, before_jackknife=before_j,
                                 after_jackknife=after_j, gain_jackknife=gain_j))


def _resampled_cos2(shared: _Shared, name: str, pair: Pair, lstsq: LinearMap, procrustes: LinearMap,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean cos^2 before, after lstsq, and Procrustes' gain, on the `name` resamples. # [B] each"""
    i, j = pair
    weights, vectors = shared.resample_w[name], shared.resampled_vectors[name]
    target = vectors[j]  # [B, k, d]
    before = vector_cos2(vectors[i], target).mean(axis=1)
    after = vector_cos2(_resampled_vectors(shared.groups[i], shared.reference, weights, lstsq.weight),
                        target).mean(axis=1)
    rotated = vector_cos2(_resampled_vectors(shared.groups[i], shared.reference, weights, procrustes.weight),
                          target).mean(axis=1)
    return before, after, rotated - before


def _held_out(shared: _Shared, pair: Pair, lstsq: LinearMap, alpha: float) -> HeldOut:
    """Fit on half of the neutral prompts; R^2 on both halves; vectors of prompts no map saw."""
    i, j = pair
    na, nb = shared.groups[i][shared.reference], shared.groups[j][shared.reference]
    fit, test = shared.draws.fit_half, shared.draws.test_half
    half_map = fit_linear_map(na[fit], nb[fit])
    unseen = None
    if shared.held_out is not None:
        ha = neutral_diff_vectors(shared.held_out[i], shared.reference)
        hb = neutral_diff_vectors(shared.held_out[j], shared.reference)
        unseen = UnseenPrompts(n_per_class=int(shared.held_out[i][shared.reference].shape[0]),
                               before=float(vector_cos2(ha, hb).mean()),
                               after_full_fit=float(vector_cos2(lstsq.apply_directions(ha), hb).mean()),
                               after_half_fit=float(vector_cos2(half_map.apply_directions(ha), hb).mean()))
    return HeldOut(r2_fit_half=r2_score(half_map, na[fit], nb[fit]), r2_held_out_half=r2_score(half_map, na[test],
                                                                                                nb[test]),
                   r2_held_out_half_ridge=r2_score(fit_linear_map(na[fit], nb[fit], alpha), na[test], nb[test]),
                   unseen=unseen)
