"""The paper's models and claim IDs: the vocabulary every layer shares, free of torch.

`PAPER_MODELS` maps the names claim files use (`gpt2`, `pythia-160m`, `gpt-neo-125M`) to the hub id a
researcher downloads and the random-init stand-in that serves as the null model here. `PAPER_CLAIM_IDS`
are the stable IDs of `paper/CLAIMS.md`, in the paper's order (the report sorts its rows by them).
`ModelSource` says which of the two a claim runs on.

Seeded stand-ins: `standin:gpt2` is the stand-in of seed 0, the one built and kept as a checkpoint;
`standin:gpt2~seed1` (and `tiny:gpt2~seed1`) is the same architecture with weights drawn from seed 1 at load
time, with seed 0's tokenizer (`lm.standins`). The mark `~seed<N>` is safe in file names and cache keys
(the activation store's directory is `standin-gpt2~seed1`), and there is one name per model: seed 0 is
written without it (`seeded_ref(ref, 0)` is `ref`; `standin:gpt2~seed0` is an error naming the plain
form). `split_seed` reads a reference back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from emoverify.errors import EmoverifyError

__all__ = ["MODEL_SOURCES", "PAPER_CLAIM_IDS", "PAPER_MODELS", "SEED_MARK", "ModelSource", "PaperModel",
           "check_model_source", "seeded_ref", "split_seed"]

# Which models a claim runs on: the paper's (by hub id or a local copy) or their random-init stand-ins.
ModelSource = Literal["real", "standin"]
MODEL_SOURCES: tuple[ModelSource, ...] = get_args(ModelSource)
# Between a stand-in reference and the seed its weights are drawn from: `standin:gpt2~seed1`.
SEED_MARK = "~seed"
_SEEDED_KINDS = ("standin:", "tiny:")


@dataclass(frozen=True)
class PaperModel:
    """One of the paper's models: the name claims use, its hub id and its random-init stand-in."""

    name: str
    hub_id: str
    standin: str

    def ref(self, source: ModelSource, seed: int = 0) -> str:
        """The reference to load for `source`: the hub id, or the stand-in drawn from `seed` (0: the stored one)."""
        return self.hub_id if source == "real" else seeded_ref(self.standin, seed)


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


def seeded_ref(ref: str, seed: int) -> str:
    """The stand-in `ref` (`standin:*`, `tiny:*`, without a seed) with weights drawn from `seed`.

    Example:
        >>> seeded_ref("standin:gpt2", 1), seeded_ref("standin:gpt2", 0)
        ('standin:gpt2~seed1', 'standin:gpt2')
    """
    if not ref.startswith(_SEEDED_KINDS) or SEED_MARK in ref:
        raise EmoverifyError(f"only an unseeded stand-in (standin:*, tiny:*) takes a seed, not {ref!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise EmoverifyError(f"a stand-in seed is a non-negative integer, not {seed!r}")
    return ref if seed == 0 else f"{ref}{SEED_MARK}{seed}"


def split_seed(ref: str) -> tuple[str, int]:
    """(the reference without its seed, the seed): `standin:gpt2~seed3` -> (`standin:gpt2`, 3); any other
    reference, a plain stand-in included, is seed 0. A malformed seed is an `EmoverifyError`.

    Example:
        >>> split_seed("tiny:gpt2~seed2"), split_seed("standin:gpt2"), split_seed("gpt2")
        (('tiny:gpt2', 2), ('standin:gpt2', 0), ('gpt2', 0))
    """
    if not ref.startswith(_SEEDED_KINDS) or SEED_MARK not in ref:
        return ref, 0
    base, _, digits = ref.partition(SEED_MARK)
    if not (digits.isascii() and digits.isdigit()) or (len(digits) > 1 and digits[0] == "0"):
        raise EmoverifyError(f"stand-in reference {ref!r}: the seed after {SEED_MARK!r} must be a number "
                             f"such as {base}{SEED_MARK}1")
    if int(digits) == 0:
        raise EmoverifyError(f"{ref!r} is the stored stand-in of seed 0: write {base!r} (one name per model)")
    return base, int(digits)
