"""What the claim computations read: a paper model's stored activations, by name, through the context.

Shared by the computation modules (a private module: the registry does not import it as one of them).
Activations come from the store (`lm.activation_store`), which verifies an entry once per process and hands
the same arrays to every later reader while its files are unchanged; there is no second cache here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emoverify.computations.registry import ClaimContext
from emoverify.errors import EmoverifyError
from emoverify.lm.activation_store import SITES, ActivationSet, ensure_activations, stored_index

__all__ = ["N_BOOTSTRAP", "N_PERMUTATIONS", "REFERENCE", "SITES", "activations", "residual_groups", "resolve_layer"]


def activations(ctx: ClaimContext, name: str, dataset: str) -> ActivationSet:
    """The `ActivationSet` of a paper model on a dataset: read from the store, extracted into it if absent."""
    return ensure_activations(ctx.model_ref(name), dataset, ctx.artifacts_dir, device=ctx.device)


N_BOOTSTRAP = 1000
N_PERMUTATIONS = 1000
REFERENCE = "neutral"


def residual_groups(acts: Any, site: str) -> dict[str, np.ndarray]:
    """emotion -> residuals at `site` (# [n, n_layers + 1, d] float64), the store's emotion order."""
    if site not in SITES:
        raise EmoverifyError(f"unknown site {site!r}; expected one of {SITES}")
    return {emotion: group.float64(site) for emotion, group in acts.groups.items()}


def resolve_layer(layer: int | str, n_layers: int) -> int:
    """Index on the stored layer axis (0..n_layers): `last` is the final block's output, negatives count back."""
    if layer == "last":
        return stored_index(n_layers - 1, n_layers)
    if isinstance(layer, int) and -(n_layers + 1) <= layer <= n_layers:
        return layer % (n_layers + 1)
    raise EmoverifyError(f"layer must be 'last' or an index in [-{n_layers + 1}, {n_layers}], not {layer!r}")
