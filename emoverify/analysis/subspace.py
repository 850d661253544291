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
from dataclasses import dataclass, replace

import numpy as np
from scipy.linalg import orthogonal_procrustes

from emoverify.analysis.resampling import draw_counts
from emoverify.analysis.threads import one_blas_thread, thread_map
from emoverify.errors import EmoverifyError

__all__ = [
    "GramFit",
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
    "gram_fit",
    "gram_mapped_cos2",
    "orthonormal_basis",
    "pca_bases",
    "pca_basis",
    "principal_cosines",
    "procrustes_completions",
    "r2_score",
    "reverse_procrustes",
    "resampled_pca_overlaps",
    "select_ridge_alpha",
    "subspace_overlap",
    "vector_cos2",
]

_RANK_RTOL = 1e-10  # singular values below this fraction of the largest count as zero
_EIGH_MIN_PER_WORKER = 32  # matrices per thread below which splitting a batch costs more than it saves


def batched_eigh(a: np.ndarray, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`np.linalg.eigh` of a batch of symmetric matrices (# [B, n, n]), split across CPU threads.

    See `emoverify.analysis.threads`: the result does not depend on the number of workers (every matrix is
    decomposed alone, single-threaded). On 2 cores, 3,000 matrices of ~133 x 133: ~2.3 s instead of ~3.5 s.
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
    is whatever completion LAPACK's SVD returns (see `batched_procrustes_directions` for the determined
    part, `procrustes_completions` for how much the rest can move a figure). That completion changes with
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


@dataclass(frozen=True)
class GramFit:
    """A batch of least-squares maps fitted in Gram space, ready to apply (`gram_fit`, `gram_mapped_cos2`).

    Every fit is written as W = (C X)^T M (C Y): C # [s, n] combines the draw's fitting rows into contrasts
    (combinations whose coefficients sum to zero, so the intercept drops out) and M is the inverse of their
    Gram matrix. Two forms:

    - `contrast` (least squares, distinct consistent rows, full rank): C_i = row(slot_i) - row(ref) over the
      draw's distinct rows, M = (C K C^T)^{-1}, applied by solving with the s x s positive definite matrix
      (checked by a Cholesky factorisation). A minimum-norm exact fit depends only on which distinct pairs
      it interpolates, so repeats (a bootstrap draw) change nothing.
    - `centred` (ridge, rank-deficient or inconsistent rows): C = I - 11^T/n over all n rows, M = the
      eigendecomposition-based pseudo-inverse of (C K C^T + alpha I) with small eigenvalues cut.

    Attributes:
        slots: positions in the draw's rows that the contrasts use. # [B, s]
        ref: position of the reference row (`contrast` form), None for `centred`. # [B]
        mask: which slots are real; padding slots (draws with fewer distinct rows) are False. # [B, s]
        matrix: C K C^T (`contrast`, solved with) or M (`centred`, multiplied by). # [B, s, s]
        keyed_rows: position of the first row with the same prompt, per position (`contrast`): the map is
            only the same for a target whose rows repeat where these do. # [B, n]
    """

    slots: np.ndarray
    ref: np.ndarray | None
    mask: np.ndarray
    matrix: np.ndarray
    keyed_rows: np.ndarray | None

    @property
    def form(self) -> str:
        return "centred" if self.ref is None else "contrast"

    def times_m(self, rhs: np.ndarray) -> np.ndarray:
        """rhs @ M for rhs # [B, k, s]."""
        if self.ref is None:
            return rhs @ self.matrix
        return np.swapaxes(np.linalg.solve(self.matrix, np.swapaxes(rhs, -1, -2)), -1, -2)

    def consistent_with(self, rows_b: np.ndarray) -> bool:
        """Whether target rows repeat wherever the source rows do (else the fit is not an exact one)."""
        if self.keyed_rows is None:
            return True
        return bool(np.all(np.take_along_axis(rows_b, self.keyed_rows, axis=1) == rows_b))

    def contrast(self, values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """C applied to per-prompt values: values # [B, k, N] (one per pooled prompt) -> # [B, k, s]."""
        prompts = np.take_along_axis(rows, self.slots, axis=1)  # [B, s]
        picked = np.take_along_axis(values, prompts[:, None, :], axis=-1)
        if self.ref is None:
            return picked - picked.mean(axis=-1, keepdims=True)
        base = np.take_along_axis(values, rows[np.arange(len(rows)), self.ref][:, None, None], axis=-1)
        return (picked - base) * self.mask[:, None, :]

    def contrast_gram(self, gram: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """C K C^T from the pooled Gram matrix K # [N, N], with the identity on padding slots. # [B, s, s]"""
        prompts = np.take_along_axis(rows, self.slots, axis=1)  # [B, s]
        picked = _gather(gram, prompts)
        if self.ref is None:
            return _double_centred(picked)
        ref = rows[np.arange(len(rows)), self.ref]  # [B]
        cross = gram[prompts, ref[:, None]]  # [B, s] = K[slot, ref]
        picked -= cross[:, :, None]  # in place: `picked` is a fresh gather
        picked -= cross[:, None, :]
        picked += gram[ref, ref][:, None, None]
        return picked if self.mask.all() else _pad_identity(picked, self.mask)


def _pad_identity(k: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero the padding rows and columns and put the draw's largest diagonal entry on their diagonal."""
    out = k * (mask[:, :, None] & mask[:, None, :])
    scale = np.max(np.diagonal(out, axis1=-2, axis2=-1), axis=-1, keepdims=True)  # [B, 1]
    diag = np.einsum("bii->bi", out)  # a writable view of the diagonal
    diag += np.where(mask, 0.0, np.maximum(scale, 1.0))
    return out


def _first_positions(rows: np.ndarray) -> np.ndarray:
    """For each position, the first position in its draw holding the same prompt. # [B, n]"""
    order = np.argsort(rows, axis=1, kind="stable")
    ranked = np.take_along_axis(rows, order, axis=1)
    starts = np.ones_like(ranked, dtype=bool)
    starts[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    # index (in sorted order) of the start of each run, carried forward; the first member is the smallest position
    run_start = np.maximum.accumulate(np.where(starts, np.arange(rows.shape[1]), 0), axis=1)
    first_sorted = np.take_along_axis(order, run_start, axis=1)
    out = np.empty_like(rows)
    np.put_along_axis(out, order, first_sorted, axis=1)
    return out


def _contrast_fit(gram: np.ndarray, rows: np.ndarray) -> GramFit | None:
    """The `contrast` form of a least-squares fit, or None where a draw's contrasts are not of full rank."""
    first = _first_positions(rows)  # [B, n]
    distinct = first == np.arange(rows.shape[1])  # [B, n]: first occurrences
    count = distinct.sum(axis=1)  # [B]
    # positions of each draw's distinct rows, in order, padded with position 0; the first is the reference
    order = np.argsort(~distinct, axis=1, kind="stable")  # distinct positions first
    width = int(count.max()) - 1
    if width < 1:
        return None
    ref, slots = order[:, 0], order[:, 1:width + 1]
    mask = np.arange(1, width + 1)[None, :] < count[:, None]  # [B, s]
    slots = np.where(mask, slots, 0)
    unfitted = GramFit(slots=slots, ref=ref, mask=mask, matrix=np.empty(0), keyed_rows=first)
    k = unfitted.contrast_gram(gram, rows)  # [B, s, s]
    try:
        chol = np.linalg.cholesky(k)
    except np.linalg.LinAlgError:
        return None
    pivots = np.diagonal(chol, axis1=-2, axis2=-1) ** 2  # each >= the smallest eigenvalue
    largest = np.max(np.diagonal(k, axis1=-2, axis2=-1), axis=-1)
    if np.any(pivots.min(axis=-1) <= _RANK_RTOL * 1e2 * largest):
        return None
    return replace(unfitted, matrix=k)


def gram_fit(gram: np.ndarray, rows: np.ndarray, alpha: float = 0.0) -> GramFit:
    """Fit a least-squares (alpha = 0, minimum-norm) or ridge map on each draw's rows, from X X^T # [N, N].

    What `gram_mapped_cos2` needs of the source model; compute it once when several target models share
    the source and the draws. Least squares on distinct rows of full rank (the usual case with n < d)
    takes the `contrast` form: a Cholesky-checked s x s solve, ~10x cheaper than an eigendecomposition.
    Otherwise, and for ridge, the `centred` form (see `GramFit`).

    Args:
        gram: X X^T of the pooled prompts; for precision, centre X first where the directions are
            contrasts (the analyses' are: differences of means). # [N, N]
        rows: fitting prompts of each draw. # [B, n]
        alpha: ridge penalty.
    """
    if alpha == 0.0:
        fit = _contrast_fit(gram, rows)
        if fit is not None:
            return fit
    return _centred_fit(gram, rows, alpha)


def _centred_fit(gram: np.ndarray, rows: np.ndarray, alpha: float) -> GramFit:
    """The `centred` form: every row, centred, and a cut pseudo-inverse (see `GramFit`)."""
    slots = np.broadcast_to(np.arange(rows.shape[1]), rows.shape)
    mask = np.ones(rows.shape, dtype=bool)
    unfitted = GramFit(slots=slots, ref=None, mask=mask, matrix=np.empty(0), keyed_rows=None)
    return replace(unfitted, matrix=_pinv_sym(unfitted.contrast_gram(gram, rows), alpha))


def gram_mapped_cos2(
    gram_a: np.ndarray,
    gram_b: np.ndarray,
    rows_a: np.ndarray,
    rows_b: np.ndarray,
    dirs_a: np.ndarray,
    dirs_b: np.ndarray,
    alpha: float = 0.0,
    fit: GramFit | None = None,
) -> np.ndarray:
    """cos^2(v_A W, v_B) per draw, for maps fitted on resampled prompts, from Gram matrices alone.

    The data are N pooled prompts in two models, X_A # [N, d_A] and X_B # [N, d_B], seen only through
    their Gram matrices. Draw b fits the minimum-norm least-squares (or ridge) map W on the centred rows
    `X_A[rows_a[b]]` -> `X_B[rows_b[b]]` (row i of one paired with row i of the other) and applies it to
    directions that are weighted sums of prompts, v_A = dirs_a[b] @ X_A and v_B = dirs_b[b] @ X_B (class
    means, their differences, resampled means). With W = (C X_A)^T M (C X_B) (`GramFit`), every product
    the cosine needs is an entry of G_A or G_B: each draw costs n x N work, nothing in d.
    Equals `vector_cos2(batched_map_directions(X_A[rows_a], X_B[rows_b], dirs_a @ X_A), dirs_b @ X_B)`.

    Args:
        gram_a: X_A X_A^T. # [N, N]
        gram_b: X_B X_B^T. # [N, N]
        rows_a: fitting prompts of each draw in A. # [B, n]
        rows_b: the prompts paired with them in B. # [B, n]
        dirs_a: weights over the N prompts of each direction in A. # [B, k, N]
        dirs_b: the same in B. # [B, k, N]
        alpha: ridge penalty.
        fit: `gram_fit(gram_a, rows_a, alpha)` if already computed; refitted in the `centred` form if
            `rows_b` does not repeat where `rows_a` does (then the fit is a least-squares compromise).

    Returns:
        cos^2 of each mapped direction with its counterpart. # [B, k]
    """
    if fit is None:
        fit = gram_fit(gram_a, rows_a, alpha)
    if not fit.consistent_with(rows_b):
        fit = _centred_fit(gram_a, rows_a, alpha)
    va_x = _times_gram(dirs_a, gram_a)  # [B, k, N] = v_A X_A^T: one product for every draw, then gathered
    vb_x = _times_gram(dirs_b, gram_b)  # [B, k, N] = v_B X_B^T
    coef = fit.times_m(fit.contrast(va_x, rows_a))  # [B, k, s]: v_A W = coef @ (C X_B)
    vb_c = fit.contrast(vb_x, rows_b)  # [B, k, s] = v_B (C X_B)^T
    ky = fit.contrast_gram(gram_b, rows_b)  # [B, s, s]
    dot = np.sum(coef * vb_c, axis=-1)  # [B, k] = (v_A W) . v_B
    mapped_sq = np.sum((coef @ ky) * coef, axis=-1)  # |v_A W|^2
    vb_sq = np.sum(vb_x * dirs_b, axis=-1)  # |v_B|^2
    den = mapped_sq * vb_sq
    return np.divide(dot**2, den, out=np.zeros_like(dot), where=den > 0)


def _times_gram(dirs: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """dirs @ gram for dirs # [B, k, N]: one matrix product over all B*k rows (not B small ones)."""
    return (np.ascontiguousarray(dirs).reshape(-1, dirs.shape[-1]) @ gram).reshape(dirs.shape)


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


def procrustes_completions(x: np.ndarray, y: np.ndarray, v: np.ndarray, n_draws: int,
                           rng: np.random.Generator) -> np.ndarray:
    """v R for orthogonal Procrustes solutions R that differ only where the data leave R free.

    Every solution is R = R_det + R_c: R_det (`batched_procrustes_directions`) maps A's fitting span onto
    B's, and R_c is any isometry between their orthogonal complements (dimension d - rank when n < d).
    Drawing R_c uniformly (Haar), the complement parts of the rows of `v` keep their Gram matrix and land
    on a uniformly random orthonormal frame of B's complement. A figure computed from scipy's R is one
    draw from this set, picked by LAPACK; its spread over the draws is how much that choice can move it.

    Args:
        x: A's fitting rows. # [n, d]
        y: B's, paired. # [n, d]
        v: directions in A's space. # [k, d]
        n_draws: completions to draw.

    Returns:
        # [n_draws, k, d]
    """
    x, y, v = (np.asarray(a, dtype=np.float64) for a in (x, y, v))
    det = batched_procrustes_directions(x[None], y[None], v[None])[0]  # [k, d]
    qa = orthonormal_basis(x - x.mean(axis=0))  # [d, r]
    qb = orthonormal_basis(y - y.mean(axis=0))
    v_free = v - (v @ qa) @ qa.T  # [k, d]: what R_det does not map
    if qa.shape[1] >= v.shape[1] or not np.any(v_free):
        return np.broadcast_to(det, (n_draws, *det.shape)).copy()
    span = orthonormal_basis(v_free)  # [d, m]
    coords = v_free @ span  # [k, m]
    z = rng.standard_normal((n_draws, v.shape[1], span.shape[1]))  # [n_draws, d, m]
    z -= qb @ (qb.T @ z)  # into B's complement
    frame = np.linalg.qr(z)[0]  # [n_draws, d, m] uniformly random orthonormal frames of the complement
    return det[None] + coords[None] @ np.swapaxes(frame, -1, -2)


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


def resampled_pca_overlaps(xs: list[np.ndarray], rows: np.ndarray, k: int, chunk: int = 25,
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
        chunk: draws per batched eigendecomposition; chunks run on CPU threads. Small chunks keep the
            temporaries (chunk x u x u floats) in cache: their gathers and centring run ~2x faster at 25
            than at 100 on the 2-core VM.

    Returns:
        (i, j) -> overlap per draw, for i < j. # [B]
    """
    xs = [np.asarray(x, dtype=np.float64) for x in xs]
    m = xs[0].shape[0]
    grams = {(i, j): xs[i] @ xs[j].T for i in range(len(xs)) for j in range(i, len(xs))}  # [m, m]
    all_counts = draw_counts(rows, m)  # [B, m]
    order = np.argsort((all_counts > 0).sum(axis=1), kind="stable")  # by number of distinct prompts
    pairs = [pair for pair in grams if pair[0] < pair[1]]

    def overlaps(draws: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
        # Each draw's distinct prompts first, padded with zero counts to the chunk's largest number.
        u = int((all_counts[draws] > 0).sum(axis=1).max())
        index = np.argsort(-all_counts[draws], axis=1, kind="stable")[:, :u]  # [b, u]
        counts = np.take_along_axis(all_counts[draws], index, axis=1)
        w = counts / counts.sum(axis=1, keepdims=True)
        root = np.sqrt(counts)

        # Model i's frame: Q_i = Y_i^T H_w^T D^1/2 E_i Lambda_i^-1/2 (E, Lambda: top eigenpairs of its scatter
        # Gram). E is orthogonal to the scatter Gram's null vector sqrt(c), so H_w^T D^1/2 E = D^1/2 E and
        # Q_i^T Q_j = frame_i^T (Y_i Y_j^T) frame_j with frame = D^1/2 E Lambda^-1/2: the cross Gram matrices
        # are used raw, with no centring.
        frames = []
        for i in range(len(xs)):
            scatter = _weighted_centred(_gather(grams[(i, i)], index), w)  # [b, u, u]
            scatter *= root[:, :, None]
            scatter *= root[:, None, :]
            evals, evecs = batched_eigh(scatter)  # ascending; padded prompts give zeros
            top = np.clip(evals[:, -k:], _RANK_RTOL * evals[:, -1:], None)  # [b, k]
            frames.append(evecs[:, :, -k:] * (root[:, :, None] / np.sqrt(top)[:, None, :]))  # [b, u, k]
        return {(i, j): np.sum((np.swapaxes(frames[i], -1, -2) @ _gather(grams[(i, j)], index) @ frames[j]) ** 2,
                               axis=(1, 2)) / k for i, j in pairs}  # ||Q_i^T Q_j||_F^2 / k per draw

    chunks = [order[start:start + chunk] for start in range(0, rows.shape[0], chunk)]
    out = {pair: np.empty(rows.shape[0]) for pair in pairs}
    for draws, by_pair in zip(chunks, thread_map(overlaps, chunks), strict=True):  # chunks on CPU threads
        for pair, values in by_pair.items():
            out[pair][draws] = values
    return out
