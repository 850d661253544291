"""Extraction and the artifact store: padding invariance, determinism, integrity, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from emoverify import store
from emoverify.data import EMOTIONS, load_dataset
from emoverify.errors import ArtifactError, EmoverifyError
from emoverify.lm.activation_store import (
    SITES,
    block_index,
    ensure_activations,
    group_dir,
    load_activations,
    stored_index,
)
from emoverify.lm.extraction import encode_prompts, extract_residuals
from emoverify.lm.hooks import act_name, capture

PROMPTS = [
    ("Thank you so much for fixing the printer this morning.", "Thank"),
    ("I am furious.", "furious"),
    ("I am so sorry that I broke the printer, and I will pay for the repair.", "sorry"),
]


def _spans():
    return [(text.index(word), text.index(word) + len(word)) for text, word in PROMPTS]


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_a_prompt_gives_the_same_activations_alone_and_in_a_padded_batch(tiny_lm, padding_side):
    texts = [t for t, _ in PROMPTS]
    batched, _ = extract_residuals(tiny_lm, texts, _spans(), batch_size=3, padding_side=padding_side)
    for i, text in enumerate(texts):
        alone, _ = extract_residuals(tiny_lm, [text], [_spans()[i]], batch_size=1)
        np.testing.assert_allclose(batched[i], alone[0], atol=1e-5, rtol=0)


def test_extraction_reads_the_sentence_end_and_the_emotion_token(tiny_lm):
    texts = [t for t, _ in PROMPTS]
    arrays, timing = extract_residuals(tiny_lm, texts, _spans(), batch_size=2)
    assert arrays.shape == (3, len(SITES), tiny_lm.n_layers + 1, tiny_lm.d_model)
    encoded = encode_prompts(tiny_lm.tokenizer, texts, _spans())
    for i, (text, word) in enumerate(PROMPTS):
        ids = encoded.input_ids[i, : int(encoded.attention_mask[i].sum())]
        assert tiny_lm.tokenizer.decode(ids) == text  # the mask covers the whole prompt, nothing else
        token = tiny_lm.tokenizer.decode(encoded.input_ids[i, encoded.emotion_token[i]]).strip()
        assert token and word.endswith(token)  # the last token of the emotion word
        names = [act_name("resid_pre", 0, tiny_lm.n_layers), act_name("resid_post", -1, tiny_lm.n_layers)]
        with torch.inference_mode(), capture(tiny_lm, names) as acts:
            tiny_lm.model(ids[None])
        np.testing.assert_allclose(arrays[i, 0, 0], acts[names[0]][0, -1].numpy(), atol=1e-5)
        np.testing.assert_allclose(arrays[i, 0, -1], acts[names[1]][0, -1].numpy(), atol=1e-5)
        np.testing.assert_allclose(arrays[i, 1, -1], acts[names[1]][0, encoded.emotion_token[i]].numpy(), atol=1e-5)
    assert timing["samples_per_s"] > 0 and timing["tokens"] == int(encoded.attention_mask.sum())


def test_extraction_equals_output_hidden_states_at_every_layer(tiny_lm):
    """Every layer, both positions, inside a padded batch; the last block runs its MLP and output projection
    only at the kept positions, so its entry is checked against transformers' (after the final norm)."""
    texts = [t for t, _ in PROMPTS]
    arrays, _ = extract_residuals(tiny_lm, texts, _spans(), batch_size=3)
    encoded = encode_prompts(tiny_lm.tokenizer, texts, _spans())
    with torch.inference_mode():
        hidden = tiny_lm.base(
            input_ids=encoded.input_ids, attention_mask=encoded.attention_mask,
            position_ids=encoded.position_ids, output_hidden_states=True,
        ).hidden_states
        rows = torch.arange(len(texts))[:, None]
        index = torch.stack([encoded.sentence_end, encoded.emotion_token], dim=1)
        expected = torch.stack([h[rows, index] for h in hidden], dim=2).numpy()  # [n, 2, L+1, d]
        ours_last = tiny_lm.final_norm(torch.from_numpy(arrays[:, :, -1])).numpy()
    np.testing.assert_allclose(arrays[:, :, :-1], expected[:, :, :-1], atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours_last, expected[:, :, -1], atol=1e-5, rtol=0)


def _hook_counts(model):
    # transformers registers hooks of its own (output recording); only ours must be gone afterwards.
    return [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]


def test_extraction_leaves_the_model_as_it_was(tiny_lm):
    ids = tiny_lm.tokenizer(PROMPTS[0][0], return_tensors="pt")["input_ids"]
    hooks_before = _hook_counts(tiny_lm.model)
    with torch.inference_mode():
        before = tiny_lm.model(ids).logits
        extract_residuals(tiny_lm, [t for t, _ in PROMPTS], _spans())
        after = tiny_lm.model(ids).logits
    torch.testing.assert_close(after, before, atol=0, rtol=0)
    assert _hook_counts(tiny_lm.model) == hooks_before


def _files(root, ref="tiny:gpt2", dataset="baseline"):
    return {p.name: p.read_bytes() for p in sorted(group_dir(root, dataset, ref).glob("*.safetensors"))}


def test_store_layout_provenance_and_byte_identical_reruns(tmp_path):
    first = ensure_activations("tiny:gpt2", "baseline", tmp_path / "a")
    ensure_activations("tiny:gpt2", "baseline", tmp_path / "b")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert sorted(_files(tmp_path / "a")) == sorted(f"{e}.safetensors" for e in EMOTIONS)
    frame = load_dataset("baseline")
    for emotion in EMOTIONS:
        group = first.groups[emotion]
        assert group.sentence_end.shape == ((frame.emotion == emotion).sum(), 3, 64)
        assert group.emotion_token.dtype == np.float32
        assert list(group.ids) == frame.id[frame.emotion == emotion].tolist()
    assert first.directory == group_dir(tmp_path / "a", "baseline", "tiny:gpt2")
    assert first.directory.relative_to(tmp_path / "a").parts[:3] == ("activations", "baseline", "tiny-gpt2")
    manifest = first.manifest
    for field in ("model", "config", "dataset", "settings", "throughput", "environment", "groups"):
        assert field in manifest
    assert manifest["model"]["weights_sha256"] and manifest["dataset"]["sha256"]
    assert manifest["throughput"]["samples_per_s"] > 0
    assert manifest["environment"]["libraries"]["torch"] == torch.__version__


def test_a_rerun_reuses_the_store_without_loading_the_model(tmp_path, monkeypatch):
    ensure_activations("tiny:pythia", "baseline", tmp_path)
    from emoverify.lm import extraction, models

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded although the store is intact")

    monkeypatch.setattr(models, "load_model", no_load)
    monkeypatch.setattr(extraction, "extract_residuals", no_load)
    store.forget()  # in a new process too: read from disk, checked
    again = ensure_activations("tiny:pythia", "baseline", tmp_path)
    assert again.groups["anger"].sentence_end.shape[1] == 3
    assert not again.groups["anger"].sentence_end.flags.writeable  # one copy, shared by every reader


def test_reading_stored_activations_imports_no_torch(tmp_path):
    ensure_activations("tiny:gpt2", "baseline", tmp_path)
    code = ("import sys; from emoverify.lm.activation_store import ensure_activations; "
            f"acts = ensure_activations('tiny:gpt2', 'baseline', {str(tmp_path)!r}); "
            "print(len(acts.groups), sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "4 []"


def test_other_settings_are_another_entry_beside_the_first(tmp_path):
    first = ensure_activations("tiny:gpt2", "baseline", tmp_path)
    bf16 = ensure_activations("tiny:gpt2", "baseline", tmp_path, dtype=torch.bfloat16)
    assert bf16.directory != first.directory and bf16.directory.parent == first.directory.parent
    assert load_activations(tmp_path, "baseline", "tiny:gpt2").directory == first.directory  # still there
    assert bf16.manifest["settings"]["dtype"] == "bfloat16"


def test_a_corrupted_file_is_caught_and_recomputed(tmp_path):
    ensure_activations("tiny:gpt-neo", "baseline", tmp_path)
    path = group_dir(tmp_path, "baseline", "tiny:gpt-neo") / "anger.safetensors"
    good = path.read_bytes()
    corrupt = bytearray(good)
    corrupt[-8:] = b"\x00" * 8  # flip the last float's bytes: still loadable, wrong numbers
    path.write_bytes(bytes(corrupt))
    with pytest.raises(ArtifactError, match="anger.safetensors does not match its manifest"):
        load_activations(tmp_path, "baseline", "tiny:gpt-neo")
    with pytest.warns(UserWarning, match="recomputing activations/baseline/tiny-gpt-neo: .*anger.safetensors"):
        ensure_activations("tiny:gpt-neo", "baseline", tmp_path)
    assert path.read_bytes() == good
    path.write_bytes(good[: len(good) // 2])  # partial, as an interrupted copy leaves it
    with pytest.raises(ArtifactError):
        load_activations(tmp_path, "baseline", "tiny:gpt-neo")
    (group_dir(tmp_path, "baseline", "tiny:gpt-neo") / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="incomplete"):
        load_activations(tmp_path, "baseline", "tiny:gpt-neo")
    with pytest.raises(ArtifactError, match="no activations for tiny:gpt-neo on extended"):
        load_activations(tmp_path, "extended", "tiny:gpt-neo")


def test_block_and_stored_indices_convert_both_ways():
    assert [stored_index(b) for b in range(12)] == list(range(1, 13))
    assert [block_index(stored_index(b, 12), 12) for b in range(12)] == list(range(12))
    with pytest.raises(EmoverifyError, match="embedding"):
        block_index(0)
    with pytest.raises(EmoverifyError):
        stored_index(-1)
    with pytest.raises(EmoverifyError):
        stored_index(12, n_layers=12)
    with pytest.raises(EmoverifyError):
        block_index(13, n_layers=12)


def test_stored_index_l_plus_one_is_block_l_output(tiny_lm):
    texts = [t for t, _ in PROMPTS]
    arrays, _ = extract_residuals(tiny_lm, texts, _spans(), batch_size=3)  # [n, 2, L + 1, d]
    encoded = encode_prompts(tiny_lm.tokenizer, texts, _spans())
    for block in range(tiny_lm.n_layers):
        name = act_name("resid_post", block, tiny_lm.n_layers)
        with torch.inference_mode(), capture(tiny_lm, [name]) as acts:
            tiny_lm.base(input_ids=encoded.input_ids, attention_mask=encoded.attention_mask,
                         position_ids=encoded.position_ids)
        ends = acts[name][torch.arange(len(texts)), encoded.sentence_end].numpy()
        np.testing.assert_allclose(arrays[:, 0, stored_index(block)], ends, atol=1e-5, rtol=0)


def test_cli_run_writes_one_file_per_emotion_and_a_manifest(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "emoverify", "run", "--models", "tiny:gpt2,tiny:pythia", "--dataset", "all",
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    files = sorted(tmp_path.glob("activations/*/*/*/*.safetensors"))  # dataset / model / key / emotion
    assert len(files) == 2 * 2 * len(EMOTIONS)  # datasets x models x emotions
    manifests = sorted(tmp_path.glob("activations/*/*/*/manifest.json"))
    assert len(manifests) == 4 and all(len(json.loads(m.read_text())["files"]) == 4 for m in manifests)


def test_cli_run_stops_at_once_without_weights(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "hub")}
    result = subprocess.run([sys.executable, "-m", "emoverify", "run", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    assert "the weights of gpt2, EleutherAI/pythia-160m, EleutherAI/gpt-neo-125M are not on this machine" in \
        result.stderr and "hf download gpt2 && hf download EleutherAI/pythia-160m" in result.stderr
    assert not list(tmp_path.rglob("*.safetensors"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on a GPU machine)")
@pytest.mark.parametrize("ref", ["tiny:gpt2", "tiny:pythia", "tiny:gpt-neo"])
def test_cuda_extraction_matches_cpu(ref):
    from emoverify.lm.models import load_model

    texts = [t for t, _ in PROMPTS]
    on_cpu, _ = extract_residuals(load_model(ref), texts, _spans(), batch_size=2)
    on_gpu, timing = extract_residuals(load_model(ref, device="cuda"), texts, _spans(), batch_size=2)
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4, rtol=1e-4)
