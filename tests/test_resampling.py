"""Bootstrap intervals on synthetic data with a known answer: when they cover, and when they cannot."""

from __future__ import annotations

import numpy as np

from emoverify.analysis.resampling import basic_interval, bootstrap_interval, bootstrap_weights, percentile_interval


def _cos2(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.sum(u * v, -1) ** 2 / (np.sum(u * u, -1) * np.sum(v * v, -1))


def _coverage(d: int, snr: float, shared_noise: float, cos: float = 0.1, n: int = 70, reps: int = 100,
              seed: int = 0) -> tuple[float, float]:
    """Coverage of the true cos^2 between two models' class means (percentile, reported interval).

    The two "models" see the same n prompts; their per-prompt noise is correlated by `shared_noise`, as two
    networks' residuals of the same sentences are, so the sample cos^2 is biased away from the truth.
    """
    rng = np.random.default_rng(seed)
    weights = bootstrap_weights(n, 500, rng)
    hits_percentile = hits_reported = 0
    for _ in range(reps):
        u = rng.standard_normal(d)
        u /= np.linalg.norm(u)
        other = rng.standard_normal(d)
        other -= (other @ u) * u
        other /= np.linalg.norm(other)
        mu_a, mu_b = snr * u, snr * (cos * u + np.sqrt(1 - cos**2) * other)
        noise_a = rng.standard_normal((n, d))
        noise_b = shared_noise * noise_a + np.sqrt(1 - shared_noise**2) * rng.standard_normal((n, d))
        xa, xb = mu_a + noise_a, mu_b + noise_b
        estimate = float(_cos2(xa.mean(0), xb.mean(0)))
        draws = _cos2(weights @ xa, weights @ xb)
        hits_percentile += bool(percentile_interval(draws).covers(cos**2))
        hits_reported += bool(bootstrap_interval(draws, estimate, bounds=(0.0, 1.0))[0].covers(cos**2))
    return hits_percentile / reps, hits_reported / reps


def test_shared_noise_shifts_the_bootstrap_and_the_basic_interval_undoes_it() -> None:
    """d = 256, true cos^2 = 0.01: the estimate and its bootstrap are both pushed up by the shared noise."""
    percentile, reported = _coverage(d=256, snr=4.0, shared_noise=0.9)
    assert percentile <= 0.1  # the percentile interval sits above the truth almost every time
    assert reported >= 0.85  # the basic interval, chosen because the bootstrap left the estimate, covers


def test_no_interval_covers_when_noise_swamps_the_signal() -> None:
    """The limit the report states: d = 768, n = 70, a weak signal: neither interval is a 95% interval."""
    percentile, reported = _coverage(d=768, snr=2.0, shared_noise=0.9)
    assert percentile < 0.3 and reported < 0.3


def test_the_percentile_interval_is_kept_when_it_contains_the_estimate() -> None:
    rng = np.random.default_rng(1)
    draws = rng.normal(0.5, 0.1, size=2000)
    interval, why = bootstrap_interval(draws, 0.5)
    assert why["method"] == "percentile"
    np.testing.assert_allclose([interval.lo, interval.hi], np.quantile(draws, [0.025, 0.975]))


def test_basic_interval_reflects_the_shift_and_respects_bounds() -> None:
    draws = np.linspace(0.2, 0.4, 1001)  # bootstrap centred 0.15 above an estimate of 0.15
    interval = basic_interval(draws, np.asarray(0.15), bounds=(0.0, 1.0))
    assert interval.lo == 0.0  # 2 * 0.15 - 0.395 < 0, clipped to the statistic's range
    np.testing.assert_allclose(interval.hi, 2 * 0.15 - np.quantile(draws, 0.025))
    chosen, why = bootstrap_interval(draws, 0.15, bounds=(0.0, 1.0))
    assert why["method"].startswith("basic") and chosen.hi == interval.hi
    assert why["bootstrap_median_minus_estimate"] > 0.14
