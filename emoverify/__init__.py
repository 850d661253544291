"""emoverify: every claim of the emotion-representation paper, recomputed as a test."""

from __future__ import annotations

from emoverify.errors import (
    ArtifactError,
    ClaimFileError,
    DatasetError,
    EmoverifyError,
    WeightsUnavailable,
)

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "ClaimFileError",
    "DatasetError",
    "EmoverifyError",
    "WeightsUnavailable",
    "__version__",
]
