"""Loading: published configurations, stand-in caching, and the errors a researcher sees."""

from __future__ import annotations

import json

import pytest
import torch

from emoverify.errors import EmoverifyError, WeightsUnavailable
from emoverify.lm.checkpoints import check_weights, model_slug, weights_available
from emoverify.lm.models import ARCHITECTURES, load_model
from emoverify.lm.standins import ensure_standin, published_config
from emoverify.paper import PAPER_MODELS

# Parameter counts of the published checkpoints (GPT-2 ties its LM head to the embedding).
PUBLISHED_PARAMETERS = {"gpt2": 124_439_808, "pythia-160m": 162_322_944, "gpt-neo-125M": 125_198_592}


@pytest.mark.parametrize("name", list(PAPER_MODELS))
def test_standin_configuration_is_the_published_one(name):
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = dict(published_config(name))
    config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (12, 768, 12)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMETERS[name]
    if name == "pythia-160m":
        # transformers >= 5 keeps rotary_pct as rope_parameters["partial_rotary_factor"]
        rope = getattr(config, "rope_parameters", None) or {"partial_rotary_factor": config.rotary_pct}
        assert (rope["partial_rotary_factor"], config.use_parallel_residual, config.vocab_size) == (0.25, True, 50304)
    if name == "gpt-neo-125M":
        assert config.attention_layers == ["global", "local"] * 6 and config.window_size == 256


def test_tiny_models_cover_the_three_architectures(tiny_lm):
    assert tiny_lm.model.config.model_type in ARCHITECTURES
    assert (tiny_lm.n_layers, tiny_lm.d_model) == (2, 64)
    assert tiny_lm.provenance["source"] == "tiny"
    assert len(tiny_lm.provenance["weights_sha256"]) == 64
    assert not tiny_lm.model.training


def test_standin_is_rebuilt_when_its_weights_are_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOVERIFY_CACHE", str(tmp_path))
    directory = ensure_standin("tiny:gpt2")
    first = load_model("tiny:gpt2").provenance["weights_sha256"]
    weights = next(directory.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated, as an interrupted copy would leave it
    with pytest.warns(UserWarning, match="rebuilding the stand-in tiny:gpt2 .*model.safetensors does not match"):
        assert ensure_standin("tiny:gpt2") == directory
    assert load_model("tiny:gpt2").provenance["weights_sha256"] == first  # same seed, same weights
    record = json.loads((directory / "standin.json").read_text())
    assert record["seed"] == 0


def test_absent_weights_name_the_model_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert not weights_available("EleutherAI/pythia-160m")
    with pytest.raises(WeightsUnavailable) as info:
        load_model("EleutherAI/pythia-160m")
    message = str(info.value)
    assert "EleutherAI/pythia-160m" in message and "hf download EleutherAI/pythia-160m" in message
    assert info.value.fetch_command == "hf download EleutherAI/pythia-160m"
    with pytest.raises(WeightsUnavailable):
        check_weights(["tiny:gpt2", "gpt2"])


def test_unknown_architecture_is_one_clear_error(tmp_path):
    from transformers import BertConfig

    BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64).save_pretrained(
        tmp_path
    )
    with pytest.raises(EmoverifyError, match="architecture 'bert'.*gpt2, gpt_neo, gpt_neox"):
        load_model(str(tmp_path))


def test_unknown_standin_lists_the_known_ones():
    with pytest.raises(EmoverifyError, match="standin:gpt2"):
        load_model("standin:llama")


def test_local_directory_loads_through_from_pretrained(tmp_path):
    lm = load_model("tiny:gpt-neo")
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    again = load_model(str(tmp_path))
    assert again.provenance["source"] == "local"
    assert again.provenance["weights_sha256"] == lm.provenance["weights_sha256"]


def test_model_slugs_are_file_names():
    assert model_slug("EleutherAI/pythia-160m") == "EleutherAI--pythia-160m"
    assert model_slug("standin:gpt-neo-125M") == "standin-gpt-neo-125M"
    assert model_slug("gpt2@abc123") == "gpt2--rev-abc123"
