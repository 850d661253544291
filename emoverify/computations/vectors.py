"""Claims of Phase 3 and 3.5 (VEC-1..3): emotion-vector cosines, with their controls beside them.

The adapter between the artifact store and the pure maths of `vectors.py`. A computation reads an
`ActivationSet` through `_inputs.activations`, and reports the figure the claim checks (its protocol's
choice) together with every neighbouring choice: all layers, all pairs, the three vector kinds, with
and without outlier dimensions, a bootstrap interval and the figure's percentile under shuffled emotion labels.
Both follow the dataset's design (`_design.dataset_design`): frames drawn with every class of a frame together,
labels shuffled within frames; the interval is `intervals.reported_interval`'s (BCa with the jackknife over
frames).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emoverify.analysis.design import Design, bootstrap_units, jackknife_units, permute_labels
from emoverify.analysis.figures import cosine_heatmaps
from emoverify.analysis.intervals import percentile_in_null, reported_interval
from emoverify.analysis.resampling import weighted_means
from emoverify.analysis.vectors import (
    DEFAULT_OUTLIER_FACTOR,
    VECTOR_KINDS,
    class_means,
    drop_dimensions,
    emotion_pairs,
    emotion_vectors,
    outlier_dimensions,
    pairwise_cosines,
)
from emoverify.computations._design import dataset_design
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

__all__ = ["emotion_vector_cosines"]


def _vectors(means: dict[str, np.ndarray], kind: str, mask: np.ndarray | None) -> dict[str, np.ndarray]:
    vectors = emotion_vectors(means, kind, REFERENCE)  # type: ignore[arg-type]  # checked by emotion_vectors
    return drop_dimensions(vectors, mask) if mask is not None else vectors


def _select(values: np.ndarray, all_pairs: Sequence[tuple[str, str]], wanted: Sequence[tuple[str, str]]):
    """Columns of `values` (# [..., n_pairs]) for the wanted pairs, in the wanted order."""
    index = {pair: i for i, pair in enumerate(all_pairs)}
    try:
        return values[..., [index[tuple(pair)] for pair in wanted]]
    except KeyError as err:
        raise EmoverifyError(f"unknown emotion pair {err.args[0]}; known: {list(index)}") from None


def _cosine_grid(means: dict[str, np.ndarray], masks: np.ndarray) -> dict[str, np.ndarray]:
    """Cosines of every vector kind, outlier dimensions kept and removed: "kind/keep" -> # [L + 1, n_pairs]."""
    grid: dict[str, np.ndarray] = {}
    for k in VECTOR_KINDS:
        for drop in ("keep", "remove"):
            grid[f"{k}/{drop}"] = pairwise_cosines(_vectors(means, k, masks if drop == "remove" else None)).values
    return grid


def _resampled_means(design: Design, pooled: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Each class's mean under each resample's weights (# [R, C, n_total]) of the pooled prompts (# [n_total, d]):
    emotion -> # [R, d]."""
    means = weighted_means(weights, pooled)  # [R, C, d]
    return {e: means[:, c] for c, e in enumerate(design.classes)}


def _resampled_cosines(means: dict[str, np.ndarray], kind: str, mask: np.ndarray | None) -> np.ndarray:
    """Pairwise cosines of every draw's vectors. # [draws, n_pairs]"""
    return pairwise_cosines(_vectors(means, kind, mask)).values


def _every_layer(grid: dict[str, np.ndarray], pair_labels: list[str], masks: np.ndarray, at: int,
                 outlier_factor: float) -> dict[str, object]:
    """The details of every neighbouring choice at every layer, and of the outlier dimensions."""
    return {
        "all_layers": {key: {pair: np.round(vals[:, p], 4).tolist() for p, pair in enumerate(pair_labels)}
                       for key, vals in grid.items()},
        "outlier_rule": f"mean |activation| over all prompts > {outlier_factor} x median over dims",
        "outlier_dims_per_layer": masks.sum(axis=1).tolist(),
        "outlier_dims_at_layer": np.flatnonzero(masks[at]).tolist(),
    }


@computation("vectors.pairwise_cosines")
def emotion_vector_cosines(
    ctx: ClaimContext,
    model: str,
    dataset: str = "baseline",
    site: str = "sentence_end",
    kind: str = "neutral_diff",
    layer: int | str = "last",
    outliers: str = "keep",
    pairs: list[list[str]] | None = None,
    order: str = "sorted",
    outlier_factor: float = DEFAULT_OUTLIER_FACTOR,
) -> Measurement:
    """Cosines between emotion vectors of one model at one layer, and every neighbouring choice.

    Long because: its ten arguments are checked and read here, and its thirty-line details mapping is what a
    reader of the status file sees; the maths is in `analysis.vectors` and the resampling in helpers below.

    Args:
        ctx: claim context.
        model: paper model name.
        dataset: `baseline` or `extended`.
        site: `sentence_end` (final token) or `emotion_token` (last token of the emotion span).
        kind: `class_mean`, `centred` or `neutral_diff` (see `emoverify.analysis.vectors`).
        layer: `last` or a layer index (0: embedding output).
        outliers: `keep` or `remove` the outlier dimensions.
        pairs: the emotion pairs to report, in order (default: all three).
        order: `sorted` (ascending; for a claim that does not say which figure is which pair) or `pairs`.
        outlier_factor: multiple of the median mean |activation| above which a dimension is an outlier.

    Returns:
        value: the cosines of the chosen pairs; interval: bootstrap 95% intervals parallel to it.
    """
    if kind not in VECTOR_KINDS or outliers not in ("keep", "remove") or order not in ("sorted", "pairs"):
        raise EmoverifyError(f"kind must be one of {VECTOR_KINDS}, outliers keep|remove, order sorted|pairs "
                             f"(got {kind!r}, {outliers!r}, {order!r})")
    acts = activations(ctx, model, dataset)
    groups = residual_groups(acts, site)  # emotion -> [n, L + 1, d]
    design = dataset_design(dataset, {e: g.ids for e, g in acts.groups.items()})
    n_layers = acts.n_layers
    at = resolve_layer(layer, n_layers)
    all_pairs = emotion_pairs([e for e in groups if e != REFERENCE])
    wanted = [tuple(p) for p in pairs] if pairs else list(all_pairs)
    masks = outlier_dimensions(np.concatenate(list(groups.values())), outlier_factor)  # [L + 1, d]
    grid = _cosine_grid(class_means(groups), masks)  # every neighbouring choice, all layers, all pairs
    observed = _select(grid[f"{kind}/{outliers}"], all_pairs, wanted)[at]  # [n_wanted]
    # The same generator for both resamplings, bootstrap first: the same seed, the same draws.
    rng = np.random.default_rng(ctx.seed)
    mask_at = masks[at] if outliers == "remove" else None
    pooled = np.concatenate([groups[c][:, at] for c in design.classes])  # [n_total, d], class-major

    def resampled(weights: np.ndarray) -> np.ndarray:  # [R, C, n_total] -> the wanted cosines # [R, n_wanted]
        return _select(_resampled_cosines(_resampled_means(design, pooled, weights), kind, mask_at), all_pairs, wanted)

    boot = resampled(bootstrap_units(design, N_BOOTSTRAP, rng).weights())  # [B, n]
    jackknife = jackknife_units(design)
    jack = resampled(jackknife.weights())  # [J, n]
    chosen = [reported_interval(boot[:, p], float(observed[p]), jack[:, p], strata=jackknife.strata)
              for p in range(observed.size)]
    null = resampled(permute_labels(design, N_PERMUTATIONS, rng).weights())  # [P, n]
    percentile = percentile_in_null(observed, null)

    ranking = np.argsort(observed) if order == "sorted" else np.arange(observed.size)
    names = [f"{a}/{b}" for a, b in wanted]
    value = [round(float(observed[i]), 4) for i in ranking]
    intervals = [(round(chosen[i].lo, 4), round(chosen[i].hi, 4)) for i in ranking]
    pair_labels = ["/".join(all_pair) for all_pair in all_pairs]
    figures = ctx.draw(
        cosine_heatmaps, f"cosines-{model}-{site}-{dataset}-{ctx.model_source}.png",
        {f"{key} ({'outlier dims removed' if key.endswith('remove') else 'all dims'})": grid[key]
         for key in grid},
        pair_labels,
        f"{model} ({ctx.model_source}) {site} emotion-vector cosines, {dataset}",
    )
    details = {
        "model": model, "model_ref": acts.model_ref, "model_source": ctx.model_source,
        "dataset": dataset, "site": site, "kind": kind, "outliers": outliers, "layer_index": at,
        "n_layers": n_layers, "d_model": acts.d_model,
        "n_per_class": {e: int(len(x)) for e, x in groups.items()},
        "value_pairs": [names[i] for i in ranking],
        "by_pair": {names[i]: {"cosine": round(float(observed[i]), 4), "ci95": intervals[j],
                               "bootstrap_interval": chosen[i].to_json(),
                               "permutation_percentile": round(float(percentile[i]), 2),
                               "permutation_null_median": round(float(np.median(null[:, i])), 4)}
                    for j, i in enumerate(ranking)},
        **_every_layer(grid, pair_labels, masks, at, outlier_factor),
        "n_bootstrap": N_BOOTSTRAP, "n_permutations": N_PERMUTATIONS, "seed": ctx.seed,
        "resampling": {**design.to_json(), **design.describe(),
                       "interval": "BCa with the jackknife over the units (scipy.stats.bootstrap's), percentile "
                                   "where BCa is undefined; reported as computed, the bias beside it"},
    }
    label = " / ".join(f"{v:.2f}" for v in value) + f" ({kind}, layer {at}, {site})"
    return Measurement(value=value, details=details, interval=intervals, figures=figures,
                       provenance={"model_ref": acts.model_ref, "dataset": dataset,
                                   "dataset_sha256": acts.manifest.get("dataset", {}).get("sha256")},
                       label=label)
