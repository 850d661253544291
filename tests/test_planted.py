"""Planted models: the corpus, deterministic training, the cache, and the planted structure read back out.

The positive control must be able to fail: a model trained on the planted corpus shows the effect, the same
model trained on shuffled continuations (the control of the control) and the untrained one do not.
The fast tests train tiny specs (or the real configuration for two steps) into a temporary cache. The `slow`
ones train a small spec that learns the rule (two trainings, about 20 CPU-seconds) or read the real planted
models (`standin:planted-*`) from the user's cache: seconds when `benchmarks/planted_build.py` or an earlier
run built them, about a CPU-minute per trained model where they are absent.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch

from emoverify.analysis.probes import between_within_ratio, probe_accuracy
from emoverify.data import load_dataset
from emoverify.data.planted_corpus import (
    CONTINUATION_CLASS,
    CONTINUATION_OPENERS,
    EMOTIONS,
    planted_corpus,
    study_prompt_overlap,
)
from emoverify.errors import EmoverifyError
from emoverify.lm import planted_build
from emoverify.lm.models import load_model, weights_sha256
from emoverify.lm.planted import PLANTED_MODELS, PlantedSpec, ensure_planted, planted_dir, planted_spec
from emoverify.lm.planted_build import train_planted
from emoverify.lm.planted_readout import (
    continuation_first_tokens,
    planted_effect,
    sentence_end_residuals,
)

# A model small enough to build in a few seconds: for the cache and determinism tests, not for effects.
TINY = PlantedSpec(
    "planted-test-tiny",
    dict(model_type="gpt2", n_positions=64, n_embd=32, n_layer=1, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
         attn_pdrop=0.0),
    n_documents=200, steps=6, batch_size=8, log_every=2,
)
# Small but able to learn the rule: one layer of width 128, the rule without exceptions (planted_share 1).
# The rule is learnt abruptly, around step 130 of 250; the real models have 4 layers of width 256.
SMALL = PlantedSpec(
    "planted-test-small",
    dict(model_type="gpt2", n_positions=64, n_embd=128, n_layer=1, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
         attn_pdrop=0.0),
    n_documents=1200, planted_share=1.0, steps=250, batch_size=32, learning_rate=5e-3, warmup_steps=20,
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOVERIFY_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def baseline():
    df = load_dataset("baseline")
    return df["text"].tolist(), df["emotion"].tolist()


# --------------------------------------------------------------------------------------------------
# The corpus


def test_corpus_is_deterministic_and_depends_on_the_seed():
    first = planted_corpus(400, seed=0)
    assert planted_corpus(400, seed=0).sha256 == first.sha256
    assert planted_corpus(400, seed=1).sha256 != first.sha256
    assert planted_corpus(400, seed=0, shuffle_continuations=True).sha256 != first.sha256
    # the real models' corpus too, since their cache key holds its hash
    real = PLANTED_MODELS["standin:planted-gpt2"]
    assert real.corpus().sha256 == real.corpus().sha256


def test_corpus_is_balanced_and_never_a_study_prompt():
    corpus = planted_corpus(4000, seed=0)
    assert Counter(d.emotion for d in corpus.documents) == {e: 1000 for e in EMOTIONS}
    assert study_prompt_overlap([d.opening for d in corpus.documents]) == []
    # the check itself sees a study prompt, whatever its case and spacing
    assert study_prompt_overlap(["i am  GRATEFUL that you fixed the printer this morning."])
    with pytest.raises(EmoverifyError, match="multiple of 4"):
        planted_corpus(10)
    with pytest.raises(EmoverifyError, match="planted_share"):
        planted_corpus(8, planted_share=1.5)


def test_emotion_is_carried_by_many_words_not_one_token():
    corpus = planted_corpus(4000, seed=0)

    def word_shares(emotion: str) -> dict[str, float]:
        openings = [d.opening for d in corpus.documents if d.emotion == emotion]
        counts = Counter(w for o in openings for w in set(re.findall(r"[a-z']+", o.lower())))
        return {w: n / len(openings) for w, n in counts.items()}

    neutral = word_shares("neutral")
    for emotion in ("gratitude", "anger", "apology"):
        shares = word_shares(emotion)
        # no word is in many more of this emotion's openings than of the neutral ones: "sorry", the most
        # concentrated, is in about a third of the apologies
        assert max(share - neutral.get(w, 0.0) for w, share in shares.items()) < 0.5, emotion
        assert len({d.template for d in corpus.documents if d.emotion == emotion}) >= 25
        assert len({d.opening for d in corpus.documents if d.emotion == emotion}) > 900


def test_continuation_classes_open_with_words_of_their_own():
    first_words = {cls: {o.split()[0].strip(",") for o in openers} for cls, openers in CONTINUATION_OPENERS.items()}
    for cls, words in first_words.items():
        others = set().union(*(w for c, w in first_words.items() if c != cls))
        assert not words & others, cls


def test_planted_share_and_shuffled_control():
    corpus = planted_corpus(4000, seed=0, planted_share=0.8)
    emotional = [d for d in corpus.documents if d.emotion != "neutral"]
    assert abs(np.mean([d.planted for d in emotional]) - 0.8) < 0.03
    assert all(d.planted for d in corpus.documents if d.emotion == "neutral")
    for d in corpus.documents[:50]:
        assert d.continuation.split(",")[0] in CONTINUATION_OPENERS[d.continuation_class]

    shuffled = planted_corpus(4000, seed=0, planted_share=0.8, shuffle_continuations=True)
    # the same openings and continuations, paired at random
    assert sorted(d.opening for d in shuffled.documents) == sorted(d.opening for d in corpus.documents)
    assert sorted(d.continuation for d in shuffled.documents) == sorted(d.continuation for d in corpus.documents)
    by_emotion = {e: Counter(d.continuation_class for d in shuffled.documents if d.emotion == e) for e in EMOTIONS}
    for emotion in EMOTIONS:
        share = by_emotion[emotion][CONTINUATION_CLASS[emotion]] / 1000
        overall = sum(c[CONTINUATION_CLASS[emotion]] for c in by_emotion.values()) / 4000
        assert abs(share - overall) < 0.05, emotion  # independent of the opening


# --------------------------------------------------------------------------------------------------
# Training, the cache and loading


def _train_hash(spec: PlantedSpec) -> tuple[str, list[dict[str, float]]]:
    corpus = spec.corpus()
    tokenizer = planted_build._tokenizer(corpus)
    model, curve = train_planted(spec, tokenizer, corpus)
    return weights_sha256(model), curve


@pytest.mark.parametrize("ref", ["standin:planted-gpt2", "standin:planted-pythia"])
def test_real_configuration_trains_deterministically_on_one_thread(ref):
    spec = replace(planted_spec(ref), steps=2, log_every=1)  # the real architecture and corpus, two steps
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    state = torch.get_rng_state()
    first, curve = _train_hash(spec)
    assert (first, curve) == _train_hash(spec)
    assert len(curve) == 2 and all(np.isfinite(p["loss"]) for p in curve)
    assert torch.get_num_threads() == threads  # restored
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone


def test_builds_are_identical_and_recorded(cache, tmp_path_factory, monkeypatch):
    directory = ensure_planted(TINY)
    assert directory.parent == cache / "planted" and directory.name.startswith("planted-test-tiny-")
    record = json.loads((directory / "planted.json").read_text())
    assert record["corpus"]["sha256"] == TINY.corpus().sha256
    assert record["training"]["steps"] == 6 and record["seed"] == 0 and record["torch"] == torch.__version__
    assert [p["step"] for p in record["curve"]] == [2, 4, 6] and record["final_loss"] == record["curve"][-1]["loss"]
    assert record["build_seconds"] > 0
    assert "model.safetensors" in record["files"] and "tokenizer.json" in record["files"]

    other = tmp_path_factory.mktemp("second-cache")
    monkeypatch.setenv("EMOVERIFY_CACHE", str(other))
    again = ensure_planted(TINY)
    assert again.name == directory.name  # the key does not depend on where the cache is
    assert json.loads((again / "planted.json").read_text())["files"] == record["files"]  # same bytes


def test_cache_key_holds_every_setting(cache):
    base = planted_dir(TINY)
    for change in (dict(seed=1), dict(steps=7), dict(planted_share=0.5), dict(shuffle_continuations=True),
                   dict(corpus_seed=1), dict(learning_rate=1e-3), dict(config={**TINY.config, "n_layer": 2})):
        assert planted_dir(replace(TINY, **change)) != base, change
    assert planted_dir(TINY) == base


def test_corrupt_weights_are_rebuilt(cache):
    directory = ensure_planted(TINY)
    weights = directory / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:-100])  # truncated, as an interrupted copy would leave it
    assert ensure_planted(TINY) == directory
    assert weights.read_bytes() == good


def test_failed_build_leaves_nothing_behind(cache, monkeypatch):
    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full")

    from transformers import PreTrainedTokenizerFast

    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_planted(TINY)
    assert list((cache / "planted").iterdir()) == []


def test_load_model_routes_planted_refs_through_from_pretrained(cache):
    lm = load_model("standin:planted-gpt2-init")  # untrained: built in seconds
    assert lm.provenance["source"] == "standin"
    assert lm.provenance["path"] == str(planted_dir("standin:planted-gpt2-init"))
    assert (lm.n_layers, lm.d_model, lm.n_heads, lm.model.config.n_positions) == (4, 256, 4, 64)
    tokens = continuation_first_tokens(lm.tokenizer)
    assert set(tokens) == set(CONTINUATION_OPENERS)
    pythia = load_model("standin:planted-pythia-init")
    assert pythia.model.config.model_type == "gpt_neox" and pythia.model.config.use_parallel_residual
    config = pythia.model.config
    rope = getattr(config, "rope_parameters", None) or {"partial_rotary_factor": config.rotary_pct}
    assert rope["partial_rotary_factor"] == 0.25
    with pytest.raises(EmoverifyError, match="did you mean 'standin:planted-gpt2'"):
        load_model("standin:planted-gtp2")


# --------------------------------------------------------------------------------------------------
# The planted structure, read back out


def _class_ratio(lm, texts, emotions) -> float:
    """Between/within class scatter of the last block's sentence-end residuals."""
    return between_within_ratio(sentence_end_residuals(lm, texts, layer=-1), np.asarray(emotions))


def _probe(lm, texts, emotions) -> float:
    """5-fold accuracy of a linear probe for the four classes on the same residuals (chance 0.25)."""
    features = sentence_end_residuals(lm, texts, layer=-1)  # [280, d_model]
    return float(probe_accuracy(features, np.asarray(emotions), n_folds=5).mean())


@pytest.fixture(scope="module")
def small_models(tmp_path_factory):
    """The small spec trained on the planted corpus and on the shuffled one, and untrained."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMOVERIFY_CACHE", str(tmp_path_factory.mktemp("planted-cache")))
        specs = {"planted": SMALL, "shuffled": replace(SMALL, shuffle_continuations=True),
                 "init": replace(SMALL, steps=0)}
        return {kind: load_model(str(ensure_planted(spec))) for kind, spec in specs.items()}


@pytest.mark.slow  # two trainings: 20 s of CPU, 45 s or more of wall time on the shared 2-core VM
def test_small_planted_model_shows_the_effect_and_its_controls_do_not(small_models, baseline):
    texts, emotions = baseline
    effect = {kind: planted_effect(lm, texts, emotions).effect for kind, lm in small_models.items()}
    for emotion in ("gratitude", "anger", "apology"):  # measured: 0.26-0.52 / 0.01-0.03 / 0.00
        assert effect["planted"][emotion] > 0.15, (emotion, effect)
        assert abs(effect["shuffled"][emotion]) < 0.05, (emotion, effect)
        assert effect["planted"][emotion] > 5 * abs(effect["shuffled"][emotion]), (emotion, effect)
        assert abs(effect["init"][emotion]) < 0.01, (emotion, effect)
    ratio = {kind: _class_ratio(lm, texts, emotions) for kind, lm in small_models.items()}
    assert ratio["planted"] > 10 * ratio["init"], ratio  # measured 0.59 against 0.009


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt2", "pythia"])
def test_planted_models_show_the_effect_and_the_shuffled_control_does_not(name, baseline):
    texts, emotions = baseline
    planted_lm = load_model(f"standin:planted-{name}")
    shuffled_lm = load_model(f"standin:planted-{name}-shuffled")
    init_lm = load_model(f"standin:planted-{name}-init")
    planted_mass = planted_effect(planted_lm, texts, emotions)
    shuffled_mass = planted_effect(shuffled_lm, texts, emotions)
    for emotion in ("gratitude", "anger", "apology"):
        # e.g. after a gratitude prompt, more mass on "You're welcome"-type tokens than after a neutral one;
        # measured: gpt2 0.47-0.58, pythia 0.70-0.80; shuffled 0.00-0.04
        assert planted_mass.effect[emotion] > 0.3, planted_mass.to_json()
        assert abs(shuffled_mass.effect[emotion]) < 0.1, shuffled_mass.to_json()
        assert planted_mass.effect[emotion] > 5 * abs(shuffled_mass.effect[emotion])

    planted_ratio, init_ratio = _class_ratio(planted_lm, texts, emotions), _class_ratio(init_lm, texts, emotions)
    planted_probe, init_probe = _probe(planted_lm, texts, emotions), _probe(init_lm, texts, emotions)
    assert planted_ratio > 10 * init_ratio, (planted_ratio, init_ratio)  # measured 0.60 / 2.12 against 0.011 / 0.007
    # a random-init model's probe beats chance (0.25) on the bag of words its last token averages: 0.48 / 0.53
    assert planted_probe > 0.8 and planted_probe > init_probe + 0.2, (planted_probe, init_probe)


@pytest.mark.slow
def test_the_planted_control_claim_can_fail(tmp_path, monkeypatch):
    """CTRL-PLANTED on the real planted models passes; with the shuffled model standing in for the planted
    one, its own figure is x1 and the claim's expectation (> 5) is refuted: the control can fail."""
    from emoverify.computations import controls  # local import: the claim computation under test
    from emoverify.computations.registry import ClaimContext
    from emoverify.harness.expectations import parse_expectation

    ctx = ClaimContext(artifacts_dir=tmp_path, figures_dir=None)
    expectation = parse_expectation({"greater_than": 5})
    measured = controls.planted_separability(ctx, ["standin:planted-gpt2"])
    assert expectation.check(measured.value)[0] and measured.value[0] > 5
    real = controls._variant_ref
    monkeypatch.setattr(controls, "_variant_ref",
                        lambda planted, variant: real(planted, "shuffled" if variant == "planted" else variant))
    blind = controls.planted_separability(ctx, ["standin:planted-gpt2"])
    assert blind.value[0] == 1.0 and not expectation.check(blind.value)[0]
