"""Length statistics per emotion: characters, words and tokens (DATA-3 checks the data against them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd

from .validation import ordered_emotions

__all__ = ["LENGTH_STATISTICS", "Tokenize", "length_statistics"]

# A tokenizer as the harness passes it: text -> token ids (e.g. `lambda t: tok(t)["input_ids"]`).
Tokenize = Callable[[str], list[int]]

LENGTH_STATISTICS: tuple[str, ...] = ("mean", "median", "min", "max", "std")


def _describe(lengths: pd.Series, prefix: str) -> dict[str, float]:
    # std is the sample standard deviation (ddof=1), pandas' default; NaN for a single prompt.
    return {
        f"{prefix}_mean": float(lengths.mean()),
        f"{prefix}_median": float(lengths.median()),
        f"{prefix}_min": float(lengths.min()),
        f"{prefix}_max": float(lengths.max()),
        f"{prefix}_std": float(lengths.std(ddof=1)),
    }


def length_statistics(df: pd.DataFrame, tokenizers: Mapping[str, Tokenize] | None = None) -> pd.DataFrame:
    """Per-emotion length statistics of the prompts in `df` (pure: `df` is not modified).

    Characters are `len(text)`; words are whitespace-separated pieces (`len(text.split())`); tokens
    are `len(tokenize(text))` for each tokenizer given, with no special tokens added by this function.

    Args:
        df: a frame with `emotion` and `text` columns, e.g. from `load_dataset`.
        tokenizers: name -> function from text to token ids; each adds `tokens_<name>_*` columns.

    Returns:
        One row per emotion (index `emotion`, in `EMOTIONS` order) with `count` and, for each of
        `chars`, `words` and `tokens_<name>`, the columns `<measure>_mean`, `_median`, `_min`, `_max`,
        `_std` (sample std).

    Example:
        >>> df = pd.DataFrame({"emotion": ["anger", "anger"], "text": ["I am furious.", "So angry!"]})
        >>> length_statistics(df).loc["anger", ["count", "chars_mean", "words_max"]].to_dict()
        {'count': 2.0, 'chars_mean': 11.0, 'words_max': 3.0}
    """
    measures: dict[str, Callable[[str], int]] = {
        "chars": len,
        "words": lambda text: len(text.split()),
    }
    for name, tokenize in (tokenizers or {}).items():
        measures[f"tokens_{name}"] = lambda text, tokenize=tokenize: len(tokenize(text))
    rows = {}
    for emotion in ordered_emotions(df["emotion"]):
        texts = df.loc[df["emotion"] == emotion, "text"]
        row: dict[str, float] = {"count": len(texts)}
        for prefix, measure in measures.items():
            row.update(_describe(texts.map(measure), prefix))
        rows[emotion] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "emotion"
    return table.astype({"count": "int64"})
