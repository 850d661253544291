"""Known answers for subspace overlaps, least-squares / ridge maps and Procrustes."""

from __future__ import annotations

import numpy as np
from scipy.stats import ortho_group

from emoverify.analysis.subspace import (
    batched_map_directions,
    batched_procrustes_directions,
    default_alpha_grid,
    fit_linear_map,
    fit_procrustes,
    gram_fit,
    gram_mapped_cos2,
    orthonormal_basis,
    pca_bases,
    pca_basis,
    procrustes_completions,
    r2_score,
    resampled_pca_overlaps,
    select_ridge_alpha,
    subspace_overlap,
    vector_cos2,
)


def test_identical_subspaces_overlap_one_and_orthogonal_zero() -> None:
    q = orthonormal_basis(np.random.default_rng(0).standard_normal((5, 40)))
    assert abs(subspace_overlap(q, q).mean_cos2 - 1.0) < 1e-12
    eye = np.eye(40)
    assert subspace_overlap(eye[:, :5], eye[:, 5:10]).mean_cos2 == 0.0


def test_random_subspaces_overlap_k_over_d() -> None:
    rng = np.random.default_rng(1)
    d, k = 300, 40
    values = [subspace_overlap(np.linalg.qr(rng.standard_normal((d, k)))[0],
                               np.linalg.qr(rng.standard_normal((d, k)))[0]).mean_cos2 for _ in range(20)]
    assert abs(np.mean(values) - k / d) < 0.01


def test_frobenius_measure_is_smaller_when_a_span_lost_rank() -> None:
    eye = np.eye(20)
    overlap = subspace_overlap(eye[:, :2], eye[:, :4], k_nominal=4)
    assert overlap.mean_cos2 == 1.0 and overlap.frobenius_over_k == 0.5


def test_least_squares_recovers_a_planted_map_when_n_exceeds_d() -> None:
    rng = np.random.default_rng(2)
    w = rng.standard_normal((10, 12))
    x = rng.standard_normal((200, 10)) + 3.0
    y = x @ w + 1.0 + 0.01 * rng.standard_normal((200, 12))
    fitted = fit_linear_map(x, y)
    np.testing.assert_allclose(fitted.weight, w, atol=0.01)
    x_new = rng.standard_normal((50, 10))
    assert r2_score(fitted, x_new, x_new @ w + 1.0) > 0.99


def test_held_out_r2_exposes_overfitting_when_n_is_below_d() -> None:
    rng = np.random.default_rng(3)
    d, n = 200, 40
    x, y = rng.standard_normal((2 * n, d)), rng.standard_normal((2 * n, d))  # no relation at all
    fitted = fit_linear_map(x[:n], y[:n])
    assert r2_score(fitted, x[:n], y[:n]) > 0.999  # interpolates its own prompts
    assert r2_score(fitted, x[n:], y[n:]) < 0.05  # and predicts nothing new


def test_ridge_cv_picks_a_large_penalty_for_noise_and_a_small_one_for_signal() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((80, 20))
    noise = select_ridge_alpha(x, rng.standard_normal((80, 5)), default_alpha_grid(x), 5, rng)
    signal = select_ridge_alpha(x, x @ rng.standard_normal((20, 5)), default_alpha_grid(x), 5, rng)
    assert noise.alpha > 100 * signal.alpha


def test_procrustes_recovers_a_planted_rotation() -> None:
    rng = np.random.default_rng(5)
    rotation = ortho_group.rvs(16, random_state=6)
    x = rng.standard_normal((100, 16))
    fitted = fit_procrustes(x, x @ rotation + 2.0)
    np.testing.assert_allclose(fitted.weight, rotation, atol=1e-8)


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
    for k in (5, 20):  # 20: close to the ~25 distinct prompts of a draw
        got = resampled_pca_overlaps([xa, xb], rows, k)[(0, 1)]
        want = [subspace_overlap(pca_basis(xa[r], k), pca_basis(xb[r], k)).mean_cos2 for r in rows]
        np.testing.assert_allclose(got, want, atol=1e-8)


def test_vector_cos2_of_random_directions_is_one_over_d() -> None:
    rng = np.random.default_rng(9)
    assert abs(vector_cos2(rng.standard_normal((4000, 256)), rng.standard_normal((4000, 256))).mean() - 1 / 256) < 5e-4


def test_batched_pca_bases_span_what_the_svd_spans() -> None:
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 40, 60)) * np.logspace(0, 3, 60)  # a wide spectrum, as in Pythia's residuals
    x[2, :, :] = x[2, :5, :].repeat(8, axis=0)  # rank 4 after centring: falls back to the SVD
    bases = pca_bases(x, 10)
    assert bases.shape == (3, 60, 10)
    for layer in range(2):
        np.testing.assert_allclose(bases[layer].T @ bases[layer], np.eye(10), atol=1e-8)
        assert subspace_overlap(bases[layer], pca_basis(x[layer], 10)).mean_cos2 > 1 - 1e-8
    np.testing.assert_allclose(bases[2], pca_basis(x[2], 10))


def test_ridge_cv_curve_equals_refitting_every_fold() -> None:
    rng = np.random.default_rng(12)
    x = rng.standard_normal((40, 60)) * np.logspace(0, 2, 60) + 5.0
    y = x[:, :10] @ rng.standard_normal((10, 30)) + 20 * rng.standard_normal((40, 30))
    grid = default_alpha_grid(x, 9)
    selection = select_ridge_alpha(x, y, grid, 4, np.random.default_rng(13))
    folds = np.array_split(np.random.default_rng(13).permutation(40), 4)
    want = []
    for alpha in grid:
        sse = 0.0
        for test in folds:
            train = np.setdiff1d(np.arange(40), test)
            sse += np.sum((fit_linear_map(x[train], y[train], alpha).apply_points(x[test]) - y[test]) ** 2)
        want.append(sse / y.size)
    np.testing.assert_allclose(selection.cv_mse, want, rtol=1e-9)
    assert selection.alpha == grid[int(np.argmin(want))]


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
