"""Claims of Phase 3.5 and 6 (SUB-1..3): subspace overlaps, neutral-space alignment, Procrustes.

The adapter between the artifact store and the analyses (`analysis.raw_overlap` for SUB-1,
`analysis.alignment` for SUB-2 and SUB-3). Protocol defaults (each claim file states them; every
neighbouring choice is reported in `details`):

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

The analyses' results go through the result store (`store.cached_result`), keyed by everything they
depend on: the models, each one's stored activations (`ActivationSet.cache_key`, the store entry's address:
weights, dataset, extraction settings), dataset, site, layer, seed, draw counts and the analysis's version. SUB-2 and
SUB-3 read one stored analysis; a second `pytest claims/` reads all three instead of recomputing them.
A null-model run on a stand-in seed other than 0 (`ctx.figure_only`) skips SUB-2/3's held-out check on the
`extended` prompts: the null distribution needs the figure, and that check would cost an extraction per seed.
Figures are drawn from the stored numbers.

Every bootstrap, jackknife and permutation follows the dataset's design (`_design.shared_design`: frames,
the same in every model), and every interval is `intervals.reported_interval`'s (BCa with the jackknife over
frames), reported as computed with its bias beside it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any, TypeVar

import numpy as np

from emoverify.analysis.alignment import (
    ALIGNMENT_VERSION,
    AlignmentSettings,
    NeutralAlignment,
    neutral_space_alignment,
)
from emoverify.analysis.alignment import RESULT_TYPES as ALIGNMENT_TYPES
from emoverify.analysis.alignment_report import pair_report
from emoverify.analysis.design import Design
from emoverify.analysis.figures import overlap_bars
from emoverify.analysis.intervals import percentile_in_null, reported_interval
from emoverify.analysis.raw_overlap import RAW_OVERLAP_VERSION, PairOverlap, RawOverlap, raw_subspace_overlap
from emoverify.analysis.raw_overlap import RESULT_TYPES as RAW_OVERLAP_TYPES
from emoverify.analysis.result_parts import from_parts, to_parts
from emoverify.analysis.subspace import chance_overlap
from emoverify.computations._design import shared_design
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
from emoverify.store import Result, cached_result

__all__ = ["K_SWEEP", "ModelView", "load_views", "neutral_alignment", "procrustes_gain", "raw_overlap",
           "stored_alignment", "stored_raw_overlap", "views_design"]

PAPER_MODELS_ORDER = ("gpt2", "pythia-160m", "gpt-neo-125M")
K_SWEEP = (3, 10, 50, 100, 115, 150)
# Each PCA-overlap draw costs an m x m eigendecomposition per model (m = 210 or 300 prompts).
N_BOOTSTRAP_PCA = N_BOOTSTRAP
ALIGNMENT_SETTINGS = AlignmentSettings(
    n_bootstrap=N_BOOTSTRAP,
    n_permutations=N_PERMUTATIONS,
    n_refit=N_BOOTSTRAP,  # the refit-bootstrap sensitivity check of SUB-2 (a map refitted per draw)
    n_pairing_shuffles=20,  # refits with B's neutral prompts paired to the wrong A prompts
    n_completions=200,  # Procrustes solutions that differ only where the data leave R free
)
T = TypeVar("T")


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
        activations_key: the stored activations' `cache_key` (model and weights, seed included, dataset,
            extraction settings); None for activations not read from the store, and then nothing computed from
            them is stored.
    """

    name: str
    ref: str
    groups: dict[str, np.ndarray]
    all_layers: dict[str, np.ndarray]
    ids: dict[str, tuple[str, ...]]
    layer: int
    activations_key: str | None = None


def load_views(ctx: ClaimContext, models: list[str], dataset: str, site: str, layer: int | str) -> list[ModelView]:
    """Every model's residuals; the prompts (ids, order) must be identical across models."""
    views = []
    for name in models:
        acts = activations(ctx, name, dataset)
        every = residual_groups(acts, site)
        at = resolve_layer(layer, acts.n_layers)
        views.append(ModelView(name=name, ref=acts.model_ref, groups={e: x[:, at] for e, x in every.items()},
                               all_layers=every, ids={e: tuple(g.ids) for e, g in acts.groups.items()}, layer=at,
                               activations_key=acts.cache_key))
    for view in views[1:]:
        if view.ids != views[0].ids:
            raise EmoverifyError(f"{view.name} and {views[0].name} were extracted on different prompts of "
                                 f"{dataset}: a cross-model map needs the same prompts in the same order")
    return views


def _stored(ctx: ClaimContext, kind: str, key: dict[str, Any], inputs: list[ModelView], compute: Callable[[], T],
            types: Iterable[type]) -> T:
    """`compute()` through the result store: read back when stored under `key`, else computed and stored.

    Activations without a `cache_key` among the `inputs` leave the key without their identity: then the
    result is computed and not stored.
    """
    if any(v.activations_key is None for v in inputs):
        return compute()
    result = cached_result(ctx.artifacts_dir, kind, key, lambda: Result(*to_parts(compute())))
    try:
        return from_parts(result.arrays, result.record, types)
    except (EmoverifyError, KeyError, TypeError) as err:  # result types changed without a version bump
        warnings.warn(f"recomputing {kind}: the stored result no longer reads as {kind} ({err!r})", stacklevel=2)
        result = cached_result(ctx.artifacts_dir, kind, key, lambda: Result(*to_parts(compute())), refresh=True)
        return from_parts(result.arrays, result.record, types)


def views_design(views: list[ModelView], dataset: str) -> Design:
    """The dataset's resampling design for the views' prompts, checked to be the same in every model."""
    return shared_design(dataset, {v.name: v.ids for v in views})


def _key(ctx: ClaimContext, views: list[ModelView], dataset: str, site: str, version: int,
         design: Design) -> dict[str, Any]:
    return {"version": version, "models": [v.ref for v in views], "activations": [v.activations_key for v in views],
            "dataset": dataset, "site": site, "layer": views[0].layer, "reference": REFERENCE, "seed": ctx.seed,
            "design": design.to_json()}


def _pair_name(a: ModelView, b: ModelView) -> str:
    return f"{a.name}->{b.name}"


def _label(values: list[float], what: str) -> str:
    return " / ".join(f"{v:.3f}" for v in values) + f" ({what})"


# --- SUB-1 --------------------------------------------------------------------------------------------

def stored_raw_overlap(ctx: ClaimContext, views: list[ModelView], dataset: str, site: str, k: int) -> RawOverlap:
    """SUB-1's analysis of `views`, through the result store."""
    design = views_design(views, dataset)
    key = {**_key(ctx, views, dataset, site, RAW_OVERLAP_VERSION, design), "k": k,
           "k_sweep": list(K_SWEEP), "n_bootstrap": N_BOOTSTRAP_PCA, "n_permutations": N_PERMUTATIONS}
    return _stored(ctx, "raw-overlap", key, views, lambda: raw_subspace_overlap(
        [v.all_layers for v in views], design, REFERENCE, views[0].layer, k, K_SWEEP, ctx.seed, N_BOOTSTRAP_PCA,
        N_PERMUTATIONS), RAW_OVERLAP_TYPES)


def _pair_overlap_json(pair: PairOverlap, result: RawOverlap, interval: tuple[float, float],
                       why: dict[str, Any]) -> dict[str, Any]:
    span_null = pair.span_null
    return {
        **pair.pca.to_json(), "ci95": interval, "bootstrap_interval": why,
        "k_sweep": {str(kk): round(float(v), 4) for kk, v in zip(result.k_sweep, pair.k_sweep, strict=True)},
        "k_sweep_chance": {str(kk): round(kk / result.d, 4) for kk in result.k_sweep},
        "all_layers": [round(float(v), 4) for v in pair.by_layer],
        "emotion_vector_span_k3": {**pair.span.to_json(),
                                   "permutation_percentile": round(float(percentile_in_null(
                                       np.array(pair.span.mean_cos2), span_null)), 2),
                                   "permutation_null_median": round(float(np.median(span_null)), 5)},
    }


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
    result = stored_raw_overlap(ctx, views, dataset, site, k)
    d, at = result.d, result.layer
    names = [f"{views[p.a].name}/{views[p.b].name}" for p in result.pairs]
    value, intervals, details_pairs = [], [], {}
    for name, pair in zip(names, result.pairs, strict=True):
        ci = reported_interval(pair.bootstrap, pair.pca.mean_cos2, pair.jackknife, strata=result.jackknife_strata)
        value.append(round(pair.pca.mean_cos2, 4))
        intervals.append((round(ci.lo, 4), round(ci.hi, 4)))
        details_pairs[name] = _pair_overlap_json(pair, result, intervals[-1], ci.to_json())
    figures = ctx.draw(
        overlap_bars, f"sub1-raw-overlap-{dataset}-{ctx.model_source}.png",
        {"PCA subspace overlap": dict(zip(names, value, strict=True)),
         "emotion-vector span (k=3)": {n: details_pairs[n]["emotion_vector_span_k3"]["mean_cos2"] for n in names}},
        f"raw subspace overlap, k={k}, layer {at} ({ctx.model_source})", "mean cos² of principal angles",
        reference_lines={f"chance k/d = {k}/{d}": chance_overlap(k, k, d), "chance 3/d": 3 / d},
        errors={"PCA subspace overlap": dict(zip(names, intervals, strict=True))},
    )
    details = {
        "models": [v.ref for v in views], "model_source": ctx.model_source, "dataset": dataset, "site": site,
        "layer_index": at, "k": k, "d": d, "n_emotion_prompts": result.n_prompts,
        "chance_k_over_d": round(k / d, 4), "measure": "mean cos^2 of principal angles (= ||Qa^T Qb||_F^2 / k)",
        "subspace": "top-k principal directions of the pooled emotion prompts (gratitude, anger, apology), "
                    "centred on their mean",
        "by_pair": details_pairs, "n_bootstrap": N_BOOTSTRAP_PCA, "n_permutations": N_PERMUTATIONS,
        "resampling": f"{result.unit}s resampled (every class of a {result.unit} together, the same in every "
                      f"model), labels shuffled within {result.unit}s; BCa interval with the jackknife over "
                      f"{result.unit}s",
        "note": "shuffling emotion labels does not change a PCA of the pooled emotion prompts; the "
                "permutation control applies to the label-dependent k=3 span, and chance k/d to the PCA",
    }
    return Measurement(value=value, details=details, interval=intervals, figures=figures,
                       provenance={"models": [v.ref for v in views], "dataset": dataset},
                       label=_label(value, f"k={k}, chance {k / d:.3f}, layer {at}"))


# --- SUB-2, SUB-3 -------------------------------------------------------------------------------------

def stored_alignment(ctx: ClaimContext, models: list[str] | None, dataset: str, site: str, layer: int | str,
                     ) -> tuple[list[ModelView], NeutralAlignment]:
    """SUB-2/SUB-3's analysis (`neutral_space_alignment`) of the models, through the result store."""
    views = load_views(ctx, list(models or PAPER_MODELS_ORDER), dataset, site, layer)
    extended = None
    if dataset == "baseline" and not ctx.figure_only:  # a null seed other than 0 needs only the figure
        # extended = baseline + 30 new prompts per class: those 30 were never in any baseline fit.
        extended = load_views(ctx, [v.name for v in views], "extended", site, layer)
    design = views_design(views, dataset)
    key = {**_key(ctx, views, dataset, site, ALIGNMENT_VERSION, design),
           "held_out_activations": None if extended is None else [v.activations_key for v in extended],
           "settings": asdict(ALIGNMENT_SETTINGS)}

    def compute() -> NeutralAlignment:
        held_out = None if extended is None else [_only_new(ext, base).groups
                                                  for ext, base in zip(extended, views, strict=True)]
        return neutral_space_alignment([v.groups for v in views], design, REFERENCE, ctx.seed, ALIGNMENT_SETTINGS,
                                       held_out)

    return views, _stored(ctx, "neutral-alignment", key, views + (extended or []), compute,
                          ALIGNMENT_TYPES)


def _alignment(ctx: ClaimContext, models: list[str] | None, dataset: str, site: str, layer: int | str,
               ) -> tuple[list[ModelView], dict[str, dict[str, Any]]]:
    """The views and every ordered pair's report (`pair_report`), by pair name."""
    views, result = stored_alignment(ctx, models, dataset, site, layer)
    return views, {_pair_name(views[p.source], views[p.target]): pair_report(result, p) for p in result.pairs}


def _only_new(extended: ModelView, baseline: ModelView) -> ModelView:
    seen = {e: set(ids) for e, ids in baseline.ids.items()}
    keep = {e: np.array([i not in seen[e] for i in extended.ids[e]]) for e in extended.groups}
    return ModelView(name=extended.name, ref=extended.ref,
                     groups={e: x[keep[e]] for e, x in extended.groups.items()},
                     all_layers={e: x[keep[e]] for e, x in extended.all_layers.items()},
                     ids={e: tuple(np.array(extended.ids[e])[keep[e]]) for e in extended.groups},
                     layer=extended.layer, activations_key=extended.activations_key)


def _forward(views: list[ModelView]) -> list[str]:
    return [_pair_name(views[i], views[j]) for i, j in combinations(range(len(views)), 2)]


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
               "by_pair": {p: {**{key: core[p][key] for key in (
                   "before_vector_cos2", "after_procrustes", "after_procrustes_determined_part", "procrustes_gain",
                   "procrustes_gain_determined_part", "procrustes_gain_over_completions", "ci95_procrustes_gain",
                   "procrustes_minus_lstsq", "after_lstsq", "n_fit", "d")},
                               "bootstrap_interval": core[p]["bootstrap_intervals"]["gain"]} for p in core},
               "note": "with n < d only the map between the two fitting spans is determined by the data; "
                       "the determined part is what every Procrustes solution shares; the gain over completions "
                       "is how far the undetermined rest can move the figure (error bars in the figure); "
                       "the interval resamples frames (every class of a frame together) with R fixed: BCa with the "
                       "jackknife over frames (by_pair.*.bootstrap_interval, with its bias)"}
    return Measurement(value=value, details=details,
                       interval=[tuple(core[p]["ci95_procrustes_gain"]) for p in forward],
                       figures=figures, provenance={"models": [v.ref for v in views], "dataset": dataset},
                       label=_label(value, "gain in per-vector cos²; where the data leave R free, other Procrustes "
                                           "solutions give " + " / ".join(
                                               "{:.3f}…{:.3f}".format(*core[p]["procrustes_gain_over_completions"]
                                                                      ["range95"]) for p in forward)))
