"""The paper's models and claim IDs: the vocabulary every layer shares, free of torch.

`PAPER_MODELS` maps the names claim files use (`gpt2`, `pythia-160m`, `gpt-neo-125M`) to the hub id a
researcher downloads and the random-init stand-in that serves as the null model here. `PAPER_CLAIM_IDS`
are the stable IDs of `paper/CLAIMS.md`, in the paper's order (the report sorts its rows by them).
`ModelSource` says which of the two a claim runs on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from emoverify.errors import EmoverifyError

__all__ = ["MODEL_SOURCES", "PAPER_CLAIM_IDS", "PAPER_MODELS", "ModelSource", "PaperModel", "check_model_source"]

# Which models a claim runs on: the paper's (by hub id or a local copy) or their random-init stand-ins.
ModelSource = Literal["real", "standin"]
MODEL_SOURCES: tuple[ModelSource, ...] = get_args(ModelSource)


@dataclass(frozen=True)
class PaperModel:
    """One of the paper's models: the name claims use, its hub id and its random-init stand-in."""

    name: str
    hub_id: str
    standin: str

    def ref(self, source: ModelSource) -> str:
        """The reference to load for `source`: the hub id, or the stand-in."""
        return self.hub_id if source == "real" else self.standin


PAPER_MODELS: dict[str, PaperModel] = {
    m.name: m
    for m in (
        PaperModel("gpt2", "gpt2", "standin:gpt2"),
        PaperModel("pythia-160m", "EleutherAI/pythia-160m", "standin:pythia-160m"),
        PaperModel("gpt-neo-125M", "EleutherAI/gpt-neo-125M", "standin:gpt-neo-125M"),
    )
}

# The stable IDs of paper/CLAIMS.md, in the paper's order.
PAPER_CLAIM_IDS: tuple[str, ...] = (
    "DATA-1", "DATA-2", "DATA-3", "ACT-1", "ACT-2", "VEC-1", "VEC-2", "VEC-3", "SUB-1", "SUB-2", "SUB-3",
    "PATCH-1", "PATCH-2", "SWEEP-1", "RAND-1", "HEAD-1", "HEAD-2", "HEAD-3", "CONC-1",
)


def check_model_source(source: str) -> ModelSource:
    """`source` as a `ModelSource`; any other string is an `EmoverifyError` naming the two."""
    if source not in MODEL_SOURCES:
        raise EmoverifyError(f"model source must be one of {', '.join(MODEL_SOURCES)}, not {source!r}")
    return source  # type: ignore[return-value]  # checked above
