"""What the SUB-2 and SUB-3 claims report of one model pair: the figures of a `PairAlignment`, rounded, and the
summaries of its draws (`intervals.reported_interval`: BCa from the frame bootstrap and jackknife; null
percentiles and p-values; the range over Procrustes completions).

The summaries are computed here, from the draws the analysis keeps, so a stored result yields the same report
as a fresh one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emoverify.analysis.alignment import NeutralAlignment, PairAlignment
from emoverify.analysis.intervals import ReportedInterval, percentile_in_null, permutation_p_value, reported_interval

__all__ = ["BOOTSTRAP_NOTE", "pair_report"]

BOOTSTRAP_NOTE = (
    "frames resampled (every class of a frame together, the same frames in both models) with the maps fitted on "
    "every neutral prompt kept; the interval is BCa with the jackknife over frames, as scipy.stats.bootstrap "
    "computes it, and is reported as computed: where it does not contain the estimate, `bootstrap_intervals` "
    "gives the draws' bias (median minus estimate) and says so. cos^2 of noisy mean vectors in d = 768 is biased "
    "upward, so the null model and the permutation null remain the decisive controls")


def pair_report(alignment: NeutralAlignment, pair: PairAlignment) -> dict[str, Any]:
    """The JSON of one ordered pair: rounded figures, every control, and the evidence for each interval."""
    n, d, cos2 = alignment.n_fit, alignment.d, pair.cos2
    before, after = float(cos2.before.mean()), {name: float(getattr(cos2, name).mean())
                                                 for name in ("lstsq", "ridge", "procrustes")}
    determined = float(cos2.procrustes_determined.mean())
    ridge, spans = pair.ridge, pair.spans
    return {
        "n_fit": n, "d": d, "n_over_d": round(n / d, 4),
        "before_vector_cos2": round(before, 5),
        "before_per_emotion": dict(zip(alignment.emotions, np.round(cos2.before, 5).tolist(), strict=True)),
        "chance_vector_cos2": round(1 / d, 5),
        "after_lstsq": round(after["lstsq"], 4),
        "after_per_emotion": dict(zip(alignment.emotions, np.round(cos2.lstsq, 4).tolist(), strict=True)),
        "after_ridge": round(after["ridge"], 4),
        "ridge_alpha": ridge.alpha, "ridge_alpha_over_total_var": round(ridge.alpha / pair.neutral_variance, 8),
        "ridge_alpha_at_grid_edge": ridge.alpha in (ridge.alphas[0], ridge.alphas[-1]),
        "after_procrustes": round(after["procrustes"], 4),
        "after_procrustes_determined_part": round(determined, 4),
        "procrustes_gain": round(after["procrustes"] - before, 4),
        "procrustes_gain_determined_part": round(float(cos2.procrustes_determined.mean() - cos2.before.mean()), 4),
        "procrustes_gain_over_completions": _completions(pair, after["procrustes"] - cos2.before.mean()),
        "procrustes_minus_lstsq": round(after["procrustes"] - after["lstsq"], 4),
        "span_k3_before": round(spans.k3_before.mean_cos2, 4), "span_k3_after": round(spans.k3_after.mean_cos2, 4),
        "pca_k100_before": round(spans.pca_before.mean_cos2, 4),
        "pca_k100_after_mean_cos2": round(spans.pca_after.mean_cos2, 4),
        "pca_k100_after_frobenius_over_k": round(spans.pca_after.frobenius_over_k, 4),
        "pca_k100_mapped_rank": spans.pca_after.k_a,
        "held_out": _held_out(pair),
        "pairing_shuffled_after_mean": round(float(np.mean(pair.nulls.pairing_shuffled)), 4),
        "pairing_shuffled_after_range": [round(float(pair.nulls.pairing_shuffled.min()), 4),
                                         round(float(pair.nulls.pairing_shuffled.max()), 4)],
        **_permutation(pair, after["lstsq"]),
        **_bootstrap(alignment, pair, {"before": before, "after": after["lstsq"],
                            "gain": float(cos2.procrustes.mean() - cos2.before.mean())}),
    }


def _completions(pair: PairAlignment, gain: float) -> dict[str, Any]:
    completion_gain = pair.nulls.completion_gain
    return {
        "median": round(float(np.median(completion_gain)), 4),
        "range95": [round(float(q), 4) for q in np.quantile(completion_gain, [0.025, 0.975])],
        "scipy_percentile": round(float(percentile_in_null(np.array(gain), completion_gain)), 1),
        "draws": int(completion_gain.size),
        "what": "the gain under Procrustes solutions that differ from scipy's only outside the fitting "
                "spans, where the data do not determine R (uniformly random completions)"}


def _held_out(pair: PairAlignment) -> dict[str, Any]:
    held = pair.held_out
    out: dict[str, Any] = {"r2_fit_half": round(held.r2_fit_half, 4),
                           "r2_held_out_half": round(held.r2_held_out_half, 4),
                           "r2_held_out_half_ridge": round(held.r2_held_out_half_ridge, 4)}
    if held.unseen is not None:
        out["n_unseen_per_class"] = held.unseen.n_per_class
        out["before_unseen"] = round(held.unseen.before, 4)
        out["after_unseen_full_fit"] = round(held.unseen.after_full_fit, 4)
        out["after_unseen_half_fit"] = round(held.unseen.after_half_fit, 4)
    return out


def _permutation(pair: PairAlignment, after: float) -> dict[str, Any]:
    null = pair.nulls.permutation
    if null is None:
        return {"permutation_null": "run on the paper's (forward) pairs only"}
    return {"permutation_null_after_median": round(float(np.median(null)), 4),
            "permutation_null_after_p95": round(float(np.quantile(null, 0.95)), 4),
            "permutation_percentile_after": round(float(percentile_in_null(np.array(after), null)), 2),
            "permutation_p_value_after": round(float(permutation_p_value(np.array(after), null)), 4),
            "permutation": "labels shuffled within frames, the same shuffles in both models; the map refitted on "
                           "each shuffle's neutral-labelled prompts"}


def _rounded(interval: ReportedInterval, digits: int) -> list[float]:
    return [round(interval.lo, digits), round(interval.hi, digits)]


def _bootstrap(alignment: NeutralAlignment, pair: PairAlignment, estimates: dict[str, float]) -> dict[str, Any]:
    boot, refit, strata = pair.bootstrap, pair.nulls.refit, alignment.jackknife_strata
    reported = {name: reported_interval(draws, estimates[name], jackknife, strata=strata)
                for name, draws, jackknife in (("before", boot.before, boot.before_jackknife),
                                               ("after", boot.after, boot.after_jackknife),
                                               ("gain", boot.gain, boot.gain_jackknife))}
    refit_interval = reported_interval(refit, estimates["after"])  # percentile: no jackknife of the refits
    return {
        "ci95_before": _rounded(reported["before"], 5),
        "ci95_after": _rounded(reported["after"], 4),
        "ci95_procrustes_gain": _rounded(reported["gain"], 4),
        "bootstrap": f"{alignment.unit}s resampled, every class of a {alignment.unit} together (the neutral "
                     "reference too), the same in both models; the maps fitted on every neutral prompt kept",
        "bootstrap_after_median": round(float(np.median(boot.after)), 4),
        "bootstrap_intervals": {name: interval.to_json() for name, interval in reported.items()},
        "bootstrap_note": BOOTSTRAP_NOTE,
        "refit_bootstrap_after_median": round(float(np.median(refit)), 4),
        "refit_bootstrap_after_ci95": _rounded(refit_interval, 4),
        "refit_bootstrap_after_interval": refit_interval.to_json(),
        "refit_bootstrap_draws": int(refit.size),
    }
