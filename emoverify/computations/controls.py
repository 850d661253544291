"""Positive controls: does the pipeline find emotion structure where it exists (MiniLM, the planted models)?

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
from emoverify.computations._inputs import activations, residual_groups, resolve_layer
from emoverify.computations.registry import ClaimContext, Measurement, computation
from emoverify.data import EMOTIONS, dataset_sha256, load_dataset
from emoverify.errors import EmoverifyError
from emoverify.lm.activation_store import activation_key, ensure_activations
from emoverify.lm.encoders import ENCODER_PACKAGE, encoder_features, feature_key
from emoverify.provenance import source_digest, versions
from emoverify.store import Result, cached_result

__all__ = ["fit_probes", "minilm_positive_control", "planted_separability", "probe_key"]

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


# --- planted models -------------------------------------------------------------------------------------

PLANTED_VARIANTS = ("planted", "shuffled", "untrained")


def _variant_ref(planted: str, variant: str) -> str:
    return planted + {"planted": "", "shuffled": "-shuffled", "untrained": "-init"}[variant]


def _separability(ctx: ClaimContext, ref: str, dataset: str, n_folds: int) -> dict[str, Any]:
    """Between/within scatter and probe accuracy of the last block's sentence-end residuals of `ref`, through the
    result store (keyed by the activation entry, so a warm run reads it back instead of refitting the probe)."""
    acts = ensure_activations(ref, dataset, ctx.artifacts_dir, device=ctx.device)
    key = {"version": 1, "activations": acts.cache_key, "ref": ref, "dataset": dataset, "n_folds": n_folds,
           "seed": ctx.seed, "code": source_digest(_PROBE_CODE), "libraries": versions(_PROBE_LIBRARIES)}

    def compute() -> Result:
        # local import: scikit-learn takes a second to import, and a run that reads stored fits fits nothing.
        from emoverify.analysis.probes import between_within_ratio, probe_accuracy

        groups = residual_groups(acts, "sentence_end")
        at = resolve_layer("last", acts.n_layers)
        features = np.concatenate([x[:, at] for x in groups.values()])
        labels = np.concatenate([[e] * len(x) for e, x in groups.items()])
        accuracy = probe_accuracy(features, labels, n_folds, ctx.seed)
        return Result(arrays={"fold_accuracy": accuracy}, record={
            "ref": ref, "between_within": round(between_within_ratio(features, labels), 5),
            "probe_accuracy": round(float(accuracy.mean()), 4), "layer_index": at, "n": len(labels)})

    if acts.cache_key is None:
        return dict(compute().record)
    return dict(cached_result(ctx.artifacts_dir, "planted-separability", key, compute).record)


@computation("controls.planted_separability")
def planted_separability(ctx: ClaimContext, planted: list[str] | None = None, dataset: str = "baseline",
                         n_folds: int = 5) -> Measurement:
    """Are the planted models' emotions separable where a model without the planted structure's are not?

    For each planted architecture (`lm.planted`), the between/within class scatter of the last block's
    sentence-end residuals on the study's prompts, for the planted model, its shuffled-corpus control (the
    same training, emotions and continuations paired at random) and its untrained twin; beside them, the
    paper-size null model (the random-init stand-in of the same architecture).

    Returns:
        value: [min over architectures of planted / shuffled, min of planted / untrained] scatter ratios.
    """
    null_refs = {"standin:planted-gpt2": "standin:gpt2", "standin:planted-pythia": "standin:pythia-160m"}
    archs = list(planted or null_refs)
    per_arch: dict[str, dict[str, Any]] = {}
    for arch in archs:
        if arch not in null_refs:
            raise EmoverifyError(f"unknown planted model {arch!r}; known: {', '.join(null_refs)}")
        per_arch[arch] = {v: _separability(ctx, _variant_ref(arch, v), dataset, n_folds) for v in PLANTED_VARIANTS}
        per_arch[arch]["null_model"] = _separability(ctx, null_refs[arch], dataset, n_folds)

    def ratio(arch: str, other: str) -> float:
        return per_arch[arch]["planted"]["between_within"] / per_arch[arch][other]["between_within"]

    value = [round(min(ratio(a, "shuffled") for a in archs), 3), round(min(ratio(a, "untrained") for a in archs), 3)]
    label = "; ".join(f"{a}: between/within {r['planted']['between_within']:.3f} planted, "
                      f"{r['shuffled']['between_within']:.3f} shuffled, {r['untrained']['between_within']:.3f} "
                      f"untrained, {r['null_model']['between_within']:.3f} null model" for a, r in per_arch.items())
    return Measurement(value=value, label=f"x{value[0]} over shuffled, x{value[1]} over untrained ({label})",
                       details={"per_architecture": per_arch, "dataset": dataset, "n_folds": n_folds,
                                "measure": "trace(S_between) / trace(S_within) of the last block's sentence-end "
                                           "residuals over the four classes; probe: 5-fold ridge classifier"},
                       provenance={"models": {a: {v: r["ref"] for v, r in per.items()} for a, per in per_arch.items()},
                                   "dataset_sha256": dataset_sha256(dataset)})
