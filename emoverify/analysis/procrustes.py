"""Orthogonal Procrustes with fewer prompts than dimensions: what the data determine, and what they leave free.

`subspace.fit_procrustes` returns scipy's solution R. With n < d prompts only the part of R between the two
fitting spans is fixed by the data (`batched_procrustes_directions`, for a batch of fits at once); any
isometry between the spans' orthogonal complements completes it into another solution as good.
`procrustes_completions` draws such completions, so a figure can be reported with the range the
undetermined part can move it over. The tests hold both to `fit_procrustes` where the data decide.
"""

from __future__ import annotations

import numpy as np

from emoverify.analysis.subspace import RANK_RTOL, batched_eigh, orthonormal_basis

__all__ = ["batched_procrustes_directions", "procrustes_completions"]


def _gram_frame(xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal frame of the row space of centred `xc` (# [B, n, d]) from its Gram matrix.

    Returns (E Lambda^{-1/2} masked # [B, n, n], Lambda^{1/2} masked # [B, n]) so that the frame is
    Q = xc^T @ first # [B, d, n], with zero columns where the Gram is rank-deficient.
    """
    evals, evecs = batched_eigh(xc @ np.swapaxes(xc, -1, -2))
    keep = evals > RANK_RTOL * 1e2 * evals[:, -1:]
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
    keep = s > RANK_RTOL * 1e2 * s[:, :1]
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

