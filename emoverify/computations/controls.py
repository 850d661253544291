"""Positive control: does the pipeline find emotion structure in a real pretrained model, offline?

all-MiniLM-L6-v2 (`encoders.py`) is a real pretrained encoder available without the Hub. Its
mean-pooled hidden states are probed for the four classes at every layer (`probes.py`), beside:

- the same architecture with random weights (same tokenizer and pooling): what lexical content
  alone, passed through an untrained network, gives a probe;
- the random-init stand-ins of the paper's three models at every layer (sentence-end residuals from
  the artifact store), when the store has them.

It also reports MiniLM's emotion-vector cosines (`neutral_diff`, mean-pooled, last layer), computed by
the same functions as VEC-1. The paper's minimal-pair prompts share frames across classes and differ
mostly in the emotion words, so a probe on an untrained network is far above chance too; the control
is the margin of the pretrained model over the untrained one, and transfer to prompts never seen in
fitting (train on `baseline`, test on the 30 prompts per class that only `extended` has).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emoverify.analysis.figures import probe_accuracy_plot
from emoverify.analysis.probes import fit_and_score, layerwise_probe_accuracy, shuffled_label_accuracy
from emoverify.analysis.vectors import class_means, emotion_vectors, pairwise_cosines
from emoverify.computations._inputs import activations
from emoverify.computations.registry import ClaimContext, Measurement, computation
from emoverify.data import EMOTIONS, load_dataset
from emoverify.errors import EmoverifyError
from emoverify.lm.encoders import ENCODER_PACKAGE, encoder_features

__all__ = ["minilm_positive_control"]

STANDIN_MODELS = ("gpt2", "pythia-160m", "gpt-neo-125M")


def _standin_accuracy(ctx: ClaimContext, dataset: str, n_folds: int) -> dict[str, Any]:
    """Probe accuracy per layer on the stand-ins' sentence-end residuals (empty if not extracted)."""
    out: dict[str, Any] = {}
    standin = ctx.with_models("standin")
    for name in STANDIN_MODELS:
        try:
            acts = activations(standin, name, dataset)
        except EmoverifyError as err:
            out[name] = {"error": str(err)}
            continue
        feats = np.concatenate([acts.groups[e].sentence_end for e in EMOTIONS])  # [n, L + 1, d]
        labels = np.concatenate([np.full(len(acts.groups[e].ids), i) for i, e in enumerate(EMOTIONS)])
        out[name] = layerwise_probe_accuracy(feats.astype(np.float64), labels, n_folds, ctx.seed).to_json()
    return out


@computation("controls.minilm_probe")
def minilm_positive_control(
    ctx: ClaimContext,
    dataset: str = "extended",
    n_folds: int = 5,
    n_label_shuffles: int = 20,
    include_standins: bool = True,
) -> Measurement:
    """Probe accuracy of pretrained vs random-init MiniLM by layer, and MiniLM's emotion-vector cosines.

    Returns:
        value: [last-layer accuracy of pretrained MiniLM minus chance, minus random-init MiniLM's].
    """
    frame = load_dataset(dataset)
    texts = frame["text"].tolist()
    labels = np.array([EMOTIONS.index(e) for e in frame["emotion"]])
    features = {variant: encoder_features(texts, variant, ctx.seed, ctx.artifacts_dir).astype(np.float64)
                for variant in ("pretrained", "random_init")}  # [n, L + 1, 384]
    probes = {variant: layerwise_probe_accuracy(f, labels, n_folds, ctx.seed) for variant, f in features.items()}
    last = features["pretrained"].shape[1] - 1
    null = shuffled_label_accuracy(features["pretrained"][:, last], labels, n_label_shuffles, n_folds, ctx.seed)

    # Transfer: fit on baseline prompts, score on the extended-only prompts never seen in fitting.
    transfer: dict[str, list[float]] = {}
    if dataset == "extended":
        seen = frame["id"].isin(set(load_dataset("baseline")["id"])).to_numpy()
        transfer = {variant: [round(fit_and_score(f[seen, layer], labels[seen], f[~seen, layer], labels[~seen]), 4)
                              for layer in range(f.shape[1])] for variant, f in features.items()}

    cosines = {}
    for variant, f in features.items():
        groups = {e: f[labels == i, last] for i, e in enumerate(EMOTIONS)}
        pairs = pairwise_cosines(emotion_vectors(class_means(groups), "neutral_diff"))
        cosines[variant] = {k: round(float(v), 4) for k, v in pairs.as_dict().items()}

    standins = _standin_accuracy(ctx, dataset, n_folds) if include_standins else {}
    curves = {"all-MiniLM-L6-v2 (pretrained)": probes["pretrained"].accuracy,
              "MiniLM architecture, random init": probes["random_init"].accuracy}
    curves.update({f"{name} stand-in (random init, sentence end)": np.array(res["accuracy"])
                   for name, res in standins.items() if "accuracy" in res})
    chance = probes["pretrained"].chance
    figures = ctx.draw(probe_accuracy_plot, f"probe-accuracy-{dataset}.png", curves, chance,
                       f"emotion probe accuracy by layer ({dataset}, {n_folds}-fold)")
    pre, rnd = float(probes["pretrained"].accuracy[last]), float(probes["random_init"].accuracy[last])
    value = [round(pre - chance, 4), round(pre - rnd, 4)]
    details = {
        "encoder": ENCODER_PACKAGE, "dataset": dataset, "n": len(labels), "chance": chance,
        "pooling": "mean over real tokens of each hidden state (output_hidden_states=True)",
        "probe": "one-vs-rest ridge on standardised features, penalty by leave-one-out inside each fold",
        "value_meaning": ["last-layer accuracy minus chance", "last-layer accuracy minus random-init MiniLM's"],
        "pretrained": probes["pretrained"].to_json(), "random_init": probes["random_init"].to_json(),
        "label_shuffled_accuracy_last_layer": {"mean": round(float(null.mean()), 4),
                                               "max": round(float(null.max()), 4), "n": int(null.size)},
        "transfer_baseline_to_unseen": transfer,
        "emotion_vector_cosines_last_layer": cosines,
        "standins_sentence_end": standins,
        "seed": ctx.seed,
    }
    label = (f"pretrained {pre:.3f} vs random-init {rnd:.3f} (chance {chance:.2f}, shuffled labels "
             f"{null.mean():.3f}; last layer)")
    return Measurement(value=value, details=details, figures=figures, label=label,
                       provenance={"encoder": ENCODER_PACKAGE, "dataset": dataset})
