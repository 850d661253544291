"""Figures of the vector, subspace and probe analyses (matplotlib, Agg backend, PNG).

Each function takes plain arrays and names, writes one PNG, and returns its path; none computes
anything, so a figure always shows exactly the numbers the claim's details report.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: CI and the analysis machines have no display

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

__all__ = ["cosine_heatmaps", "overlap_bars", "probe_accuracy_plot"]


def _save(fig: plt.Figure, path: str | os.PathLike[str], tight: bool = True) -> str:
    """Write the PNG. `tight` crops to what was drawn (legends outside the axes) at the cost of a second
    draw; figures laid out by hand pass False."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return str(path)


def cosine_heatmaps(
    panels: Mapping[str, np.ndarray], pairs: Sequence[str], title: str, path: str | os.PathLike[str]
) -> str:
    """One heatmap per panel: pairs (rows) x layers (columns) of cosines in [-1, 1].

    Args:
        panels: panel title -> cosines. # [n_layers + 1, n_pairs]
        pairs: row labels.
        title: figure title.
        path: where the PNG goes.
    """
    n = len(panels)
    height = 1.0 + 0.55 * len(pairs) * n
    fig, axes = plt.subplots(n, 1, figsize=(9, height), squeeze=False)
    # Laid out by hand (one draw, not two): room for the pair labels, the titles and the colour bar.
    fig.subplots_adjust(left=0.14, right=0.86, top=1 - 0.55 / height, bottom=0.5 / height, hspace=0.55)
    image = None
    for ax, (name, values) in zip(axes[:, 0], panels.items(), strict=True):
        image = ax.imshow(values.T, vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto")
        ax.set_yticks(range(len(pairs)), pairs, fontsize=7)
        ax.set_xticks(range(values.shape[0]), [str(i) for i in range(values.shape[0])], fontsize=7)
        ax.set_title(name, fontsize=8, loc="left")
        for (layer, pair), val in np.ndenumerate(values):
            ax.text(layer, pair, f"{val:.2f}", ha="center", va="center", fontsize=5,
                    color="white" if abs(val) > 0.6 else "black")  # legible on the dark ends of the scale
    axes[-1, 0].set_xlabel("layer (0: embedding output; i: after block i-1)")
    fig.colorbar(image, cax=fig.add_axes((0.88, 0.3, 0.015, 0.4)), label="cosine")
    fig.suptitle(title, fontsize=9, y=1 - 0.15 / height)
    return _save(fig, path, tight=False)


def overlap_bars(
    groups: Mapping[str, Mapping[str, float]],
    title: str,
    ylabel: str,
    path: str | os.PathLike[str],
    reference_lines: Mapping[str, float] | None = None,
    errors: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
) -> str:
    """Grouped bars: one group per x label (e.g. a model pair), one bar per condition within it.

    Args:
        groups: condition -> (x label -> value), e.g. {"before": {...}, "after (lstsq)": {...}}.
        title, ylabel: text.
        path: where the PNG goes.
        reference_lines: horizontal lines to draw, label -> y (e.g. chance).
        errors: condition -> (x label -> (lo, hi)) interval to draw on a bar.
    """
    conditions = list(groups)
    labels = list(next(iter(groups.values())))
    width = 0.8 / len(conditions)
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(labels) + 0.2 * len(conditions), 3.6))
    for i, condition in enumerate(conditions):
        xs = np.arange(len(labels)) + (i - (len(conditions) - 1) / 2) * width
        ys = np.array([groups[condition].get(label, np.nan) for label in labels])
        yerr = None
        if errors and condition in errors:
            lo_hi = np.array([errors[condition].get(label, (np.nan, np.nan)) for label in labels])
            yerr = np.abs(np.stack([ys - lo_hi[:, 0], lo_hi[:, 1] - ys]))
        ax.bar(xs, ys, width=width, label=condition, yerr=yerr, capsize=2)
    for j, (name, y) in enumerate((reference_lines or {}).items()):
        ax.axhline(y, color="k", linestyle=("--", ":", "-.")[j % 3], linewidth=0.8, label=name)
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def probe_accuracy_plot(
    curves: Mapping[str, np.ndarray], chance: float, title: str, path: str | os.PathLike[str],
    errors: Mapping[str, np.ndarray] | None = None,
) -> str:
    """Probe accuracy by layer, one line per encoder, with the chance level.

    Args:
        curves: encoder -> accuracy per layer. # [n_layers + 1]
        chance: the majority-class accuracy.
        title: figure title.
        path: where the PNG goes.
        errors: encoder -> fold standard deviation per layer. # [n_layers + 1]
    """
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, acc in curves.items():
        err = errors.get(name) if errors else None
        ax.errorbar(np.arange(acc.size), acc, yerr=err, marker="o", markersize=3, capsize=2, label=name)
    ax.axhline(chance, color="k", linestyle="--", linewidth=0.8, label=f"chance {chance:.2f}")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("layer (0: embedding output)")
    ax.set_ylabel("cross-validated accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="lower right")
    return _save(fig, path)
