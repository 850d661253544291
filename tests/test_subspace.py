"""Known answers for subspace overlaps, least-squares / ridge maps and Procrustes (the textbook forms)."""

from __future__ import annotations

import numpy as np
from scipy.stats import ortho_group

from emoverify.analysis.subspace import (
    default_alpha_grid,
    fit_linear_map,
    fit_procrustes,
    orthonormal_basis,
    pca_bases,
    pca_basis,
    r2_score,
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
