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

The fits are kept in the store (`cached_result`, kind `minilm-probe`), keyed by the prompts, the feature
and stand-in activation entries they read, the settings, this module's and the probes' source and the
library versions; a later run reads them back and only draws the figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emoverify.analysis.figures import probe_accuracy_plot
from emoverify.analysis.vectors import class_means, emotion_vectors, pairwise_cosines
from emoverify.computations._inputs import activations
from emoverify.computations.registry import ClaimContext, Measurement, computation
from emoverify.data import EMOTIONS, dataset_sha256, load_dataset
from emoverify.errors import EmoverifyError
from emoverify.lm.activation_store import activation_key
from emoverify.lm.encoders import ENCODER_PACKAGE, encoder_features, feature_key
from emoverify.provenance import source_digest, versions
from emoverify.store import Result, cached_result

__all__ = ["fit_probes", "minilm_positive_control", "probe_key"]

STANDIN_MODELS = ("gpt2", "pythia-160m", "gpt-neo-125M")
VARIANTS = ("pretrained", "random_init")
# The code and libraries the probe results depend on (the cache key names them).
_PROBE_CODE = ("emoverify.computations.controls", "emoverify.analysis.probes", "emoverify.analysis.vectors")
_PROBE_LIBRARIES = ("numpy", "scipy", "scikit-learn")


def _standin_accuracy(ctx: ClaimContext, dataset: str, n_folds: int) -> dict[str, Any]:
    """Probe accuracy per layer on the stand-ins' sentence-end residuals (empty if not extracted)."""
    # local import: scikit-learn takes a second to import, and a run that reads stored fits fits nothing.
    from emoverify.analysis.probes import layerwise_probe_accuracy

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


def _standin_key(ctx: ClaimContext, name: str, dataset: str) -> dict[str, Any]:
    """The store key of a stand-in's activations, or the error that stops them being had."""
    try:
        return activation_key(ctx.with_models("standin").model_ref(name), dataset)
    except EmoverifyError as err:
        return {"error": str(err)}


def probe_key(
    ctx: ClaimContext, dataset: str, n_folds: int, n_label_shuffles: int, include_standins: bool
) -> dict[str, Any]:
    """Everything the positive control's fits depend on: inputs by their store keys, settings, code."""
    texts = load_dataset(dataset)["text"].tolist()
    return {"dataset": dataset, "dataset_sha256": dataset_sha256(dataset),
            "baseline_sha256": dataset_sha256("baseline") if dataset == "extended" else None,
            "n_folds": n_folds, "n_label_shuffles": n_label_shuffles, "seed": ctx.seed,
            "features": {variant: feature_key(texts, variant, ctx.seed) for variant in VARIANTS},
            "standins": {name: _standin_key(ctx, name, dataset) for name in STANDIN_MODELS} if include_standins
            else {},
            "code": source_digest(_PROBE_CODE), "libraries": versions(_PROBE_LIBRARIES)}


def fit_probes(ctx: ClaimContext, dataset: str, n_folds: int, n_label_shuffles: int, include_standins: bool) -> Result:
    """The probe fits, transfer and cosines: a record for the measurement and the accuracy curves to draw."""
    # local import: scikit-learn takes a second to import, and a run that reads stored fits fits nothing.
    from emoverify.analysis.probes import fit_and_score, layerwise_probe_accuracy, shuffled_label_accuracy

    frame = load_dataset(dataset)
    texts = frame["text"].tolist()
    labels = np.array([EMOTIONS.index(e) for e in frame["emotion"]])
    features = {variant: encoder_features(texts, variant, ctx.seed, ctx.artifacts_dir).astype(np.float64)
                for variant in VARIANTS}  # [n, L + 1, 384]
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
    pre, rnd = float(probes["pretrained"].accuracy[last]), float(probes["random_init"].accuracy[last])
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
    return Result(arrays={f"curve{i}": np.asarray(c, dtype=np.float64) for i, c in enumerate(curves.values())},
                  record={"value": [round(pre - chance, 4), round(pre - rnd, 4)], "label": label,
                          "details": details, "chance": chance, "curves": list(curves)})


@computation("controls.minilm_probe")
def minilm_positive_control(
    ctx: ClaimContext,
    dataset: str = "extended",
    n_folds: int = 5,
    n_label_shuffles: int = 20,
    include_standins: bool = True,
) -> Measurement:
    """Probe accuracy of pretrained vs random-init MiniLM by layer, and MiniLM's emotion-vector cosines.

    The fits come from the store when it holds them for the same inputs (`probe_key`); the figure is drawn
    from the stored curves on every run.

    Returns:
        value: [last-layer accuracy of pretrained MiniLM minus chance, minus random-init MiniLM's].
    """
    key = probe_key(ctx, dataset, n_folds, n_label_shuffles, include_standins)
    result = cached_result(ctx.artifacts_dir, "minilm-probe", key,
                           lambda: fit_probes(ctx, dataset, n_folds, n_label_shuffles, include_standins))
    record = result.record
    curves = {name: result.arrays[f"curve{i}"] for i, name in enumerate(record["curves"])}
    figures = ctx.draw(probe_accuracy_plot, f"probe-accuracy-{dataset}.png", curves, record["chance"],
                       f"emotion probe accuracy by layer ({dataset}, {n_folds}-fold)")
    return Measurement(value=record["value"], details=record["details"], figures=figures, label=record["label"],
                       provenance={"encoder": ENCODER_PACKAGE, "dataset": dataset})
