"""Least-squares maps and PCA spans of resampled prompts, computed in the prompts' Gram space.

The bootstrap and permutation controls of SUB-1 and SUB-2 refit a map, or redo a PCA, for every one of a
thousand draws of prompts. With n prompts per fit and n << d, everything a cosine or an overlap needs is a
product of the prompts' n x n Gram matrices: each draw costs work in n, nothing in d, and the batch of
draws is one array operation (`# [B, ...]` first axis).

- `gram_fit` / `gram_mapped_cos2`: cos^2 between directions mapped by a least-squares (or ridge) map
  fitted per draw and their counterparts; `batched_map_directions` is the same fit applied in d
  dimensions (the form the tests hold it to, beside `subspace.fit_linear_map`).
- `resampled_pca_overlaps`: the overlap of every pair of models' top-k PCA spans, per resample; the
  tests hold it to `subspace.pca_basis` and `subspace.subspace_overlap`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from emoverify.analysis.subspace import RANK_RTOL, batched_eigh
from emoverify.analysis.threads import thread_map
from emoverify.errors import EmoverifyError

__all__ = [
    "GramFit",
    "batched_map_directions",
    "gram_fit",
    "gram_mapped_cos2",
    "resampled_pca_overlaps",
]


def _pinv_sym(gram: np.ndarray, alpha: float) -> np.ndarray:
    """(G + alpha I)^+ for a batch of symmetric PSD matrices (# [B, n, n])."""
    evals, evecs = batched_eigh(gram)  # [B, n], [B, n, n]
    evals = evals + alpha
    cutoff = RANK_RTOL * 1e2 * np.max(np.abs(evals), axis=-1, keepdims=True)
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
    if np.any(pivots.min(axis=-1) <= RANK_RTOL * 1e2 * largest):
        return None
    return replace(unfitted, matrix=k)


def gram_fit(gram: np.ndarray, rows: np.ndarray, alpha: float = 0.0) -> GramFit:
    """Fit a least-squares (alpha = 0, minimum-norm) or ridge map on each draw's rows, from X X^T # [N, N].

    What `gram_mapped_cos2` needs of the source model; compute it once when several target models share
    the source and the draws. Least squares on distinct rows of full rank (the usual case with n < d)
    takes the `contrast` form: a Cholesky-checked s x s solve, cheaper than an eigendecomposition.
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


def resampled_pca_overlaps(xs: list[np.ndarray], counts: np.ndarray, k: int, chunk: int = 25,
                           ) -> dict[tuple[int, int], np.ndarray]:
    """Mean cos^2 of principal angles between top-k PCA spans, for every pair of models and every resample.

    A resample of prompts (`counts`: how often each prompt is in it, e.g. `Resamples.pool_counts`) is a
    weighting of its distinct prompts: prompt i drawn c_i times contributes c_i (x_i - mu)(x_i - mu)^T to the
    scatter matrix, mu the c-weighted mean. So each draw
    needs only the Gram matrices X_a X_b^T of the full data, reindexed to its u distinct prompts (about
    63% of m), scaled by sqrt(c), and one u x u eigendecomposition per model: no work in d dimensions.
    Draws are processed in chunks of similar u, so little is padded.

    Args:
        xs: each model's residuals of the same prompts in the same order. # [m, d] each
        counts: times each prompt is in each resample (a bootstrap draw, or a jackknife's all-but-some). # [B, m]
        k: subspace dimension.
        chunk: draws per batched eigendecomposition; chunks run on CPU threads. Small chunks keep the
            temporaries (chunk x u x u floats) in cache (`benchmarks/analysis.py` measures the effect).

    Returns:
        (i, j) -> overlap per draw, for i < j. # [B]
    """
    xs = [np.asarray(x, dtype=np.float64) for x in xs]
    m = xs[0].shape[0]
    grams = {(i, j): xs[i] @ xs[j].T for i in range(len(xs)) for j in range(i, len(xs))}  # [m, m]
    all_counts = np.asarray(counts, dtype=np.float64)  # [B, m]
    if all_counts.ndim != 2 or all_counts.shape[1] != m:
        raise EmoverifyError(f"counts must be [draws, {m}] (one column per prompt); got {all_counts.shape}")
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
            top = np.clip(evals[:, -k:], RANK_RTOL * evals[:, -1:], None)  # [b, k]
            frames.append(evecs[:, :, -k:] * (root[:, :, None] / np.sqrt(top)[:, None, :]))  # [b, u, k]
        return {(i, j): np.sum((np.swapaxes(frames[i], -1, -2) @ _gather(grams[(i, j)], index) @ frames[j]) ** 2,
                               axis=(1, 2)) / k for i, j in pairs}  # ||Q_i^T Q_j||_F^2 / k per draw

    chunks = [order[start:start + chunk] for start in range(0, len(all_counts), chunk)]
    out = {pair: np.empty(len(all_counts)) for pair in pairs}
    for draws, by_pair in zip(chunks, thread_map(overlaps, chunks), strict=True):  # chunks on CPU threads
        for pair, values in by_pair.items():
            out[pair][draws] = values
    return out
