"""The resampling design a dataset declares, for the prompts a computation read from the store.

The study's datasets have a `frame` column: row i of every class is frame i, the same sentence with another
emotion word. The design (`analysis.design`) is `Design.from_frames` of each class's frames, in the stored
prompt order, so every bootstrap draws frames and every permutation shuffles labels within them. A dataset
without that column (or with a prompt that has no frame) declares its prompts independent
(`Design.independent`): the older per-prompt scheme, right for it. Shared by the computation modules (a private
module: the registry does not import it as one of them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from types import MappingProxyType

from emoverify.analysis.design import Design
from emoverify.data import load_dataset
from emoverify.errors import EmoverifyError

__all__ = ["dataset_design", "shared_design"]


@lru_cache(maxsize=8)
def _frames_of(dataset: str) -> Mapping[str, str] | None:
    """Prompt id -> frame id of a packaged dataset; None if it declares no frames."""
    table = load_dataset(dataset)
    if "frame" not in table.columns or table["frame"].isna().any():
        return None
    return MappingProxyType(dict(zip(table["id"], table["frame"], strict=True)))


def dataset_design(dataset: str, ids_by_class: Mapping[str, Sequence[str]]) -> Design:
    """The design of `dataset` for these prompts: class -> prompt ids, in the stored (row) order.

    Raises:
        EmoverifyError: a stored prompt is not in the dataset, or the classes' frames do not match row by row.
    """
    frames = _frames_of(dataset)
    if frames is None:
        return Design.independent({c: len(ids) for c, ids in ids_by_class.items()})
    unknown = [i for ids in ids_by_class.values() for i in ids if i not in frames]
    if unknown:
        raise EmoverifyError(f"{len(unknown)} stored prompts are not in dataset {dataset!r} (first: {unknown[0]!r}): "
                             "the activations were extracted from other prompts; re-extract them")
    try:
        return Design.from_frames({c: [frames[i] for i in ids] for c, ids in ids_by_class.items()})
    except EmoverifyError as err:
        raise EmoverifyError(f"dataset {dataset!r}, as stored: {err}") from None


def shared_design(dataset: str, ids_by_model: Mapping[str, Mapping[str, Sequence[str]]]) -> Design:
    """The one design of several models' prompts (model -> class -> ids): the same frames in every model.

    Raises:
        EmoverifyError: two models' prompts give different designs (naming them).
    """
    designs = {name: dataset_design(dataset, ids) for name, ids in ids_by_model.items()}
    (first, design), *others = designs.items()
    for name, other in others:
        if other != design:
            raise EmoverifyError(f"{name} and {first} have different resampling designs on {dataset}: a draw of "
                                 "frames must be the same in every model")
    return design
