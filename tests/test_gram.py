"""The resampling engines held to the textbook forms: Gram-space maps and PCA overlaps, Procrustes' free part."""

from __future__ import annotations

import numpy as np

from emoverify.analysis.gram import batched_map_directions, gram_fit, gram_mapped_cos2, resampled_pca_overlaps
from emoverify.analysis.procrustes import batched_procrustes_directions, procrustes_completions
from emoverify.analysis.subspace import fit_linear_map, fit_procrustes, pca_basis, subspace_overlap, vector_cos2


def test_batched_forms_match_the_direct_fits() -> None:
    rng = np.random.default_rng(7)
    x, y, v = rng.standard_normal((30, 50)), rng.standard_normal((30, 50)), rng.standard_normal((3, 50))
    for alpha in (0.0, 5.0):
        np.testing.assert_allclose(batched_map_directions(x[None], y[None], v[None], alpha)[0],
                                   fit_linear_map(x, y, alpha).apply_directions(v), atol=1e-8)
    # n > d: the Procrustes map is fully determined, so the determined part is scipy's answer
    x, y = rng.standard_normal((80, 10)), rng.standard_normal((80, 10))
    np.testing.assert_allclose(batched_procrustes_directions(x[None], y[None], v[None, :, :10])[0],
                               fit_procrustes(x, y).apply_directions(v[:, :10]), atol=1e-8)


def test_gram_form_of_mapped_cosines_matches_fitting_in_d_dimensions() -> None:
    """Permuted, paired-shuffled and bootstrap (repeated) fitting rows; weighted directions; lstsq and ridge."""
    rng = np.random.default_rng(9)
    n_total, n, d_a, d_b, k, draws = 40, 12, 30, 25, 3, 4
    xa, xb = rng.standard_normal((n_total, d_a)) + 1.0, rng.standard_normal((n_total, d_b)) - 2.0
    rows_a = np.stack([rng.choice(n_total, n, replace=True) for _ in range(draws)])
    rows_b = np.stack([rng.permutation(r) for r in rows_a])  # pairs shuffled in two draws, kept in two
    rows_b[:2] = rows_a[:2]
    dirs_a = rng.standard_normal((draws, k, n_total)) / n_total
    dirs_b = rng.standard_normal((draws, k, n_total)) / n_total
    for alpha in (0.0, 3.0):
        mapped = batched_map_directions(xa[rows_a], xb[rows_b], dirs_a @ xa, alpha)
        want = vector_cos2(mapped, dirs_b @ xb)
        got = gram_mapped_cos2(xa @ xa.T, xb @ xb.T, rows_a, rows_b, dirs_a, dirs_b, alpha)
        np.testing.assert_allclose(got, want, atol=1e-9)
    assert 0.0 < want.min() and want.max() < 1.0  # a non-trivial case, not all 0 or all 1


def test_each_form_of_the_gram_fit_matches_fitting_in_d_dimensions() -> None:
    """contrast form: distinct rows, bootstrap repeats (fewer distinct rows, padded), shuffled pairs;
    centred form: repeats paired inconsistently, more rows than dimensions, ridge."""
    rng = np.random.default_rng(11)
    n_total, n, d, k, draws = 60, 14, 30, 3, 5
    xa = rng.standard_normal((n_total, d)) * np.logspace(0, 2, d) + 50.0  # wide spectrum, a large offset
    xb = rng.standard_normal((n_total, d)) - 20.0
    distinct = np.stack([rng.permutation(n_total)[:n] for _ in range(draws)])
    repeats = rng.integers(0, n_total, size=(draws, n))
    shuffled = np.stack([rng.permutation(r) for r in distinct])
    cases = [  # (rows_a, rows_b, alpha, form)
        (distinct, distinct, 0.0, "contrast"),
        (repeats, repeats, 0.0, "contrast"),
        (distinct, shuffled, 0.0, "contrast"),
        (repeats, np.stack([rng.permutation(r) for r in repeats]), 0.0, "centred"),
        (rng.integers(0, n_total, size=(draws, 45)), None, 0.0, "centred"),  # 45 distinct-ish rows > d = 30
        (distinct, distinct, 2.0, "centred"),
    ]
    dirs_a = rng.standard_normal((draws, k, n_total)) / n_total
    dirs_b = rng.standard_normal((draws, k, n_total)) / n_total
    for rows_a, rows_b, alpha, form in cases:
        rows_b = rows_a if rows_b is None else rows_b
        fit = gram_fit(xa @ xa.T, rows_a, alpha)
        got = gram_mapped_cos2(xa @ xa.T, xb @ xb.T, rows_a, rows_b, dirs_a, dirs_b, alpha, fit=fit)
        want = vector_cos2(batched_map_directions(xa[rows_a], xb[rows_b], dirs_a @ xa, alpha), dirs_b @ xb)
        np.testing.assert_allclose(got, want, atol=1e-8, rtol=1e-6)
        used = fit.form if fit.consistent_with(rows_b) else "centred"
        assert used == form, (form, used)
        assert 0.0 < want.min() and want.max() < 1.0


def test_resampled_pca_overlaps_match_direct_pca() -> None:
    rng = np.random.default_rng(8)
    xa, xb = rng.standard_normal((40, 60)), rng.standard_normal((40, 60)) + rng.standard_normal((40, 1))
    rows = np.concatenate([rng.integers(0, 40, size=(3, 40)), np.arange(40)[None]])  # with repeats; all once
    rows = [*rows, np.arange(1, 40)]  # and a jackknife's: one prompt left out
    counts = np.stack([np.bincount(r, minlength=40) for r in rows])  # [5, 40]
    for k in (5, 20):  # 20: close to the ~25 distinct prompts of a draw
        got = resampled_pca_overlaps([xa, xb], counts, k)[(0, 1)]
        want = [subspace_overlap(pca_basis(xa[r], k), pca_basis(xb[r], k)).mean_cos2 for r in rows]
        np.testing.assert_allclose(got, want, atol=1e-8)


def test_procrustes_completions_agree_with_scipy_where_the_data_decide() -> None:
    """Each draw maps the fitting rows as scipy's R does (same residual), and keeps v's lengths; with n >= d
    there is no freedom and every draw is scipy's answer."""
    rng = np.random.default_rng(14)
    n, d = 8, 30
    x, y = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    scipy_map = fit_procrustes(x, y)
    xc = x - x.mean(axis=0)
    draws = procrustes_completions(x, y, np.concatenate([xc, rng.standard_normal((3, d))]), 50, rng)
    np.testing.assert_allclose(draws[:, :n], np.broadcast_to(xc @ scipy_map.weight, (50, n, d)), atol=1e-9)
    v = rng.standard_normal((3, d))
    mapped = procrustes_completions(x, y, v, 200, rng)
    np.testing.assert_allclose(np.linalg.norm(mapped, axis=-1), np.broadcast_to(np.linalg.norm(v, axis=-1), (200, 3)))
    np.testing.assert_allclose(mapped @ np.swapaxes(mapped, -1, -2), np.broadcast_to(v @ v.T, (200, 3, 3)), atol=1e-9)
    target = rng.standard_normal((3, d))
    spread = vector_cos2(mapped, target)  # [200, 3]: the completion moves the cosines
    assert np.all(spread.max(axis=0) - spread.min(axis=0) > 0.05)
    x_full, y_full = rng.standard_normal((60, 10)), rng.standard_normal((60, 10))
    np.testing.assert_allclose(procrustes_completions(x_full, y_full, v[:, :10], 3, rng),
                               np.broadcast_to(fit_procrustes(x_full, y_full).apply_directions(v[:, :10]), (3, 3, 10)),
                               atol=1e-9)
