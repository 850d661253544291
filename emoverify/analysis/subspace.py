"""Subspace geometry (Phase 3.5, 6): bases, overlaps, least-squares, ridge and Procrustes maps, over arrays.

The textbook forms, one fit or one pair of bases at a time: the plain references that the resampling
engines (`emoverify.analysis.gram`, `emoverify.analysis.procrustes`) are tested against.

Conventions. Residuals are rows: `x` is `# [n, d]`. A subspace is an orthonormal basis `Q # [d, k]`.
A map from model A's residual space to model B's is a matrix `W # [d_A, d_B]` acting on row vectors
(`x @ W`), fitted on centred residuals, so it is affine on points and linear on directions; emotion
vectors are differences of means, so the intercept never touches them.

Measures (`SubspaceOverlap`):

- `mean_cos2`: the mean of cos^2 of the principal angles between the two spans, over the
  `min(k_A, k_B)` angles; 1 for identical spans, 0 for orthogonal ones.
- `frobenius_over_k`: ||Q_A^T Q_B||_F^2 / k with the nominal `k` the caller asked for. It equals
  `mean_cos2` when both spans have the nominal dimension; it is smaller when a span lost rank
  (a map fitted on n < k prompts has rank < k, and maps a k-dim basis onto fewer dimensions).
- chance: two uniformly random subspaces of dims k_A <= k_B in d dims have E||Q_A^T Q_B||_F^2 =
  k_A k_B / d, so mean cos^2 over k_A angles is k_B / d; for two random directions, 1 / d.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy.linalg import orthogonal_procrustes

from emoverify.analysis.threads import one_blas_thread, thread_map
from emoverify.errors import EmoverifyError

__all__ = [
    "RANK_RTOL",
    "LinearMap",
    "RidgeSelection",
    "SubspaceOverlap",
    "batched_eigh",
    "chance_overlap",
    "default_alpha_grid",
    "fit_linear_map",
    "fit_procrustes",
    "orthonormal_basis",
    "pca_bases",
    "pca_basis",
    "principal_cosines",
    "r2_score",
    "reverse_procrustes",
    "select_ridge_alpha",
    "subspace_overlap",
    "vector_cos2",
]

RANK_RTOL = 1e-10  # singular values below this fraction of the largest count as zero
_EIGH_MIN_PER_WORKER = 32  # matrices per thread below which splitting a batch costs more than it saves


def batched_eigh(a: np.ndarray, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`np.linalg.eigh` of a batch of symmetric matrices (# [B, n, n]), split across CPU threads.

    See `emoverify.analysis.threads`: the result does not depend on the number of workers (every matrix is
    decomposed alone, single-threaded).
    """
    workers = workers or os.cpu_count() or 1
    workers = max(1, min(workers, a.shape[0] // _EIGH_MIN_PER_WORKER)) if a.ndim == 3 else 1
    parts = thread_map(np.linalg.eigh, np.array_split(a, workers) if workers > 1 else [a], workers)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@dataclass(frozen=True)
class SubspaceOverlap:
    """Overlap of two subspaces under both measures, with the chance level for their dimensions."""

    mean_cos2: float
    frobenius_over_k: float
    k_a: int
    k_b: int
    k_nominal: int
    chance: float

    def to_json(self) -> dict[str, float | int]:
        return {key: (round(val, 6) if isinstance(val, float) else val) for key, val in self.__dict__.items()}


@dataclass(frozen=True)
class LinearMap:
    """x -> (x - x_mean) @ weight + y_mean; directions map by `@ weight` alone.

    Attributes:
        weight: # [d_A, d_B]
        x_mean: # [d_A]
        y_mean: # [d_B]
        alpha: ridge penalty (0: minimum-norm least squares; nan: Procrustes).
        n_fit: number of prompts the map was fitted on.
    """

    weight: np.ndarray
    x_mean: np.ndarray
    y_mean: np.ndarray
    alpha: float
    n_fit: int

    def apply_points(self, x: np.ndarray) -> np.ndarray:
        return (x - self.x_mean) @ self.weight + self.y_mean

    def apply_directions(self, v: np.ndarray) -> np.ndarray:
        return v @ self.weight


@dataclass(frozen=True)
class RidgeSelection:
    """The ridge penalty chosen by k-fold cross-validation and the curve it was chosen from."""

    alpha: float
    alphas: tuple[float, ...]
    cv_mse: tuple[float, ...]
    n_folds: int


def orthonormal_basis(vectors: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the span of the rows of `vectors` (# [k, d]) -> # [d, rank]."""
    u, s, _ = np.linalg.svd(np.asarray(vectors, dtype=np.float64).T, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        raise EmoverifyError("cannot span a subspace with only zero vectors")
    return u[:, s > RANK_RTOL * s[0]]


def pca_basis(x: np.ndarray, k: int) -> np.ndarray:
    """Top-k principal directions of the rows of `x` (# [n, d]), centred on their mean -> # [d, k]."""
    x = np.asarray(x, dtype=np.float64)
    if not 0 < k < x.shape[0]:
        raise EmoverifyError(f"PCA basis of k={k} needs 0 < k < n prompts (n={x.shape[0]})")
    _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    return vt[:k].T


def pca_bases(x: np.ndarray, k: int) -> np.ndarray:
    """`pca_basis` of a stack of data sets at once (# [L, m, d] -> # [L, d, k], largest first).

    From the m x m Gram matrices of the centred rows: one batched eigendecomposition instead of L SVDs of
    m x d, cheaper when m < d. A set whose k-th eigenvalue is numerically zero (rank < k) falls back to the SVD.
    """
    x = np.asarray(x, dtype=np.float64)
    if not 0 < k < x.shape[1]:
        raise EmoverifyError(f"PCA basis of k={k} needs 0 < k < n prompts (n={x.shape[1]})")
    xc = x - x.mean(axis=1, keepdims=True)
    evals, evecs = batched_eigh(xc @ np.swapaxes(xc, -1, -2))  # ascending
    top_vals, top_vecs = evals[:, ::-1][:, :k], evecs[:, :, ::-1][:, :, :k]
    safe = np.maximum(top_vals, np.finfo(float).tiny)
    bases = (np.swapaxes(xc, -1, -2) @ top_vecs) / np.sqrt(safe)[:, None, :]  # [L, d, k]
    for layer in np.flatnonzero(top_vals[:, -1] <= RANK_RTOL * 1e2 * top_vals[:, 0]):
        bases[layer] = pca_basis(x[layer], k)
    return bases


def principal_cosines(q_a: np.ndarray, q_b: np.ndarray) -> np.ndarray:
    """Cosines of the principal angles between two spans (# [d, k_A], # [d, k_B]) -> # [min(k_A, k_B)]."""
    if q_a.shape[0] != q_b.shape[0]:
        raise EmoverifyError(f"bases live in different spaces: d={q_a.shape[0]} vs d={q_b.shape[0]}")
    return np.clip(np.linalg.svd(q_a.T @ q_b, compute_uv=False), 0.0, 1.0)


def chance_overlap(k_a: int, k_b: int, d: int) -> float:
    """Expected mean cos^2 of principal angles between random k_A- and k_B-dim subspaces of R^d."""
    return max(k_a, k_b) / d


def subspace_overlap(q_a: np.ndarray, q_b: np.ndarray, k_nominal: int | None = None) -> SubspaceOverlap:
    """Both overlap measures of two orthonormal bases (see the module docstring)."""
    cos = principal_cosines(q_a, q_b)
    k_a, k_b = q_a.shape[1], q_b.shape[1]
    k = k_nominal if k_nominal is not None else max(k_a, k_b)
    frob = float(np.sum((q_a.T @ q_b) ** 2)) / k
    return SubspaceOverlap(
        mean_cos2=float(np.mean(cos**2)),
        frobenius_over_k=frob,
        k_a=k_a,
        k_b=k_b,
        k_nominal=k,
        chance=chance_overlap(k, k, q_a.shape[0]),
    )


def vector_cos2(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """cos^2 between matching rows of `u` and `v` (# [..., k, d]) -> # [..., k]."""
    num = np.sum(u * v, axis=-1) ** 2
    den = np.sum(u * u, axis=-1) * np.sum(v * v, axis=-1)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def fit_linear_map(x: np.ndarray, y: np.ndarray, alpha: float = 0.0) -> LinearMap:
    """Least-squares (alpha = 0: minimum-norm) or ridge map from centred `x` to centred `y`.

    Args:
        x: model A's residuals of the fitting prompts. # [n, d_A]
        y: model B's residuals of the same prompts, same order. # [n, d_B]
        alpha: ridge penalty on ||W||_F^2.

    With n <= d_A the unpenalised problem has infinitely many exact solutions; the minimum-norm one
    is returned, which fits the fitting prompts exactly, whatever they are.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape[0] != y.shape[0]:
        raise EmoverifyError(f"a map needs the same prompts on both sides: {x.shape[0]} vs {y.shape[0]}")
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
    keep = s > RANK_RTOL * s[0]
    u, s, vt = u[:, keep], s[keep], vt[keep]
    shrink = s / (s**2 + alpha)  # [r] 1/s when alpha = 0
    weight = (vt.T * shrink) @ (u.T @ (y - y_mean))  # [d_A, d_B]
    return LinearMap(weight=weight, x_mean=x_mean, y_mean=y_mean, alpha=float(alpha), n_fit=x.shape[0])


def fit_procrustes(x: np.ndarray, y: np.ndarray) -> LinearMap:
    """Orthogonal R minimising ||(x - mean) R - (y - mean)||_F (`scipy.linalg.orthogonal_procrustes`).

    With n < d only the part of R between the two fitting spans is determined by the data; the rest
    is whatever completion LAPACK's SVD returns (see `emoverify.analysis.procrustes` for the determined
    part and for how much the rest can move a figure). That completion changes with
    the number of BLAS threads, so the SVD runs on one: the same answer on every run and machine with
    the same numpy/scipy builds.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise EmoverifyError(f"Procrustes needs equal shapes: {x.shape} vs {y.shape}")
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    with one_blas_thread():
        rotation, _ = orthogonal_procrustes(x - x_mean, y - y_mean)
    return LinearMap(weight=rotation, x_mean=x_mean, y_mean=y_mean, alpha=float("nan"), n_fit=x.shape[0])


def reverse_procrustes(fitted: LinearMap) -> LinearMap:
    """The Procrustes map of the reverse problem (B -> A) from the forward one's: R^T.

    ||X R - Y||_F = ||(X R - Y) R^T||_F = ||X - Y R^T||_F for orthogonal R, so R^T minimises the reverse
    problem exactly when R minimises the forward one. With n < d it may differ from what a fresh
    `orthogonal_procrustes(Y, X)` returns outside the fitting spans, where the data determine nothing.
    """
    return LinearMap(weight=fitted.weight.T, x_mean=fitted.y_mean, y_mean=fitted.x_mean, alpha=fitted.alpha,
                     n_fit=fitted.n_fit)


def r2_score(fitted: LinearMap, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of the variance of `y` (around its own mean) that the map predicts from `x`."""
    resid = y - fitted.apply_points(x)
    total = y - y.mean(axis=0)
    return 1.0 - float(np.sum(resid**2) / np.sum(total**2))


def select_ridge_alpha(
    x: np.ndarray, y: np.ndarray, alphas: np.ndarray, n_folds: int, rng: np.random.Generator
) -> RidgeSelection:
    """Ridge penalty with the least k-fold cross-validated squared error of predicting `y` from `x`.

    Every alpha is scored from one SVD per fold. The penalty is on the scale of the centred data's
    squared singular values, so the grid should span those (see `default_alpha_grid`).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    alphas = np.asarray(alphas, dtype=np.float64)
    folds = np.array_split(rng.permutation(x.shape[0]), n_folds)
    sse = np.zeros(alphas.size)
    for test in folds:
        train = np.setdiff1d(np.arange(x.shape[0]), test)
        x_mean, y_mean = x[train].mean(axis=0), y[train].mean(axis=0)
        u, s, vt = np.linalg.svd(x[train] - x_mean, full_matrices=False)
        uty = u.T @ (y[train] - y_mean)  # [r, d_B]
        proj = (x[test] - x_mean) @ vt.T  # [n_test, r]
        target = y[test] - y_mean  # [n_test, d_B]
        shrink = s[None, :] / (s[None, :] ** 2 + alphas[:, None])  # [A, r]
        # ||proj diag(shrink) uty - target||^2 per alpha, from r x r products (nothing of size A x d_B):
        # shrink^T ((proj^T proj) * (uty uty^T)) shrink - 2 shrink . diag(proj^T target uty^T) + ||target||^2
        quad = (proj.T @ proj) * (uty @ uty.T)  # [r, r]
        lin = np.sum(proj * (target @ uty.T), axis=0)  # [r]
        sse += np.einsum("ar,rq,aq->a", shrink, quad, shrink) - 2 * shrink @ lin + np.sum(target**2)
    mse = sse / (x.shape[0] * y.shape[1])
    return RidgeSelection(
        alpha=float(alphas[int(np.argmin(mse))]),
        alphas=tuple(float(a) for a in alphas),
        cv_mse=tuple(float(m) for m in mse),
        n_folds=n_folds,
    )


def default_alpha_grid(x: np.ndarray, n: int = 25) -> np.ndarray:
    """Log grid of ridge penalties from 1e-6 to 1e2 times the total variance of the centred `x`."""
    scale = float(np.sum((x - x.mean(axis=0)) ** 2))
    return scale * np.logspace(-6, 2, n)

