"""The one exception family of emoverify.

Every error a user can cause (a malformed claim file, absent weights, a corrupt artifact) is an
`EmoverifyError` whose message says what went wrong and how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["ArtifactError", "ClaimFileError", "DatasetError", "EmoverifyError", "WeightsUnavailable", "did_you_mean"]


class EmoverifyError(Exception):
    """Base class: an error whose message is meant for the researcher, not a traceback."""


class DatasetError(EmoverifyError):
    """A prompt dataset failed validation; the message names the record."""


class WeightsUnavailable(EmoverifyError):
    """A model's weights cannot be loaded here; the message says how to fetch them."""

    def __init__(self, message: str, *, ref: str, fetch_command: str) -> None:
        super().__init__(message)
        self.ref = ref
        self.fetch_command = fetch_command


class ArtifactError(EmoverifyError):
    """A cached artifact is missing, partial or does not match its recorded hash."""


class ClaimFileError(EmoverifyError):
    """A claim file is malformed; the message names the file, the line and the claim id."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the close matches of `name` in `known`, else the known names if few, else ""."""
    known = [str(k) for k in known]
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.7)
    if close:
        return f" (did you mean {' or '.join(map(repr, close))}?)"
    return f" (known: {', '.join(sorted(known))})" if len(known) <= 12 else ""
