"""Seeded stand-ins (`standin:gpt2~seed1`): the reference syntax, weights drawn deterministically and checked
against the record of their first draw, and the seed in the activation store's keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emoverify.computations.registry import ClaimContext
from emoverify.errors import EmoverifyError
from emoverify.lm import standin_build
from emoverify.lm.activation_store import ensure_activations, weights_fingerprint
from emoverify.lm.checkpoints import model_slug
from emoverify.lm.models import load_model
from emoverify.lm.standins import draw_record_path, recorded_draw, standin_dir
from emoverify.paper import PAPER_MODELS, seeded_ref, split_seed

# --- the reference syntax --------------------------------------------------------------------------------------

def test_a_seeded_reference_names_its_seed_and_reads_back() -> None:
    assert seeded_ref("standin:gpt2", 3) == "standin:gpt2~seed3" and seeded_ref("tiny:pythia", 0) == "tiny:pythia"
    assert split_seed("standin:gpt-neo-125M~seed12") == ("standin:gpt-neo-125M", 12)
    assert split_seed("EleutherAI/pythia-160m") == ("EleutherAI/pythia-160m", 0)
    assert PAPER_MODELS["pythia-160m"].ref("standin", 2) == "standin:pythia-160m~seed2"
    assert PAPER_MODELS["pythia-160m"].ref("real", 2) == "EleutherAI/pythia-160m"
    assert model_slug("standin:gpt2~seed1") == "standin-gpt2~seed1"  # one plain path component
    assert ClaimContext(model_source="standin", standin_seed=4).model_ref("gpt2") == "standin:gpt2~seed4"
    for bad, words in [("standin:gpt2~seed0", "write 'standin:gpt2'"), ("standin:gpt2~seedx", "must be a number"),
                       ("tiny:gpt2~seed01", "must be a number"), ("standin:gpt2~seed", "must be a number")]:
        with pytest.raises(EmoverifyError, match=words):
            split_seed(bad)
    with pytest.raises(EmoverifyError, match="only an unseeded stand-in"):
        seeded_ref("gpt2", 1)
    with pytest.raises(EmoverifyError, match="non-negative"):
        seeded_ref("standin:gpt2", -1)
    with pytest.raises(EmoverifyError, match="null_seeds must be an integer of at least 1"):
        ClaimContext(null_seeds=0)


# --- deterministic draws -----------------------------------------------------------------------------------------

def test_the_same_seed_draws_the_same_weights_and_another_seed_others() -> None:
    rng_before = torch.random.get_rng_state()
    first, again = load_model("tiny:gpt2~seed1"), load_model("tiny:gpt2~seed1")
    other = load_model("tiny:gpt2~seed2")
    stored = load_model("tiny:gpt2")
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # drawing leaves the global RNG alone
    sha = first.provenance["weights_sha256"]
    assert again.provenance["weights_sha256"] == sha == recorded_draw("tiny:gpt2~seed1")
    assert other.provenance["weights_sha256"] != sha != stored.provenance["weights_sha256"]
    assert weights_fingerprint("tiny:gpt2~seed1") == sha  # the store's key names the drawn weights
    assert (first.provenance["seed"], stored.provenance["seed"]) == (1, 0)
    # Seed 0's configuration and tokenizer; weights differ, parameter by parameter.
    assert first.model.config.to_diff_dict() == stored.model.config.to_diff_dict()
    assert first.tokenizer.get_vocab() == stored.tokenizer.get_vocab()
    assert first.provenance["path"] == str(standin_dir("tiny:gpt2"))
    a, b = first.model.state_dict(), other.model.state_dict()
    assert not torch.equal(a["transformer.h.0.attn.c_attn.weight"], b["transformer.h.0.attn.c_attn.weight"])


def test_a_draw_that_differs_from_its_record_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = tmp_path / "draw.json"
    monkeypatch.setattr(standin_build, "draw_record_path", lambda ref: record)
    monkeypatch.setattr(standin_build, "recorded_draw", lambda ref: json.loads(record.read_text())["weights_sha256"]
                        if record.exists() else None)
    drawn = standin_build.draw_standin("tiny:pythia~seed3")  # no record: drawn and recorded
    assert json.loads(record.read_text())["weights_sha256"] == standin_build.weights_sha256(drawn)
    record.write_text(json.dumps({"weights_sha256": "0" * 64}))
    with pytest.raises(EmoverifyError, match="not deterministic here"):
        standin_build.draw_standin("tiny:pythia~seed3")


def test_the_draw_record_is_keyed_by_the_seed() -> None:
    assert draw_record_path("tiny:gpt2~seed1") != draw_record_path("tiny:gpt2~seed2")
    assert draw_record_path("tiny:gpt2~seed1").name.startswith("tiny-gpt2~seed1-")
    with pytest.raises(EmoverifyError, match="stored stand-in"):
        draw_record_path("tiny:gpt2")


def test_seeded_activations_are_their_own_entry_naming_the_drawn_weights(tmp_path: Path) -> None:
    seeded = ensure_activations("tiny:gpt-neo~seed1", "baseline", tmp_path)
    stored = ensure_activations("tiny:gpt-neo", "baseline", tmp_path)
    assert seeded.directory.parent.name == "tiny-gpt-neo~seed1" and seeded.cache_key == seeded.directory.name
    assert seeded.cache_key != stored.cache_key  # the key SUB-1..3 store their analyses under
    assert seeded.manifest["model"]["weights_sha256"] == weights_fingerprint("tiny:gpt-neo~seed1")
    assert seeded.manifest["model"]["seed"] == 1
    assert not np.array_equal(seeded.groups["anger"].sentence_end, stored.groups["anger"].sentence_end)
    assert ensure_activations("tiny:gpt-neo~seed1", "baseline", tmp_path).cache_key == seeded.cache_key
