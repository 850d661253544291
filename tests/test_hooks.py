"""Hooks: captures equal transformers' own hidden states, and every hook is removed, whatever happens."""

from __future__ import annotations

import pytest
import torch
from transformers.activations import NewGELUActivation

from emoverify.errors import EmoverifyError
from emoverify.lm.hooks import (
    KeptPositions,
    ablate_heads,
    act_name,
    add_to_residual,
    capture,
    fused_gelu,
    only_at_positions,
    parse_act_name,
)

TEXTS = ["Thank you so much for fixing the printer this morning.", "I am sorry."]


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _batch(lm):
    return lm.tokenizer(TEXTS, return_tensors="pt", padding=True)


def test_captures_equal_output_hidden_states(tiny_lm):
    names = [act_name("resid_pre", 0, tiny_lm.n_layers)] + [
        act_name("resid_post", layer, tiny_lm.n_layers) for layer in range(tiny_lm.n_layers)
    ]
    with torch.inference_mode(), capture(tiny_lm, names) as acts:
        hidden = tiny_lm.model(**_batch(tiny_lm), output_hidden_states=True).hidden_states
        last = tiny_lm.final_norm(acts[names[-1]])  # transformers returns the last entry after the final norm
    assert len(hidden) == tiny_lm.n_layers + 1
    for i, name in enumerate(names[:-1]):
        torch.testing.assert_close(acts[name], hidden[i], atol=1e-5, rtol=0)
    torch.testing.assert_close(last, hidden[-1], atol=1e-5, rtol=0)


def test_head_outputs_recompose_the_attention_output(tiny_lm):
    with torch.inference_mode(), capture(tiny_lm, ["blocks.1.attn.z"]) as acts:
        tiny_lm.model(**_batch(tiny_lm))
    z = acts["blocks.1.attn.z"]  # [batch, pos, n_heads, d_head]
    assert z.shape[2] == tiny_lm.n_heads and z.shape[2] * z.shape[3] == tiny_lm.d_model
    proj = tiny_lm.attn_out_proj(1)
    with torch.inference_mode():
        per_head = sum(proj(torch.where(torch.arange(tiny_lm.n_heads)[None, None, :, None] == h, z, 0).flatten(-2))
                       for h in range(tiny_lm.n_heads))
        whole = proj(z.flatten(-2))
    bias = proj.bias if proj.bias is not None else 0
    torch.testing.assert_close(per_head - (tiny_lm.n_heads - 1) * bias, whole, atol=1e-5, rtol=0)


def test_hooks_are_removed_even_when_the_forward_pass_fails(tiny_lm):
    before = _hook_count(tiny_lm.model)
    with pytest.raises(RuntimeError, match="boom"):
        with capture(tiny_lm, ["blocks.0.resid_post", "blocks.1.attn.z"]):
            assert _hook_count(tiny_lm.model) == before + 2
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        with add_to_residual(tiny_lm, 0, torch.zeros(tiny_lm.d_model)), ablate_heads(tiny_lm, 1, [0]):
            raise RuntimeError("boom")
    assert _hook_count(tiny_lm.model) == before


def test_a_bad_name_registers_nothing(tiny_lm):
    before = _hook_count(tiny_lm.model)
    with pytest.raises(EmoverifyError, match="the model has 2 blocks"):
        with capture(tiny_lm, ["blocks.0.resid_post", "blocks.7.resid_post"]):
            pass
    assert _hook_count(tiny_lm.model) == before


def test_steering_adds_the_vector_at_its_layer(tiny_lm):
    batch = _batch(tiny_lm)
    vector = torch.randn(tiny_lm.d_model, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        with capture(tiny_lm, ["blocks.0.resid_post"]) as plain:
            tiny_lm.model(**batch)
        with add_to_residual(tiny_lm, 0, vector, alpha=2.0), capture(tiny_lm, ["blocks.0.resid_post"]) as steered:
            tiny_lm.model(**batch)
    # The capture hook was registered after the steering hook, so it sees the steered stream.
    torch.testing.assert_close(steered["blocks.0.resid_post"] - plain["blocks.0.resid_post"],
                               (2.0 * vector).expand_as(plain["blocks.0.resid_post"]), atol=1e-5, rtol=0)


def test_zero_ablating_every_head_removes_attention_but_its_bias(tiny_lm):
    with torch.inference_mode(), ablate_heads(tiny_lm, 0, range(tiny_lm.n_heads)), \
            capture(tiny_lm, ["blocks.0.attn.z"]) as acts:
        tiny_lm.model(**_batch(tiny_lm))
    # capture sees the z the projection receives only if registered before the ablation; here it runs
    # after it, so it sees the ablated (all-zero) heads.
    assert torch.count_nonzero(acts["blocks.0.attn.z"]) == 0


def test_names_are_normalised_once():
    assert act_name("resid_post", -1, 12) == "blocks.11.resid_post"
    assert parse_act_name("blocks.3.attn.z") == (3, "attn.z")
    with pytest.raises(EmoverifyError):
        act_name("resid_mid", 0, 12)
    with pytest.raises(EmoverifyError):
        act_name("resid_post", 12, 12)


def test_steering_positions_are_the_models_positions_under_left_padding(tiny_lm):
    batch = tiny_lm.tokenizer(TEXTS, return_tensors="pt", padding=True, padding_side="left")
    position_ids = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    vector = torch.randn(tiny_lm.d_model, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        with capture(tiny_lm, ["blocks.1.resid_post"]) as plain:
            tiny_lm.model(**batch, position_ids=position_ids)
        with add_to_residual(tiny_lm, 1, vector, positions=[1, 3]), \
                capture(tiny_lm, ["blocks.1.resid_post"]) as steered:
            tiny_lm.model(**batch, position_ids=position_ids)
    diff = steered["blocks.1.resid_post"] - plain["blocks.1.resid_post"]  # [batch, pos, d]
    # the rows are padded differently, so the steered columns differ by row; pads have position 0: unsteered
    want = ((position_ids == 1) | (position_ids == 3)) & batch["attention_mask"].bool()
    assert want[0].nonzero().flatten().tolist() != want[1].nonzero().flatten().tolist()
    torch.testing.assert_close(diff, want[..., None] * vector, atol=1e-5, rtol=0)


def test_steering_during_cached_generation_equals_recomputing_every_step(tiny_lm):
    """With a KV cache each step runs only the new token; steering by position must not notice."""
    batch = tiny_lm.tokenizer(["Thank you so much for", "I am"], return_tensors="pt", padding=True,
                              padding_side="left")
    vector = torch.randn(tiny_lm.d_model, generator=torch.Generator().manual_seed(2))
    settings = {"max_new_tokens": 5, "do_sample": False, "pad_token_id": tiny_lm.tokenizer.pad_token_id,
                "output_scores": True, "return_dict_in_generate": True}
    runs = {}
    with torch.inference_mode():
        runs["plain"] = tiny_lm.model.generate(**batch, **settings)
        for cache in (True, False):
            with add_to_residual(tiny_lm, 0, vector, alpha=8.0, positions=slice(2, None)):
                runs[cache] = tiny_lm.model.generate(**batch, use_cache=cache, **settings)
    assert torch.equal(runs[True].sequences, runs[False].sequences)
    torch.testing.assert_close(torch.stack(runs[True].scores), torch.stack(runs[False].scores), atol=1e-4, rtol=0)
    assert not torch.allclose(torch.stack(runs[True].scores), torch.stack(runs["plain"].scores))


def test_steering_refuses_positions_counted_from_the_end(tiny_lm):
    with pytest.raises(EmoverifyError, match="count forward"):
        with add_to_residual(tiny_lm, 0, torch.zeros(tiny_lm.d_model), positions=slice(-2, None)):
            pass
    with pytest.raises(EmoverifyError, match=">= 0"):
        with add_to_residual(tiny_lm, 0, torch.zeros(tiny_lm.d_model), positions=[-1]):
            pass


def test_gelu_new_runs_fused_inside_the_block_and_is_put_back(tiny_lm):
    before = [type(tiny_lm.mlp(layer).act) for layer in range(tiny_lm.n_layers)]
    batch = _batch(tiny_lm)
    with torch.inference_mode():
        exact = tiny_lm.model(**batch).logits
        with fused_gelu(tiny_lm) as swapped:
            during = [type(tiny_lm.mlp(layer).act) for layer in range(tiny_lm.n_layers)]
            fused = tiny_lm.model(**batch).logits
    expected = tiny_lm.n_layers if tiny_lm.arch.model_type in ("gpt2", "gpt_neo") else 0  # Pythia: exact gelu
    assert swapped == expected == sum(t is NewGELUActivation for t in before)
    assert NewGELUActivation not in during
    assert [type(tiny_lm.mlp(layer).act) for layer in range(tiny_lm.n_layers)] == before
    torch.testing.assert_close(fused, exact, atol=1e-4, rtol=1e-4)  # the same function, up to rounding


def test_the_gelu_swap_is_undone_when_the_block_fails(tiny_lm):
    before = [tiny_lm.mlp(layer).act for layer in range(tiny_lm.n_layers)]
    with pytest.raises(RuntimeError, match="boom"):
        with fused_gelu(tiny_lm):
            raise RuntimeError("boom")
    assert all(tiny_lm.mlp(layer).act is act for layer, act in enumerate(before))


def test_position_wise_modules_run_only_at_the_kept_positions(tiny_lm):
    batch = _batch(tiny_lm)
    last = tiny_lm.n_layers - 1
    kept = KeptPositions(rows=torch.arange(2)[:, None], index=torch.tensor([[0, 3], [1, 2]]))
    before = _hook_count(tiny_lm.model)
    name = act_name("resid_post", last, tiny_lm.n_layers)
    with torch.inference_mode():
        with capture(tiny_lm, [name]) as full:
            tiny_lm.model(**batch)
        with capture(tiny_lm, [name]) as cut, only_at_positions([tiny_lm.attn_out_proj(last), tiny_lm.mlp(last)],
                                                                  kept):
            assert _hook_count(tiny_lm.model) == before + 5
            tiny_lm.model(**batch)
    torch.testing.assert_close(cut[name][kept.rows, kept.index], full[name][kept.rows, kept.index],
                               atol=1e-5, rtol=0)
    assert not torch.allclose(cut[name], full[name])  # elsewhere the two modules were skipped
    assert _hook_count(tiny_lm.model) == before
    with pytest.raises(RuntimeError, match="boom"):
        with only_at_positions([tiny_lm.mlp(last)], kept):
            raise RuntimeError("boom")
    assert _hook_count(tiny_lm.model) == before
