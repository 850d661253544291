"""Claims of Phase 3.5 and 6 (SUB-1..3): subspace overlaps, neutral-space alignment, Procrustes.

The adapter between the artifact store and the maths of `analysis.subspace`, `analysis.gram` and
`analysis.procrustes`. Protocol defaults (each claim file states them; every neighbouring choice is
reported in `details`):

- residuals: `sentence_end`, the final block's output (`layer: last`), dataset `baseline`;
- emotion vectors: `neutral_diff` (class mean minus neutral mean), as for VEC-1;
- SUB-1 subspace: top-k principal directions of the three emotion classes' prompts pooled, k = 100;
  also k in `K_SWEEP` and the span of the three emotion vectors (k = 3);
- SUB-2 map: minimum-norm least squares from A's to B's centred neutral residuals (the same prompts in
  both models); also ridge with the penalty chosen by 5-fold cross-validation on the neutral prompts;
  measure: mean over the three emotions of cos^2(v_A W, v_B) ("per-vector cos^2"), and the overlap of
  the spans (k = 3, and the k = 100 PCA subspace mapped through W);
- SUB-3: `scipy.linalg.orthogonal_procrustes` on the same neutral residuals; gain = per-vector cos^2
  after Procrustes minus before (raw coordinates).

Model pairs run in the paper's order (gpt2 -> pythia-160m, gpt2 -> gpt-neo-125M, pythia-160m ->
gpt-neo-125M); the reverse directions are reported in `details`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from emoverify.analysis.figures import overlap_bars
from emoverify.analysis.gram import gram_fit, gram_mapped_cos2, resampled_pca_overlaps
from emoverify.analysis.procrustes import batched_procrustes_directions, procrustes_completions
from emoverify.analysis.resampling import (
    bootstrap_interval,
    draw_counts,
    percentile_in_null,
    permutation_weights,
    weighted_means,
)
from emoverify.analysis.subspace import (
    LinearMap,
    chance_overlap,
    default_alpha_grid,
    fit_linear_map,
    fit_procrustes,
    orthonormal_basis,
    pca_bases,
    pca_basis,
    r2_score,
    reverse_procrustes,
    select_ridge_alpha,
    subspace_overlap,
    vector_cos2,
)
from emoverify.analysis.threads import thread_map
from emoverify.computations._inputs import (
    N_BOOTSTRAP,
    N_PERMUTATIONS,
    REFERENCE,
    activations,
    residual_groups,
    resolve_layer,
)
from emoverify.computations.registry import ClaimContext, Measurement, computation
from emoverify.errors import EmoverifyError

__all__ = ["K_SWEEP", "ModelView", "neutral_alignment", "procrustes_gain", "raw_overlap"]

PAPER_MODELS_ORDER = ("gpt2", "pythia-160m", "gpt-neo-125M")
K_SWEEP = (3, 10, 50, 100, 115, 150)
# Each PCA-overlap draw costs an m x m eigendecomposition per model (m = 210 or 300 prompts).
N_BOOTSTRAP_PCA = N_BOOTSTRAP
N_REFIT_DRAWS = N_BOOTSTRAP  # the refit-bootstrap sensitivity check of SUB-2 (a map refitted per draw)
N_PAIRING_SHUFFLES = 20  # refits with B's neutral prompts paired to the wrong A prompts
N_COMPLETIONS = 200  # Procrustes solutions that differ only where the data leave R free
BOOTSTRAP_NOTE = (
    "cos^2 of noisy mean vectors in d = 768 is biased (upward where both models share the prompts' noise and "
    "the map carries it over): when the bootstrap is shifted past the estimate, the basic interval (which undoes "
    "the shift) is reported and lies below the estimate. On synthetic data of this shape neither interval "
    "reaches its nominal coverage at low signal-to-noise (tests/test_resampling.py): read intervals as spread; "
    "the null model, the permutation null and the held-out fit are the decisive controls")
_CHUNK = 50  # bootstrap/permutation draws per batched solve and thread task (a few MB per array)


@dataclass(frozen=True)
class ModelView:
    """One model's residuals at the protocol's site and layer.

    Attributes:
        name: paper model name.
        ref: the model reference the activations came from.
        groups: emotion -> residuals, neutral included. # [n_e, d]
        all_layers: emotion -> residuals at every layer. # [n_e, n_layers + 1, d]
        ids: emotion -> prompt ids, to check that two models saw the same prompts.
        layer: the layer index used.
    """

    name: str
    ref: str
    groups: dict[str, np.ndarray]
    all_layers: dict[str, np.ndarray]
    ids: dict[str, tuple[str, ...]]
    layer: int

    @property
    def emotions(self) -> list[str]:
        return [e for e in self.groups if e != REFERENCE]

    def vectors(self) -> np.ndarray:
        """neutral_diff emotion vectors. # [n_emotions, d]"""
        ref = self.groups[REFERENCE].mean(axis=0)
        return np.stack([self.groups[e].mean(axis=0) - ref for e in self.emotions])

    def emotion_prompts(self) -> np.ndarray:
        """All emotion (non-neutral) prompts pooled. # [m, d]"""
        return np.concatenate([self.groups[e] for e in self.emotions])


def load_views(ctx: ClaimContext, models: list[str], dataset: str, site: str, layer: int | str) -> list[ModelView]:
    """Every model's residuals; the prompts (ids, order) must be identical across models."""
    views = []
    for name in models:
        acts = activations(ctx, name, dataset)
        every = residual_groups(acts, site)
        at = resolve_layer(layer, acts.n_layers)
        views.append(ModelView(name=name, ref=acts.model_ref, groups={e: x[:, at] for e, x in every.items()},
                               all_layers=every, ids={e: tuple(g.ids) for e, g in acts.groups.items()}, layer=at))
    for view in views[1:]:
        if view.ids != views[0].ids:
            raise EmoverifyError(f"{view.name} and {views[0].name} were extracted on different prompts of "
                                 f"{dataset}: a cross-model map needs the same prompts in the same order")
    return views


def _pairs(models: list[str]) -> list[tuple[int, int]]:
    return list(combinations(range(len(models)), 2))


def _pair_name(a: ModelView, b: ModelView) -> str:
    return f"{a.name}->{b.name}"


def _chunks(total: int) -> list[slice]:
    return [slice(start, min(start + _CHUNK, total)) for start in range(0, total, _CHUNK)]


def _label(values: list[float], what: str) -> str:
    return " / ".join(f"{v:.3f}" for v in values) + f" ({what})"


# --- SUB-1 --------------------------------------------------------------------------------------------

@computation("subspace.raw_overlap")
def raw_overlap(
    ctx: ClaimContext,
    models: list[str] | None = None,
    dataset: str = "baseline",
    site: str = "sentence_end",
    layer: int | str = "last",
    k: int = 100,
) -> Measurement:
    """Overlap of two models' emotion subspaces, each in its own coordinates (no alignment).

    Returns:
        value: mean cos^2 of the principal angles for each model pair; interval: bootstrap 95%.
    """
    views = load_views(ctx, list(models or PAPER_MODELS_ORDER), dataset, site, layer)
    d = views[0].groups[REFERENCE].shape[1]
    rng = np.random.default_rng(ctx.seed)
    prompts = [v.emotion_prompts() for v in views]  # [m, d] each, the same prompts in every model
    m = prompts[0].shape[0]
    n_layers = next(iter(views[0].all_layers.values())).shape[1]
    k_max = max(kk for kk in (*K_SWEEP, k) if kk < m)
    # One SVD per model and layer gives every k of the sweep (the top directions are nested).
    tops = thread_map(lambda v: pca_bases(np.swapaxes(np.concatenate([v.all_layers[e] for e in v.emotions]), 0, 1),
                                          k_max), views)  # [n_layers + 1, d, k_max] per model, largest first
    spans = [orthonormal_basis(v.vectors()) for v in views]

    # Bootstrap over prompts: the same resampled prompts in both models (they are the same prompts).
    draws = rng.integers(0, m, size=(N_BOOTSTRAP_PCA, m))  # [B, m]
    boot = resampled_pca_overlaps(prompts, draws, k)  # (i, j) -> [B]
    # Permutation for the k = 3 span: shuffled emotion labels, the same shuffle in both models.
    labels = np.concatenate([np.full(len(x), i) for i, x in enumerate(views[0].groups.values())])
    perm_w = permutation_weights(labels, len(views[0].groups), N_PERMUTATIONS, rng)  # [P, C, n]
    perm_spans = []
    for v in views:
        means = weighted_means(perm_w, np.concatenate(list(v.groups.values())))  # [P, C, d]
        ref = list(v.groups).index(REFERENCE)
        diffs = np.delete(means, ref, axis=1) - means[:, ref:ref + 1]  # [P, 3, d]
        perm_spans.append(np.linalg.qr(np.swapaxes(diffs, 1, 2))[0])  # [P, d, 3]

    value, intervals, details_pairs = [], [], {}
    at = views[0].layer
    for i, j in _pairs([v.name for v in views]):
        a, b = views[i], views[j]
        main = subspace_overlap(tops[i][at][:, :k], tops[j][at][:, :k], k)
        ci, ci_why = bootstrap_interval(boot[(i, j)], main.mean_cos2, bounds=(0.0, 1.0))
        span = subspace_overlap(spans[i], spans[j], 3)
        span_null = np.sum((np.swapaxes(perm_spans[i], 1, 2) @ perm_spans[j]) ** 2, axis=(1, 2)) / 3
        sweep = {str(kk): round(subspace_overlap(tops[i][at][:, :kk], tops[j][at][:, :kk], kk).mean_cos2, 4)
                 for kk in K_SWEEP if kk < m}
        by_layer = [round(subspace_overlap(tops[i][li][:, :k], tops[j][li][:, :k], k).mean_cos2, 4)
                    for li in range(n_layers)]
        value.append(round(main.mean_cos2, 4))
        intervals.append((round(float(ci.lo), 4), round(float(ci.hi), 4)))
        details_pairs[f"{a.name}/{b.name}"] = {
            **main.to_json(), "ci95": intervals[-1], "bootstrap_interval": ci_why,
            "k_sweep": sweep, "k_sweep_chance": {str(kk): round(kk / d, 4) for kk in K_SWEEP if kk < m},
            "all_layers": by_layer,
            "emotion_vector_span_k3": {**span.to_json(),
                                       "permutation_percentile": round(float(percentile_in_null(
                                           np.array(span.mean_cos2), span_null)), 2),
                                       "permutation_null_median": round(float(np.median(span_null)), 5)},
        }
    names = [f"{views[i].name}/{views[j].name}" for i, j in _pairs([v.name for v in views])]
    figures = ctx.draw(
        overlap_bars, f"sub1-raw-overlap-{dataset}-{ctx.model_source}.png",
        {"PCA subspace overlap": dict(zip(names, value, strict=True)),
         "emotion-vector span (k=3)": {n: details_pairs[n]["emotion_vector_span_k3"]["mean_cos2"] for n in names}},
        f"raw subspace overlap, k={k}, layer {views[0].layer} ({ctx.model_source})", "mean cos² of principal angles",
        reference_lines={f"chance k/d = {k}/{d}": chance_overlap(k, k, d), "chance 3/d": 3 / d},
        errors={"PCA subspace overlap": dict(zip(names, intervals, strict=True))},
    )
    details = {
        "models": [v.ref for v in views], "model_source": ctx.model_source, "dataset": dataset, "site": site,
        "layer_index": views[0].layer, "k": k, "d": d, "n_emotion_prompts": m,
        "chance_k_over_d": round(k / d, 4), "measure": "mean cos^2 of principal angles (= ||Qa^T Qb||_F^2 / k)",
        "subspace": "top-k principal directions of the pooled emotion prompts (gratitude, anger, apology), "
                    "centred on their mean",
        "by_pair": details_pairs, "n_bootstrap": N_BOOTSTRAP_PCA, "n_permutations": N_PERMUTATIONS,
        "note": "shuffling emotion labels does not change a PCA of the pooled emotion prompts; the "
                "permutation control applies to the label-dependent k=3 span, and chance k/d to the PCA",
    }
    return Measurement(value=value, details=details, interval=intervals, figures=figures,
                       provenance={"models": [v.ref for v in views], "dataset": dataset},
                       label=_label(value, f"k={k}, chance {k / d:.3f}, layer {views[0].layer}"))


# --- SUB-2, SUB-3 -------------------------------------------------------------------------------------

def _bootstrap_vectors(view: ModelView, boot_w: dict[str, np.ndarray], weight: np.ndarray | None = None,
                       ) -> np.ndarray:
    """neutral_diff vectors of resampled emotion prompts (the neutral mean fixed), mapped by `weight` if given.

    Equals `(weighted class means - neutral mean) @ weight` but maps each class's prompts once rather than
    every draw's mean: no d x d product per draw. # [B, n_emotions, d_B]
    """
    def mapped(x: np.ndarray) -> np.ndarray:
        return x if weight is None else x @ weight

    first = next(iter(boot_w.values()))
    ref = mapped(view.groups[REFERENCE].mean(axis=0))
    out = np.empty((first.shape[0], len(view.emotions), ref.shape[-1]))
    for k, e in enumerate(view.emotions):
        out[:, k] = weighted_means(boot_w[e], mapped(view.groups[e]))
    out -= ref
    return out


def _alignment_core(views: list[ModelView], seed: int, held_out: list[ModelView] | None) -> dict[str, Any]:
    """Everything SUB-2 and SUB-3 report, for every ordered model pair."""
    rng = np.random.default_rng(seed)
    d = views[0].groups[REFERENCE].shape[1]
    n = views[0].groups[REFERENCE].shape[0]
    half = rng.permutation(n)
    fit_half, test_half = np.sort(half[: n // 2]), np.sort(half[n // 2:])
    groups_order = list(views[0].groups)
    labels = np.concatenate([np.full(len(x), i) for i, x in enumerate(views[0].groups.values())])
    ref_index = groups_order.index(REFERENCE)
    emotion_index = [i for i, e in enumerate(groups_order) if e != REFERENCE]
    perm_w = permutation_weights(labels, len(groups_order), N_PERMUTATIONS, rng)  # [P, C, n_total]
    # The prompts labelled neutral under each shuffle: the rows of perm_w's neutral class.
    neutral_mask = perm_w[:, ref_index] > 0  # [P, n_total]
    perm_neutral = np.nonzero(neutral_mask)[1].reshape(len(neutral_mask), -1)  # [P, n], ascending per row
    boot_rows = {e: rng.integers(0, len(x), size=(N_BOOTSTRAP, len(x)))
                 for e, x in views[0].groups.items()}  # emotion -> [B, n_e]: the same rows in both models
    boot_w = {e: draw_counts(rows, rows.shape[1]) / rows.shape[1]
              for e, rows in boot_rows.items()}  # emotion -> [B, n_e] averaging weights of those rows

    # The resampled and permuted refits run in the Gram space of the pooled prompts (`gram_mapped_cos2`).
    # Every direction there is a contrast (weights summing to zero), so the prompts are centred first:
    # the same cosines, without the Gram entries carrying the residual stream's large common offset.
    pooled = [np.concatenate(list(v.groups.values())) for v in views]  # [n_total, d]
    pooled = [x - x.mean(axis=0) for x in pooled]
    grams = [x @ x.T for x in pooled]  # [n_total, n_total]
    sizes = [len(x) for x in views[0].groups.values()]
    offsets = dict(zip(groups_order, np.cumsum([0, *sizes[:-1]]).tolist(), strict=True))
    n_total = int(sum(sizes))
    neutral_rows = offsets[REFERENCE] + np.arange(n)  # [n]

    def pooled_weights(per_group: dict[str, np.ndarray]) -> np.ndarray:
        """Weights over the pooled prompts from weights over each group's prompts. # [..., n_total]"""
        lead = next(iter(per_group.values())).shape[:-1]
        w = np.zeros((*lead, n_total))
        for e, gw in per_group.items():
            w[..., offsets[e]:offsets[e] + gw.shape[-1]] += gw
        return w

    # neutral_diff vectors as weights: 1/n_e on the class's prompts, -1/n on the neutral ones. # [3, n_total]
    vector_w = np.stack([pooled_weights({e: np.full(sizes[groups_order.index(e)], 1.0 / sizes[groups_order.index(e)]),
                                         REFERENCE: np.full(n, -1.0 / n)})
                         for e in views[0].emotions])
    # Refit bootstrap: the resampled neutral prompts are both the fit set and the reference.
    refit_w = np.stack([pooled_weights({e: boot_w[e][:N_REFIT_DRAWS], REFERENCE: -boot_w[REFERENCE][:N_REFIT_DRAWS]})
                        for e in views[0].emotions], axis=1)  # [R, 3, n_total]
    refit_rows = neutral_rows[boot_rows[REFERENCE][:N_REFIT_DRAWS]]  # [R, n]
    perm_dirs = perm_w[:, emotion_index] - perm_w[:, ref_index:ref_index + 1]  # [P, 3, n_total]
    ordered = [(i, j) for i in range(len(views)) for j in range(len(views)) if i != j]
    forward = _pairs([v.name for v in views])
    # Label permutation: the whole analysis with shuffled emotion labels (same shuffle in A and B);
    # forward pairs only. Sensitivity: resampling the neutral prompts too refits the map on ~63% distinct
    # prompts and moves the reference mean off the fit set's mean; the part of a vector that is a
    # combination of fit prompts is then mapped exactly, which inflates cos^2 (reported, not the interval).
    null_after = _refitted_cos2(grams, perm_neutral, perm_dirs, forward)
    refit_after = _refitted_cos2(grams, refit_rows, refit_w, ordered)

    # Per model, shared by every pair it is in: emotion vectors, the PCA basis, bootstrap vectors.
    vectors = [v.vectors() for v in views]  # [3, d] each
    pca = [pca_basis(v.emotion_prompts(), 100) for v in views]  # [d, 100] each
    # Bootstrap, conditional on the fit: emotion prompts resampled within class, the neutral fit set
    # and reference kept, so each draw's vectors go through the same maps (no refit needed).
    boot_vectors = [_bootstrap_vectors(v, boot_w) for v in views]  # [B, 3, d] each
    # One Procrustes solution per unordered pair: R^T solves the reverse problem (see `reverse_procrustes`).
    procrustes_maps: dict[tuple[int, int], LinearMap] = dict(zip(forward, thread_map(
        lambda pair: fit_procrustes(views[pair[0]].groups[REFERENCE], views[pair[1]].groups[REFERENCE]), forward),
        strict=True))
    procrustes_maps.update({(j, i): reverse_procrustes(procrustes_maps[(i, j)]) for i, j in forward})

    # Drawn here, in pair order, so the threaded pairs below draw nothing: the same seed, the same figures.
    pairing_shuffles = {pair: np.stack([rng.permutation(n) for _ in range(N_PAIRING_SHUFFLES)]) for pair in ordered}
    completion_seeds = dict(zip(ordered, rng.integers(0, 2**63, size=len(ordered)).tolist(), strict=True))

    def pair_report(pair: tuple[int, int]) -> dict[str, Any]:
        """Everything reported for the map from model i to model j."""
        i, j = pair
        a, b = views[i], views[j]
        na, nb = a.groups[REFERENCE], b.groups[REFERENCE]  # [n, d]
        va, vb = vectors[i], vectors[j]  # [3, d]
        before = vector_cos2(va, vb)
        lstsq = fit_linear_map(na, nb)
        ridge_sel = select_ridge_alpha(na, nb, default_alpha_grid(na), 5, np.random.default_rng(seed))
        ridge = fit_linear_map(na, nb, ridge_sel.alpha)
        procrustes = procrustes_maps[(i, j)]
        after = {name: vector_cos2(m.apply_directions(va), vb) for name, m in
                 (("lstsq", lstsq), ("ridge", ridge), ("procrustes", procrustes))}
        det = batched_procrustes_directions(na[None], nb[None], va[None])[0]
        completions = vector_cos2(procrustes_completions(na, nb, va, N_COMPLETIONS,
                                                         np.random.default_rng(completion_seeds[pair])), vb)
        completion_gain = completions.mean(axis=1) - before.mean()  # [N_COMPLETIONS]
        span_before = subspace_overlap(orthonormal_basis(va), orthonormal_basis(vb), 3)
        span_after = subspace_overlap(orthonormal_basis(lstsq.apply_directions(va)), orthonormal_basis(vb), 3)
        qa, qb = pca[i], pca[j]
        pca_before = subspace_overlap(qa, qb, 100)
        pca_after = subspace_overlap(orthonormal_basis(lstsq.apply_directions(qa.T)), qb, 100)

        # Held out: fit on half of the neutral prompts; R^2 on both halves; vectors of unseen prompts.
        half_map = fit_linear_map(na[fit_half], nb[fit_half])
        held = {"r2_fit_half": round(r2_score(half_map, na[fit_half], nb[fit_half]), 4),
                "r2_held_out_half": round(r2_score(half_map, na[test_half], nb[test_half]), 4),
                "r2_held_out_half_ridge": round(r2_score(fit_linear_map(na[fit_half], nb[fit_half], ridge_sel.alpha),
                                                         na[test_half], nb[test_half]), 4)}
        if held_out is not None:
            ha, hb = held_out[i].vectors(), held_out[j].vectors()
            held["n_unseen_per_class"] = int(held_out[i].groups[REFERENCE].shape[0])
            held["before_unseen"] = round(float(vector_cos2(ha, hb).mean()), 4)
            held["after_unseen_full_fit"] = round(float(vector_cos2(lstsq.apply_directions(ha), hb).mean()), 4)
            held["after_unseen_half_fit"] = round(float(vector_cos2(half_map.apply_directions(ha), hb).mean()), 4)

        # Pairing shuffle: B's neutral rows in another order, so the map learns no correspondence.
        shuffles = pairing_shuffles[pair]  # [S, n]
        shuffled = gram_mapped_cos2(grams[i], grams[j], np.broadcast_to(neutral_rows, shuffles.shape),
                                    neutral_rows[shuffles], np.broadcast_to(vector_w, (len(shuffles), *vector_w.shape)),
                                    np.broadcast_to(vector_w, (len(shuffles), *vector_w.shape))).mean(axis=1).tolist()
        null = null_after.get((i, j))  # [P]; None for the reverse pairs
        refit = refit_after[(i, j)]  # [R]
        # Bootstrap: resample prompts within each class, the same prompts in both models.
        bvb = boot_vectors[j]  # [B, 3, d]
        boot_before = vector_cos2(boot_vectors[i], bvb).mean(axis=1)
        boot_after = vector_cos2(_bootstrap_vectors(a, boot_w, lstsq.weight), bvb).mean(axis=1)
        boot_gain = vector_cos2(_bootstrap_vectors(a, boot_w, procrustes.weight), bvb).mean(axis=1) - boot_before
        estimates = {"before": float(before.mean()), "after": float(after["lstsq"].mean()),
                     "gain": float(after["procrustes"].mean() - before.mean())}
        chosen = {name: bootstrap_interval(x, estimates[name], bounds=(-1.0, 1.0) if name == "gain" else (0.0, 1.0))
                  for name, x in (("before", boot_before), ("after", boot_after), ("gain", boot_gain))}
        ci = {name: interval for name, (interval, _) in chosen.items()}
        mean_after = {k: float(v.mean()) for k, v in after.items()}
        return {
            "n_fit": n, "d": d, "n_over_d": round(n / d, 4),
            "before_vector_cos2": round(float(before.mean()), 5),
            "before_per_emotion": dict(zip(a.emotions, np.round(before, 5).tolist(), strict=True)),
            "chance_vector_cos2": round(1 / d, 5),
            "after_lstsq": round(mean_after["lstsq"], 4),
            "after_per_emotion": dict(zip(a.emotions, np.round(after["lstsq"], 4).tolist(), strict=True)),
            "after_ridge": round(mean_after["ridge"], 4),
            "ridge_alpha": ridge_sel.alpha, "ridge_alpha_over_total_var": round(
                ridge_sel.alpha / float(np.sum((na - na.mean(axis=0)) ** 2)), 8),
            "ridge_alpha_at_grid_edge": ridge_sel.alpha in (ridge_sel.alphas[0], ridge_sel.alphas[-1]),
            "after_procrustes": round(mean_after["procrustes"], 4),
            "after_procrustes_determined_part": round(float(vector_cos2(det, vb).mean()), 4),
            "procrustes_gain": round(mean_after["procrustes"] - float(before.mean()), 4),
            "procrustes_gain_determined_part": round(float(vector_cos2(det, vb).mean() - before.mean()), 4),
            "procrustes_gain_over_completions": {
                "median": round(float(np.median(completion_gain)), 4),
                "range95": [round(float(q), 4) for q in np.quantile(completion_gain, [0.025, 0.975])],
                "scipy_percentile": round(float(percentile_in_null(
                    np.array(mean_after["procrustes"] - before.mean()), completion_gain)), 1),
                "draws": N_COMPLETIONS,
                "what": "the gain under Procrustes solutions that differ from scipy's only outside the fitting "
                        "spans, where the data do not determine R (uniformly random completions)"},
            "procrustes_minus_lstsq": round(mean_after["procrustes"] - mean_after["lstsq"], 4),
            "span_k3_before": round(span_before.mean_cos2, 4), "span_k3_after": round(span_after.mean_cos2, 4),
            "pca_k100_before": round(pca_before.mean_cos2, 4),
            "pca_k100_after_mean_cos2": round(pca_after.mean_cos2, 4),
            "pca_k100_after_frobenius_over_k": round(pca_after.frobenius_over_k, 4),
            "pca_k100_mapped_rank": pca_after.k_a,
            "held_out": held,
            "pairing_shuffled_after_mean": round(float(np.mean(shuffled)), 4),
            "pairing_shuffled_after_range": [round(min(shuffled), 4), round(max(shuffled), 4)],
            **({"permutation_null_after_median": round(float(np.median(null)), 4),
                "permutation_null_after_p95": round(float(np.quantile(null, 0.95)), 4),
                "permutation_percentile_after": round(float(percentile_in_null(np.array(mean_after["lstsq"]), null)),
                                                      2)} if null is not None else
               {"permutation_null": "run on the paper's (forward) pairs only"}),
            "ci95_before": [round(float(ci["before"].lo), 5), round(float(ci["before"].hi), 5)],
            "ci95_after": [round(float(ci["after"].lo), 4), round(float(ci["after"].hi), 4)],
            "ci95_procrustes_gain": [round(float(ci["gain"].lo), 4), round(float(ci["gain"].hi), 4)],
            "bootstrap": "emotion prompts resampled within class; neutral fit set and reference fixed",
            "bootstrap_after_median": round(float(np.median(boot_after)), 4),
            "bootstrap_intervals": {name: why for name, (_, why) in chosen.items()},
            "bootstrap_note": BOOTSTRAP_NOTE,
            "refit_bootstrap_after_median": round(float(np.median(refit)), 4),
            "refit_bootstrap_after_ci95": [round(float(np.quantile(refit, 0.025)), 4),
                                           round(float(np.quantile(refit, 0.975)), 4)],
            "refit_bootstrap_draws": int(refit.size),
        }

    # Pairs on CPU threads: most of the work is LAPACK, BLAS and ufuncs, which release the GIL.
    return dict(zip([_pair_name(views[i], views[j]) for i, j in ordered], thread_map(pair_report, ordered),
                    strict=True))


def _refitted_cos2(grams: list[np.ndarray], rows: np.ndarray, dirs: np.ndarray, pairs: list[tuple[int, int]],
                   ) -> dict[tuple[int, int], np.ndarray]:
    """Mean per-vector cos^2 after a map refitted on each draw's rows, for each (source, target) pair.

    Draw b fits on the prompts `rows[b]` (the same in both models) and maps the directions `dirs[b]`
    (weights over the pooled prompts, the same in both models). Chunks of draws run on CPU threads; a
    source's fits are shared by its targets.

    Args:
        grams: each model's Gram matrix of the pooled, centred prompts. # [N, N]
        rows: # [R, n]
        dirs: # [R, 3, N]
        pairs: (source, target) model indices.

    Returns:
        (source, target) -> # [R]
    """
    tasks = [(i, s) for i in sorted({i for i, _ in pairs}) for s in _chunks(len(rows))]

    def run(task: tuple[int, slice]) -> dict[int, np.ndarray]:
        i, s = task
        fit = gram_fit(grams[i], rows[s])
        return {j: gram_mapped_cos2(grams[i], grams[j], rows[s], rows[s], dirs[s], dirs[s], fit=fit).mean(axis=1)
                for source, j in pairs if source == i}

    parts: dict[tuple[int, int], list[np.ndarray]] = {}
    for (i, _), by_target in zip(tasks, thread_map(run, tasks), strict=True):
        for j, values in by_target.items():
            parts.setdefault((i, j), []).append(values)
    return {pair: np.concatenate(values) for pair, values in parts.items()}


# SUB-2 and SUB-3 report two faces of one analysis: computed once per session and inputs.
_ALIGNMENT_MEMO: dict[tuple[Any, ...], tuple[list[ModelView], dict[str, Any]]] = {}


def _alignment(ctx: ClaimContext, models: list[str] | None, dataset: str, site: str, layer: int | str,
               ) -> tuple[list[ModelView], dict[str, Any]]:
    models = list(models or PAPER_MODELS_ORDER)
    key = (ctx.model_source, str(ctx.artifacts_dir), tuple(ctx.model_ref(m) for m in models), dataset, site,
           layer, ctx.seed)
    if key not in _ALIGNMENT_MEMO:
        _ALIGNMENT_MEMO[key] = _alignment_uncached(ctx, models, dataset, site, layer)
    return _ALIGNMENT_MEMO[key]


def _alignment_uncached(ctx: ClaimContext, models: list[str], dataset: str, site: str, layer: int | str,
                        ) -> tuple[list[ModelView], dict[str, Any]]:
    views = load_views(ctx, models, dataset, site, layer)
    held_out = None
    if dataset == "baseline":
        # extended = baseline + 30 new prompts per class: those 30 were never in any baseline fit.
        extended = load_views(ctx, [v.name for v in views], "extended", site, layer)
        held_out = [_only_new(ext, base) for ext, base in zip(extended, views, strict=True)]
    return views, _alignment_core(views, ctx.seed, held_out)


def _only_new(extended: ModelView, baseline: ModelView) -> ModelView:
    seen = {e: set(ids) for e, ids in baseline.ids.items()}
    keep = {e: np.array([i not in seen[e] for i in extended.ids[e]]) for e in extended.groups}
    return ModelView(name=extended.name, ref=extended.ref,
                     groups={e: x[keep[e]] for e, x in extended.groups.items()},
                     all_layers={e: x[keep[e]] for e, x in extended.all_layers.items()},
                     ids={e: tuple(np.array(extended.ids[e])[keep[e]]) for e in extended.groups},
                     layer=extended.layer)


def _forward(views: list[ModelView]) -> list[str]:
    return [_pair_name(views[i], views[j]) for i, j in _pairs([v.name for v in views])]


def _null_core(ctx: ClaimContext, models: list[str] | None, dataset: str, site: str, layer: int | str,
               ) -> dict[str, Any] | None:
    """The stand-ins' figures, to draw beside the real ones (the harness reports them separately too)."""
    if ctx.model_source != "real":
        return None
    try:
        return _alignment(ctx.with_models("standin"), models, dataset, site, layer)[1]
    except EmoverifyError:
        return None


@computation("subspace.neutral_alignment")
def neutral_alignment(
    ctx: ClaimContext,
    models: list[str] | None = None,
    dataset: str = "baseline",
    site: str = "sentence_end",
    layer: int | str = "last",
    fit: str = "lstsq",
) -> Measurement:
    """Per-vector cos^2 of emotion vectors after a map fitted on neutral prompts only (SUB-2).

    Returns:
        value: mean over emotions of cos^2(v_A W, v_B) for each forward model pair; interval: bootstrap.
    """
    if fit not in ("lstsq", "ridge"):
        raise EmoverifyError(f"fit must be 'lstsq' or 'ridge', not {fit!r}")
    views, core = _alignment(ctx, models, dataset, site, layer)
    forward = _forward(views)
    value = [core[p][f"after_{fit}"] for p in forward]
    intervals = [tuple(core[p]["ci95_after"]) for p in forward] if fit == "lstsq" else None
    null = _null_core(ctx, models, dataset, site, layer)
    bars = {"before (raw coords)": {p: core[p]["before_vector_cos2"] for p in forward},
            "after lstsq": {p: core[p]["after_lstsq"] for p in forward},
            "after ridge (CV)": {p: core[p]["after_ridge"] for p in forward},
            "after, unseen prompts": {p: core[p]["held_out"].get("after_unseen_half_fit", np.nan) for p in forward},
            "after, pairing shuffled": {p: core[p]["pairing_shuffled_after_mean"] for p in forward},
            "after, label-permutation p95": {p: core[p]["permutation_null_after_p95"] for p in forward}}
    if null is not None:
        bars["after lstsq, null model (stand-ins)"] = {p: null[p]["after_lstsq"] for p in forward}
    figures = ctx.draw(overlap_bars, f"sub2-alignment-{dataset}-{ctx.model_source}.png", bars,
                       f"neutral-space alignment, layer {views[0].layer} ({ctx.model_source})", "mean per-vector cos²",
                       reference_lines={"chance 1/d": 1 / views[0].groups[REFERENCE].shape[1]},
                       errors={"after lstsq": dict(zip(forward, [tuple(core[p]["ci95_after"]) for p in forward],
                                                       strict=True))})
    details = {"models": [v.ref for v in views], "model_source": ctx.model_source, "dataset": dataset,
               "site": site, "layer_index": views[0].layer, "fit": fit, "value_pairs": forward,
               "measure": "mean over gratitude/anger/apology of cos^2(v_A W, v_B), v = class mean - neutral mean",
               "before": [core[p]["before_vector_cos2"] for p in forward], "by_pair": core,
               "null_model_after_lstsq": {p: null[p]["after_lstsq"] for p in forward} if null else None,
               "n_bootstrap": N_BOOTSTRAP, "n_permutations": N_PERMUTATIONS, "seed": ctx.seed}
    before = " / ".join(f"{core[p]['before_vector_cos2']:.4f}" for p in forward)
    n, d = views[0].groups[REFERENCE].shape
    return Measurement(value=value, details=details, interval=intervals, figures=figures,
                       provenance={"models": [v.ref for v in views], "dataset": dataset},
                       label=f"{before} -> " + _label(value, f"{fit}, n={n} neutral prompts, d={d}"))


@computation("subspace.procrustes_gain")
def procrustes_gain(
    ctx: ClaimContext,
    models: list[str] | None = None,
    dataset: str = "baseline",
    site: str = "sentence_end",
    layer: int | str = "last",
) -> Measurement:
    """Gain in per-vector cos^2 from an orthogonal Procrustes map fitted on neutral prompts (SUB-3).

    Returns:
        value: cos^2 after Procrustes minus cos^2 in raw coordinates, per forward model pair.
    """
    views, core = _alignment(ctx, models, dataset, site, layer)
    forward = _forward(views)
    value = [core[p]["procrustes_gain"] for p in forward]
    figures = ctx.draw(
        overlap_bars, f"sub3-procrustes-{dataset}-{ctx.model_source}.png",
        {"before": {p: core[p]["before_vector_cos2"] for p in forward},
         "after Procrustes (scipy; bar: 95% over free completions)": {p: core[p]["after_procrustes"] for p in forward},
         "after Procrustes, determined part": {p: core[p]["after_procrustes_determined_part"] for p in forward},
         "after lstsq": {p: core[p]["after_lstsq"] for p in forward}},
        f"Procrustes alignment, layer {views[0].layer} ({ctx.model_source})", "mean per-vector cos²",
        reference_lines={"chance 1/d": 1 / views[0].groups[REFERENCE].shape[1]},
        errors={"after Procrustes (scipy; bar: 95% over free completions)": {  # completions the data leave free
            p: tuple(core[p]["before_vector_cos2"] + g for g in core[p]["procrustes_gain_over_completions"]["range95"])
            for p in forward}})
    details = {"models": [v.ref for v in views], "model_source": ctx.model_source, "dataset": dataset,
               "site": site, "layer_index": views[0].layer, "value_pairs": forward,
               "gain": "per-vector cos^2 after scipy.linalg.orthogonal_procrustes minus before (raw coordinates)",
               "by_pair": {p: {key: core[p][key] for key in (
                   "before_vector_cos2", "after_procrustes", "after_procrustes_determined_part", "procrustes_gain",
                   "procrustes_gain_determined_part", "procrustes_gain_over_completions", "ci95_procrustes_gain",
                   "procrustes_minus_lstsq", "after_lstsq", "n_fit", "d")} for p in core},
               "note": "with n < d only the map between the two fitting spans is determined by the data; "
                       "the determined part is what every Procrustes solution shares; the gain over completions "
                       "is how far the undetermined rest can move the figure (error bars in the figure); "
                       "the interval resamples emotion prompts"}
    return Measurement(value=value, details=details,
                       interval=[tuple(core[p]["ci95_procrustes_gain"]) for p in forward],
                       figures=figures, provenance={"models": [v.ref for v in views], "dataset": dataset},
                       label=_label(value, "gain in per-vector cos²; where the data leave R free, other Procrustes "
                                           "solutions give " + " / ".join(
                                               "{:.3f}…{:.3f}".format(*core[p]["procrustes_gain_over_completions"]
                                                                      ["range95"]) for p in forward)))
