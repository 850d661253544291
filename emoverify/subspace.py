"""Subspace geometry (Phase 3.5, 6): overlaps, neutral-space alignment and Procrustes, over arrays.

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

The batched functions (`# [B, ...]` first axis) serve bootstrap and permutation draws. They work in
the n x n Gram space of the prompts, which with n << d is an order of magnitude faster than SVDs of
the n x d data.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.linalg import orthogonal_procrustes
from threadpoolctl import threadpool_limits

from emoverify.errors import EmoverifyError
from emoverify.resampling import draw_counts

__all__ = [
    "LinearMap",
    "RidgeSelection",
    "SubspaceOverlap",
    "batched_map_directions",
    "batched_eigh",
    "batched_procrustes_directions",
    "chance_overlap",
    "default_alpha_grid",
    "fit_linear_map",
    "fit_procrustes",
    "gram_fit_inverse",
    "gram_mapped_cos2",
    "orthonormal_basis",
    "pca_bases",
    "pca_basis",
    "principal_cosines",
    "r2_score",
    "resampled_pca_overlaps",
    "select_ridge_alpha",
    "subspace_overlap",
    "vector_cos2",
]

_RANK_RTOL = 1e-10  # singular values below this fraction of the largest count as zero
_EIGH_MIN_PER_WORKER = 32  # matrices per thread below which splitting a batch costs more than it saves


def batched_eigh(a: np.ndarray, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`np.linalg.eigh` of a batch of symmetric matrices (# [B, n, n]), split across CPU threads.

    LAPACK releases the GIL, so threads run the decompositions in parallel; each runs with one BLAS thread,
    so they do not oversubscribe the cores. The result does not depend on the number of workers (every
    matrix is decomposed alone, single-threaded). On 2 cores, 1,000 matrices of 140 x 140: 0.65 s instead
    of 1.5 s.
    """
    workers = workers or os.cpu_count() or 1
    workers = max(1, min(workers, a.shape[0] // _EIGH_MIN_PER_WORKER)) if a.ndim == 3 else 1
    with threadpool_limits(1):
        if workers == 1:
            return np.linalg.eigh(a)
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(np.linalg.eigh, np.array_split(a, workers)))
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
    return u[:, s > _RANK_RTOL * s[0]]


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
    m x d (13 layers of 210 x 768: ~0.1 s instead of ~0.3 s per model). A set whose k-th eigenvalue is
    numerically zero (rank < k) falls back to the SVD.
    """
    x = np.asarray(x, dtype=np.float64)
    if not 0 < k < x.shape[1]:
        raise EmoverifyError(f"PCA basis of k={k} needs 0 < k < n prompts (n={x.shape[1]})")
    xc = x - x.mean(axis=1, keepdims=True)
    evals, evecs = batched_eigh(xc @ np.swapaxes(xc, -1, -2))  # ascending
    top_vals, top_vecs = evals[:, ::-1][:, :k], evecs[:, :, ::-1][:, :, :k]
    safe = np.maximum(top_vals, np.finfo(float).tiny)
    bases = (np.swapaxes(xc, -1, -2) @ top_vecs) / np.sqrt(safe)[:, None, :]  # [L, d, k]
    for layer in np.flatnonzero(top_vals[:, -1] <= _RANK_RTOL * 1e2 * top_vals[:, 0]):
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
    keep = s > _RANK_RTOL * s[0]
    u, s, vt = u[:, keep], s[keep], vt[keep]
    shrink = s / (s**2 + alpha)  # [r] 1/s when alpha = 0
    weight = (vt.T * shrink) @ (u.T @ (y - y_mean))  # [d_A, d_B]
    return LinearMap(weight=weight, x_mean=x_mean, y_mean=y_mean, alpha=float(alpha), n_fit=x.shape[0])


def fit_procrustes(x: np.ndarray, y: np.ndarray) -> LinearMap:
    """Orthogonal R minimising ||(x - mean) R - (y - mean)||_F (`scipy.linalg.orthogonal_procrustes`).

    With n < d only the part of R between the two fitting spans is determined by the data; the rest
    is whatever completion LAPACK's SVD returns (see `batched_procrustes_directions`).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise EmoverifyError(f"Procrustes needs equal shapes: {x.shape} vs {y.shape}")
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    rotation, _ = orthogonal_procrustes(x - x_mean, y - y_mean)
    return LinearMap(weight=rotation, x_mean=x_mean, y_mean=y_mean, alpha=float("nan"), n_fit=x.shape[0])


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
        shrink = s[None, :] / (s[None, :] ** 2 + alphas[:, None])  # [A, r]
        pred = np.einsum("tr,ar,rb->atb", proj, shrink, uty) + y_mean  # [A, n_test, d_B]
        sse += np.sum((pred - y[test][None]) ** 2, axis=(1, 2))
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


def _pinv_sym(gram: np.ndarray, alpha: float) -> np.ndarray:
    """(G + alpha I)^+ for a batch of symmetric PSD matrices (# [B, n, n])."""
    evals, evecs = batched_eigh(gram)  # [B, n], [B, n, n]
    evals = evals + alpha
    cutoff = _RANK_RTOL * 1e2 * np.max(np.abs(evals), axis=-1, keepdims=True)
    inv = np.divide(1.0, evals, out=np.zeros_like(evals), where=evals > cutoff)
    return (evecs * inv[:, None, :]) @ np.swapaxes(evecs, -1, -2)


def batched_map_directions(x: np.ndarray, y: np.ndarray, v: np.ndarray, alpha: float = 0.0) -> np.ndarray:
    """Fit a min-norm least-squares / ridge map per draw and apply it to directions, in Gram form.

    v W = v X^T (X X^T + alpha I)^+ Y with X, Y centred per draw: same as `fit_linear_map` but only
    n x n matrices are factorised.

    Args:
        x: # [B, n, d_A]
        y: # [B, n, d_B]
        v: directions in A's space. # [B, k, d_A]
        alpha: ridge penalty.

    Returns:
        the mapped directions. # [B, k, d_B]
    """
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    gram = xc @ np.swapaxes(xc, -1, -2)  # [B, n, n]
    coef = (v @ np.swapaxes(xc, -1, -2)) @ _pinv_sym(gram, alpha)  # [B, k, n]
    return coef @ yc


def _centre_axis(a: np.ndarray, axis: int) -> np.ndarray:
    return a - a.mean(axis=axis, keepdims=True)


def gram_fit_inverse(gram: np.ndarray, rows: np.ndarray, alpha: float = 0.0) -> np.ndarray:
    """(X_c X_c^T + alpha I)^+ of each draw's centred fitting prompts, from X X^T (# [N, N]). # [B, n, n]

    What `gram_mapped_cos2` factorises for the source model; compute it once when several target models
    share the source and the draws.
    """
    return _pinv_sym(_double_centred(_gather(gram, rows)), alpha)


def gram_mapped_cos2(
    gram_a: np.ndarray,
    gram_b: np.ndarray,
    rows_a: np.ndarray,
    rows_b: np.ndarray,
    dirs_a: np.ndarray,
    dirs_b: np.ndarray,
    alpha: float = 0.0,
    fit_inverse: np.ndarray | None = None,
) -> np.ndarray:
    """cos^2(v_A W, v_B) per draw, for maps fitted on resampled prompts, from Gram matrices alone.

    The data are N pooled prompts in two models, X_A # [N, d_A] and X_B # [N, d_B], seen only through
    their Gram matrices. Draw b fits the minimum-norm least-squares (or ridge) map W on the centred rows
    `X_A[rows_a[b]]` -> `X_B[rows_b[b]]` (row i of one paired with row i of the other) and applies it to
    directions that are weighted sums of prompts, v_A = dirs_a[b] @ X_A and v_B = dirs_b[b] @ X_B (class
    means, their differences, resampled means). Since v_A W = v_A X_c^T (X_c X_c^T + alpha I)^+ Y_c, every
    product the cosine needs is an entry of G_A or G_B: each draw costs n x N work, nothing in d.
    Equals `vector_cos2(batched_map_directions(X_A[rows_a], X_B[rows_b], dirs_a @ X_A), dirs_b @ X_B)`.

    Args:
        gram_a: X_A X_A^T. # [N, N]
        gram_b: X_B X_B^T. # [N, N]
        rows_a: fitting prompts of each draw in A. # [B, n]
        rows_b: the prompts paired with them in B. # [B, n]
        dirs_a: weights over the N prompts of each direction in A. # [B, k, N]
        dirs_b: the same in B. # [B, k, N]
        alpha: ridge penalty.
        fit_inverse: `gram_fit_inverse(gram_a, rows_a, alpha)` if already computed.

    Returns:
        cos^2 of each mapped direction with its counterpart. # [B, k]
    """
    if fit_inverse is None:
        fit_inverse = gram_fit_inverse(gram_a, rows_a, alpha)
    va_x = dirs_a @ gram_a  # [B, k, N] = v_A X_A^T: one product for every draw, then gathered
    vb_x = dirs_b @ gram_b  # [B, k, N] = v_B X_B^T
    va_xc = _centre_axis(np.take_along_axis(va_x, rows_a[:, None, :], axis=-1), -1)  # [B, k, n] = v_A X_c^T
    vb_yc = _centre_axis(np.take_along_axis(vb_x, rows_b[:, None, :], axis=-1), -1)  # [B, k, n] = v_B Y_c^T
    coef = va_xc @ fit_inverse  # [B, k, n]: v_A W = coef @ Y_c
    ky = _double_centred(_gather(gram_b, rows_b))  # [B, n, n] = Y_c Y_c^T
    dot = np.sum(coef * vb_yc, axis=-1)  # [B, k] = (v_A W) . v_B
    mapped_sq = np.sum((coef @ ky) * coef, axis=-1)  # |v_A W|^2
    vb_sq = np.sum(vb_x * dirs_b, axis=-1)  # |v_B|^2
    den = mapped_sq * vb_sq
    return np.divide(dot**2, den, out=np.zeros_like(dot), where=den > 0)


def _gram_frame(xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal frame of the row space of centred `xc` (# [B, n, d]) from its Gram matrix.

    Returns (E Lambda^{-1/2} masked # [B, n, n], Lambda^{1/2} masked # [B, n]) so that the frame is
    Q = xc^T @ first # [B, d, n], with zero columns where the Gram is rank-deficient.
    """
    evals, evecs = batched_eigh(xc @ np.swapaxes(xc, -1, -2))
    keep = evals > _RANK_RTOL * 1e2 * evals[:, -1:]
    root = np.sqrt(np.where(keep, evals, 0.0))
    inv_root = np.divide(1.0, root, out=np.zeros_like(root), where=keep)
    return evecs * inv_root[:, None, :], root


def batched_procrustes_directions(x: np.ndarray, y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Apply, per draw, the data-determined part of the orthogonal Procrustes map to directions.

    With X = La Qa^T and Y = Lb Qb^T (Qa, Qb orthonormal frames of the fitting spans),
    X^T Y = Qa (La^T Lb) Qb^T; the SVD Uc S Vc^T of the n x n middle gives R_det = Qa Uc Vc^T Qb^T,
    the partial isometry that every Procrustes solution shares. A full orthogonal R adds a map
    between the complements, which the data do not determine; its contribution to a cosine is of
    order 1/(d - n) for a random completion.

    Args:
        x: # [B, n, d]
        y: # [B, n, d]
        v: # [B, k, d]

    Returns:
        v @ R_det # [B, k, d]
    """
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    proj_a, _ = _gram_frame(xc)  # Qa = xc^T proj_a
    proj_b, _ = _gram_frame(yc)
    xt = np.swapaxes(xc, -1, -2)
    la = xc @ (xt @ proj_a)  # [B, n, n]: coordinates of X's rows in Qa
    lb = yc @ (np.swapaxes(yc, -1, -2) @ proj_b)
    uc, s, vct = np.linalg.svd(np.swapaxes(la, -1, -2) @ lb)  # [B, n, n]
    # singular directions with zero singular value pair up arbitrarily: the data do not determine them
    keep = s > _RANK_RTOL * 1e2 * s[:, :1]
    middle = (uc * keep[:, None, :]) @ vct
    v_in_a = (v @ xt) @ proj_a  # [B, k, n] = v Qa
    return (v_in_a @ middle) @ np.swapaxes(proj_b, -1, -2) @ yc


def _double_centred(gram: np.ndarray) -> np.ndarray:
    """H G H with H = I - 11^T/m, over the last two axes: the Gram matrix of mean-centred rows."""
    return (gram - gram.mean(axis=-1, keepdims=True) - gram.mean(axis=-2, keepdims=True)
            + gram.mean(axis=(-1, -2), keepdims=True))


def _gather(gram: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """gram[rows_b][:, rows_b] for every draw b: the Gram matrix of a resample. # [B, m, m]"""
    return gram[rows[:, :, None], rows[:, None, :]]


def _weighted_centred(cross: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(X - 1 mu_X^T)(Y - 1 mu_Y^T)^T from C = X Y^T, with mu the w-weighted means (sum w = 1). # [B, u, u]"""
    cw = cross @ w[..., None]  # [B, u, 1] = X mu_Y
    wc = w[:, None, :] @ cross  # [B, 1, u] = mu_X^T Y^T
    out = cross - cw  # one new array, then in place
    out -= wc - wc @ w[..., None]
    return out


def resampled_pca_overlaps(xs: list[np.ndarray], rows: np.ndarray, k: int, chunk: int = 100,
                           ) -> dict[tuple[int, int], np.ndarray]:
    """Mean cos^2 of principal angles between top-k PCA spans, for every pair of models and every resample.

    A resample of prompts (rows, with repeats) is a weighting of its distinct prompts: prompt i drawn c_i
    times contributes c_i (x_i - mu)(x_i - mu)^T to the scatter matrix, mu the c-weighted mean. So each draw
    needs only the Gram matrices X_a X_b^T of the full data, reindexed to its u distinct prompts (about
    63% of m), scaled by sqrt(c), and one u x u eigendecomposition per model: no work in d dimensions.
    Draws are processed in chunks of similar u, so little is padded.

    Args:
        xs: each model's residuals of the same prompts in the same order. # [m, d] each
        rows: the prompts of each draw. # [B, m]
        k: subspace dimension.
        chunk: draws per batched eigendecomposition (bounds memory: chunk x u x u floats per model).

    Returns:
        (i, j) -> overlap per draw, for i < j. # [B]
    """
    xs = [np.asarray(x, dtype=np.float64) for x in xs]
    m = xs[0].shape[0]
    grams = {(i, j): xs[i] @ xs[j].T for i in range(len(xs)) for j in range(i, len(xs))}  # [m, m]
    all_counts = draw_counts(rows, m)  # [B, m]
    order = np.argsort((all_counts > 0).sum(axis=1), kind="stable")  # by number of distinct prompts
    out = {pair: np.empty(rows.shape[0]) for pair in grams if pair[0] < pair[1]}
    for start in range(0, rows.shape[0], chunk):
        draws = order[start:start + chunk]
        # Each draw's distinct prompts first, padded with zero counts to the chunk's largest number.
        u = int((all_counts[draws] > 0).sum(axis=1).max())
        index = np.argsort(-all_counts[draws], axis=1, kind="stable")[:, :u]  # [b, u]
        counts = np.take_along_axis(all_counts[draws], index, axis=1)
        w = counts / counts.sum(axis=1, keepdims=True)
        root = np.sqrt(counts)

        def scatter_gram(cross: np.ndarray, index=index, w=w, root=root) -> np.ndarray:
            """D^1/2 (weighted-centred cross Gram of the distinct prompts) D^1/2. # [b, u, u]"""
            return root[:, :, None] * _weighted_centred(_gather(cross, index), w) * root[:, None, :]

        frames = []
        for i in range(len(xs)):
            evals, evecs = batched_eigh(scatter_gram(grams[(i, i)]))  # ascending; padded prompts give zeros
            top = np.clip(evals[:, -k:], _RANK_RTOL * evals[:, -1:], None)  # [b, k]
            frames.append(evecs[:, :, -k:] / np.sqrt(top)[:, None, :])  # Q = Y^T frame, orthonormal
        for i, j in out:
            qtq = np.swapaxes(frames[i], -1, -2) @ scatter_gram(grams[(i, j)]) @ frames[j]  # [b, k, k]
            out[(i, j)][draws] = np.sum(qtq**2, axis=(1, 2)) / k
    return out
