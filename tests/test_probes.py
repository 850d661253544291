"""Known answers for the emotion probes: a planted signal is found, noise stays at chance."""

from __future__ import annotations

import numpy as np

from emoverify.analysis.probes import layerwise_probe_accuracy, shuffled_label_accuracy


def test_probe_finds_a_planted_class_signal_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    signal = np.eye(16)[labels] * 3.0 + rng.standard_normal((120, 16))
    noise = rng.standard_normal((120, 16))
    result = layerwise_probe_accuracy(np.stack([noise, signal], axis=1), labels, n_folds=5, seed=0)
    assert result.chance == 0.25
    assert result.accuracy[1] > 0.9
    assert result.accuracy[0] < 0.45


def test_shuffled_labels_stay_near_chance() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 25)
    features = np.eye(8)[labels] * 3.0 + rng.standard_normal((100, 8))
    assert shuffled_label_accuracy(features, labels, n_perm=5, seed=1).mean() < 0.4
