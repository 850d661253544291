"""Extraction throughput: emoverify's `extract_residuals` against the anchors a user could write instead.

The job: for every prompt of a dataset, the residual stream after the embedding and after every block
(`[n, 2, n_layers + 1, d_model]`) at two positions (the sentence end and the emotion token).

Contenders (each runs from the prompt texts to that array, in a fresh subprocess, on the same weights):

* `emoverify`             `emoverify.lm.extraction.extract_residuals` (base model, no LM head, hooks that
                          keep 2 positions, `torch.inference_mode()`).
* `full_lm_forward`       anchor (a): `lm.model(input_ids, attention_mask, position_ids)` computing
                          logits, nothing kept: the cost of one plain forward pass of the full LM.
* `hidden_states_base`    anchor (b): `lm.base(..., output_hidden_states=True)`, then the 2 positions
                          gathered from every hidden state (the fastest way to use the flag).
* `hidden_states_full`    anchor (b'): `lm.model(..., output_hidden_states=True)`, what most users write
                          (it also computes the logits).
* `nnsight`               anchor (c): `nnsight.LanguageModel(lm.model, tokenizer=...)`; one `.trace` per
                          batch saving `blocks[0].input` and every block's output already indexed at the 2
                          positions, then `tracer.stop()` after the last block (no final norm, no LM head).
* `transformer_lens`      anchor (c): `TransformerBridge.boot_transformers(<stand-in dir>, hf_model=...)`,
                          `run_with_cache(names_filter=[hook_resid_pre 0, hook_resid_post 0..L-1],
                          stop_at_layer=n_layers, return_type=None)`. TransformerLens 4.x only stops before
                          a block (`stop_at_layer < n_layers`), so with the last block needed the LM head
                          still runs; the benchmark checks and records whether it did.
* `transformer_lens_stop` the same plus a forward hook on `ln_final.hook_in` that raises TransformerLens's own
                          `StopAtLayerException`: TransformerLens at its fastest for this job (no final
                          norm, no LM head).

Every contender tokenizes with `emoverify.lm.extraction.encode_prompts` inside the timed region and runs the
same length-sorted batches of `--batch-size` prompts, each cut to its longest prompt, so only the method
differs. One warm-up run, then the median of `--repeats` runs. Each anchor's captures are compared with
emoverify's (max abs difference); `hidden_states[-1]` is after the final layer norm, so it is compared with
the final norm applied to emoverify's last entry.

Also measured: the machine's fp32 matmul rate (GEMMs of the model's shapes and a large square one), the
FLOPs of each contender (2 x matmul parameters per real token + causal attention scores for the real
lengths, + the LM head where it runs), the fraction of the measured matmul peak each reaches, and peak
memory (process RSS sampled during the timed runs, and `ru_maxrss`; CUDA: `max_memory_allocated`).

    python benchmarks/extraction.py                       # CPU, 3 full-size stand-ins, extended dataset
    python benchmarks/extraction.py --device cuda
    python benchmarks/extraction.py --quick               # tiny models, 1 repeat: a smoke test

Results: `benchmarks/results/extraction-<device>.json` and `.md` (`--out` to change the directory).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"
FULL_MODELS = ["standin:gpt2", "standin:pythia-160m", "standin:gpt-neo-125M"]
QUICK_MODELS = ["tiny:gpt2", "tiny:pythia", "tiny:gpt-neo"]
CONTENDERS = ["emoverify", "full_lm_forward", "hidden_states_base", "hidden_states_full", "nnsight",
              "transformer_lens", "transformer_lens_stop"]
BASELINE = "full_lm_forward"
# The targets of the issue: extraction >= 1.3x a bare forward of the full LM, and no slower than the fastest
# anchor configuration.
TARGET_SPEEDUP = 1.3


# --------------------------------------------------------------------------------------------------
# Shared helpers


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _RssSampler:
    """Samples the process RSS every few ms in a thread: the peak of a region, not of the whole process."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> _RssSampler:
        self.peak = _rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _machine(device: str) -> dict[str, Any]:
    from emoverify.provenance import environment, machine

    info: dict[str, Any] = {
        "cpu_model": machine()["cpu"],
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "torch_version": torch.__version__,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "loadavg_at_start": os.getloadavg(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                       "cuda": torch.version.cuda, "tf32_matmul": torch.backends.cuda.matmul.allow_tf32}
    for name in ("nnsight", "transformer_lens", "transformers"):
        try:
            from importlib.metadata import version

            info[f"{name}_version"] = version(name.replace("_", "-"))
        except Exception:  # noqa: BLE001 - an absent optional package is recorded as None
            info[f"{name}_version"] = None
    return info


def _prompts(dataset: str) -> tuple[list[str], list[tuple[int, int]], list[str]]:
    from emoverify.data import load_dataset

    frame = load_dataset(dataset)
    spans = list(zip(frame["span_start"].tolist(), frame["span_end"].tolist(), strict=True))
    return frame["text"].tolist(), spans, frame["id"].tolist()


def _plan(encoded: Any, batch_size: int) -> list[tuple[torch.Tensor, int]]:
    """The batches `extract_residuals` runs: prompts sorted by length (longest first), cut to the longest."""
    lengths = encoded.attention_mask.sum(-1)
    order = torch.argsort(lengths, descending=True, stable=True)
    plan = []
    for lo in range(0, len(order), batch_size):
        rows = order[lo : lo + batch_size]
        plan.append((rows, int(lengths[rows].max())))
    return plan


# --------------------------------------------------------------------------------------------------
# FLOPs


def flop_counts(lm: Any, lengths: list[int], widths: list[tuple[int, int]]) -> dict[str, float]:
    """FLOPs of one pass over the prompts.

    `base`: 2 x (matmul parameters of the blocks) per real token + causal attention (QK^T and AV,
    4 * d_model * attended positions per token per layer; GPT-Neo's local layers attend at most
    `window_size` back), for the real lengths; `lm_head`: 2 x d_model x vocab per real token.
    `padded_tokens` counts the tokens the batches actually run (each batch cut to its longest prompt).
    """
    d = lm.d_model
    block_matmul = sum(p.numel() for p in lm.blocks.parameters() if p.dim() == 2)
    config = lm.model.config
    windows: list[int | None] = [None] * lm.n_layers
    if config.model_type == "gpt_neo":
        windows = [config.window_size if kind == "local" else None for kind in config.attention_layers]
    attended = 0
    for n in lengths:
        pos = np.arange(1, n + 1)
        attended += sum(int(np.minimum(pos, w).sum()) if w else int(pos.sum()) for w in windows)
    tokens = sum(lengths)
    head = lm.model.get_output_embeddings().weight
    base = 2.0 * block_matmul * tokens + 4.0 * d * attended
    return {"tokens": tokens, "padded_tokens": sum(b * w for b, w in widths),
            "block_matmul_params": block_matmul, "base": base, "lm_head": 2.0 * head.numel() * tokens,
            "base_per_token": base / tokens, "lm_head_per_token": 2.0 * head.numel()}


def matmul_rates(device: torch.device, m_tokens: int, d: int = 768, d_ff: int = 3072, vocab: int = 50257,
                 repeats: int = 5) -> dict[str, Any]:
    """fp32 GEMM rate (FLOP/s) of the model's shapes at `m_tokens` rows, and of a large square GEMM."""
    shapes = {
        f"qkv [{m_tokens}x{d}]@[{d}x{3 * d}]": (m_tokens, d, 3 * d),
        f"mlp_in [{m_tokens}x{d}]@[{d}x{d_ff}]": (m_tokens, d, d_ff),
        f"mlp_out [{m_tokens}x{d_ff}]@[{d_ff}x{d}]": (m_tokens, d_ff, d),
        f"lm_head [{m_tokens}x{d}]@[{d}x{vocab}]": (m_tokens, d, vocab),
    }
    square = 4096 if device.type == "cuda" else 2048
    shapes[f"square [{square}x{square}]@[{square}x{square}]"] = (square, square, square)
    rates = {}
    with torch.inference_mode():
        for name, (m, k, n) in shapes.items():
            a = torch.randn(m, k, device=device)
            b = torch.randn(k, n, device=device)
            out = torch.empty(m, n, device=device)
            flops = 2.0 * m * k * n
            torch.mm(a, b, out=out)  # warm-up
            _sync(device)
            # enough calls per timing for ~0.2 s
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            _sync(device)
            one = max(time.perf_counter() - start, 1e-6)
            calls = max(1, int(0.2 / one))
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                for _ in range(calls):
                    torch.mm(a, b, out=out)
                _sync(device)
                times.append((time.perf_counter() - start) / calls)
            rates[name] = flops / statistics.median(times)
    return {"flop_per_s": rates, "peak_flop_per_s": max(rates.values()),
            "model_shapes_flop_per_s": statistics.median(
                [v for k, v in rates.items() if not k.startswith(("square", "lm_head"))]),
            "threads": torch.get_num_threads(), "m_tokens": m_tokens}


# --------------------------------------------------------------------------------------------------
# Contenders: each `setup(lm, texts, spans, ids, batch_size)` returns (run, info); `run()` returns the
# `[n, 2, n_layers + 1, d_model]` array (or None for the bare forward).


def _batched(lm: Any, texts: list[str], spans: list[tuple[int, int]], ids: list[str], batch_size: int,
             step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], Any],
             keep: bool = True, limit: int | None = None) -> np.ndarray | None:
    """Tokenize, then run `step(rows, input_ids, attention_mask, position_ids, index)` on each batch of the
    shared plan; `step` returns `[batch, 2, n_layers + 1, d_model]` (or None)."""
    from emoverify.lm.extraction import encode_prompts

    device = lm.device
    encoded = encode_prompts(lm.tokenizer, texts, spans, ids)
    out = np.empty((len(texts), 2, lm.n_layers + 1, lm.d_model), dtype=np.float32) if keep else None
    with torch.inference_mode():
        for rows, width in _plan(encoded, batch_size)[:limit]:
            index = torch.stack([encoded.sentence_end[rows], encoded.emotion_token[rows]], dim=1).to(device)
            got = step(rows, encoded.input_ids[rows, :width].to(device),
                       encoded.attention_mask[rows, :width].to(device),
                       encoded.position_ids[rows, :width].to(device), index)
            if keep:
                out[rows.numpy()] = got.float().cpu().numpy()
    return out


def _gather(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None]
    return hidden[rows, index]  # [batch, 2, d_model]


def setup_emoverify(lm, texts, spans, ids, batch_size):
    from emoverify.lm.extraction import extract_residuals

    inner: dict[str, Any] = {}

    def run(limit=None):
        if limit is not None:  # warm-up: the `limit` batches of longest prompts
            from emoverify.lm.extraction import encode_prompts

            lengths = encode_prompts(lm.tokenizer, texts, spans, ids).attention_mask.sum(-1)
            keep = torch.argsort(lengths, descending=True, stable=True)[: limit * batch_size].tolist()
            return extract_residuals(lm, [texts[i] for i in keep], [spans[i] for i in keep],
                                     [ids[i] for i in keep], batch_size=batch_size)[0]
        arrays, timing = extract_residuals(lm, texts, spans, ids, batch_size=batch_size)
        inner.update(timing)
        return arrays

    return run, {"config": "extract_residuals(lm, texts, spans, ids, batch_size) as `emoverify run` calls it: "
                           "base model without the LM head, capture hooks keeping the 2 positions, the last "
                           "block's attention output projection and MLP run at those 2 positions only, GPT-2's "
                           "and GPT-Neo's gelu_new as torch's fused tanh-GELU (same formula)",
                 "inner_timing": inner}


def setup_full_lm_forward(lm, texts, spans, ids, batch_size):
    def step(rows, input_ids, mask, pos, index):
        out = lm.model(input_ids=input_ids, attention_mask=mask, position_ids=pos, use_cache=False)
        assert out.logits.shape[-1] == lm.model.get_output_embeddings().weight.shape[0]

    return (lambda limit=None: _batched(lm, texts, spans, ids, batch_size, step, keep=False, limit=limit),
            {"config": "lm.model(input_ids, attention_mask, position_ids, use_cache=False) under "
                       "torch.inference_mode(); logits for every position, nothing kept"})


def _setup_hidden_states(module_of: Callable[[Any], Any], what: str):
    def setup(lm, texts, spans, ids, batch_size):
        module = module_of(lm)

        def step(rows, input_ids, mask, pos, index):
            out = module(input_ids=input_ids, attention_mask=mask, position_ids=pos, use_cache=False,
                         output_hidden_states=True)
            return torch.stack([_gather(h, index) for h in out.hidden_states], dim=2)

        return (lambda limit=None: _batched(lm, texts, spans, ids, batch_size, step, limit=limit),
                {"config": f"{what}(input_ids, attention_mask, position_ids, use_cache=False, "
                           "output_hidden_states=True) under torch.inference_mode(); the 2 positions "
                           "gathered from each of the n_layers + 1 hidden states",
                 "note": "hidden_states[-1] is after the final layer norm (transformers' convention), "
                         "emoverify's last entry before it"})

    return setup


setup_hidden_states_base = _setup_hidden_states(lambda lm: lm.base, "lm.base")
setup_hidden_states_full = _setup_hidden_states(lambda lm: lm.model, "lm.model")


def setup_nnsight(lm, texts, spans, ids, batch_size):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0.8 deprecates LanguageModel in favour of TransformersModel
        from nnsight import LanguageModel

        model = LanguageModel(lm.model, tokenizer=lm.tokenizer)
    blocks = getattr(getattr(model, lm.arch.base), lm.arch.blocks)
    n_layers = lm.n_layers

    def step(rows, input_ids, mask, pos, index):
        saved: list[Any] = []
        batch_rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None]
        with model.trace(input_ids=input_ids, attention_mask=mask, position_ids=pos, use_cache=False) as tracer:
            first = blocks[0].input
            saved.append(first[batch_rows, index].save())
            for layer in range(n_layers):
                hidden = blocks[layer].output
                hidden = hidden[0] if isinstance(hidden, tuple) else hidden
                saved.append(hidden[batch_rows, index].save())
            tracer.stop()
        return torch.stack(saved, dim=2)

    return (lambda limit=None: _batched(lm, texts, spans, ids, batch_size, step, limit=limit),
            {"config": "LanguageModel(lm.model, tokenizer=lm.tokenizer); per batch one "
                       "model.trace(input_ids=, attention_mask=, position_ids=, use_cache=False) saving "
                       "blocks[0].input and blocks[l].output indexed at the 2 positions inside the trace, "
                       "then tracer.stop() after the last block (early stop: no final norm, no LM head)"})


def _setup_transformer_lens(stop_after_last_block: bool):
    def setup(lm, texts, spans, ids, batch_size):
        import logging

        logging.getLogger().setLevel(logging.ERROR)
        from transformer_lens.model_bridge import TransformerBridge
        from transformer_lens.model_bridge.exceptions import StopAtLayerException

        # The stand-in's directory holds its config, so nothing is fetched from the hub; the bridge wraps
        # the already-loaded model (same weights) and switches it to eager attention, as TransformerLens
        # needs for its attention hooks.
        bridge = TransformerBridge.boot_transformers(lm.provenance["path"], hf_model=lm.model,
                                                     tokenizer=lm.tokenizer, device=str(lm.device),
                                                     dtype=next(lm.model.parameters()).dtype)
        n_layers = lm.n_layers
        names = ["blocks.0.hook_resid_pre"] + [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]

        def stop(tensor, *, hook):
            raise StopAtLayerException(tensor)

        def step(rows, input_ids, mask, pos, index):
            kwargs = dict(attention_mask=mask, names_filter=names, stop_at_layer=n_layers, return_type=None)
            if stop_after_last_block:
                with bridge.hooks(fwd_hooks=[("ln_final.hook_in", stop)]):
                    _, cache = bridge.run_with_cache(input_ids, **kwargs)
            else:
                _, cache = bridge.run_with_cache(input_ids, **kwargs)
            return torch.stack([_gather(cache[name], index) for name in names], dim=2)

        config = ("TransformerBridge.boot_transformers(<stand-in dir>, hf_model=lm.model, tokenizer=...); "
                  "run_with_cache(input_ids, attention_mask=, names_filter=[blocks.0.hook_resid_pre, "
                  "blocks.l.hook_resid_post], stop_at_layer=n_layers, return_type=None)")
        if stop_after_last_block:
            config += " inside bridge.hooks(fwd_hooks=[('ln_final.hook_in', raise StopAtLayerException)])"
        return (lambda limit=None: _batched(lm, texts, spans, ids, batch_size, step, limit=limit),
                {"config": config, "attn_implementation": lm.model.config._attn_implementation,
                 "note": "position_ids are not passed (run_with_cache derives them); with right padding "
                         "they are the same for every real token"})

    return setup


setup_transformer_lens = _setup_transformer_lens(False)
setup_transformer_lens_stop = _setup_transformer_lens(True)

SETUPS = {name: globals()[f"setup_{name}"] for name in CONTENDERS}
# Whether a contender is meant to run the LM head (for its FLOP count); checked against a hook at run time.
RUNS_LM_HEAD = {"full_lm_forward": True, "hidden_states_full": True}


# --------------------------------------------------------------------------------------------------
# Worker: one model x one contender, in its own process


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    from emoverify.lm.models import load_model

    device = torch.device(spec["device"])
    texts, spans, ids = _prompts(spec["dataset"])
    lm = load_model(spec["model"], device=spec["device"])
    from emoverify.lm.extraction import encode_prompts

    # FLOPs from the model as loaded: a wrapper (TransformerLens' bridge) may register parameters of its own.
    encoded = encode_prompts(lm.tokenizer, texts, spans, ids)
    flops = flop_counts(lm, encoded.attention_mask.sum(-1).tolist(),
                        [(len(rows), width) for rows, width in _plan(encoded, spec["batch_size"])])
    setup = SETUPS[spec["contender"]]
    run, info = setup(lm, texts, spans, ids, spec["batch_size"])

    head_calls = [0]
    head = lm.model.get_output_embeddings()
    handle = head.register_forward_hook(lambda *a: head_calls.__setitem__(0, head_calls[0] + 1))

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = _rss_bytes()
    with _RssSampler() as sampler:
        start = time.perf_counter()
        run(limit=spec["warmup_batches"])  # warm-up: the longest batches
        _sync(device)
        warmup_s = time.perf_counter() - start
        lm_head_ran = head_calls[0] > 0
        handle.remove()
        times = []
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            result = run()
            _sync(device)
            times.append(time.perf_counter() - start)
    record: dict[str, Any] = {
        "model": spec["model"], "contender": spec["contender"], **info,
        "seconds": statistics.median(times), "seconds_all": times, "warmup_seconds": warmup_s,
        "lm_head_ran": lm_head_ran,
        "rss_before_run_mib": rss_before / 2**20, "rss_peak_run_mib": sampler.peak / 2**20,
        "rss_run_increase_mib": (sampler.peak - rss_before) / 2**20,
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,
        "torch_num_threads": torch.get_num_threads(),
        "loadavg_after": os.getloadavg(),
    }
    if device.type == "cuda":
        record["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20

    record["flops"] = flops

    # Tokenization alone (inside every contender's timed region).
    start = time.perf_counter()
    encode_prompts(lm.tokenizer, texts, spans, ids)
    record["tokenize_seconds"] = time.perf_counter() - start

    reference = spec.get("reference")
    if result is not None and spec["contender"] == "emoverify":
        np.save(spec["reference"], result)
    elif result is not None and reference and Path(reference).is_file():
        ref = np.load(reference)
        diff: dict[str, float] = {"layers_0_to_L-1": float(np.abs(result[:, :, :-1] - ref[:, :, :-1]).max())}
        if spec["contender"].startswith("hidden_states"):
            with torch.inference_mode():
                normed = lm.final_norm(torch.from_numpy(ref[:, :, -1]).to(device)).float().cpu().numpy()
            diff["last_vs_final_norm_of_ours"] = float(np.abs(result[:, :, -1] - normed).max())
            diff["last_vs_ours_(differs_by_design)"] = float(np.abs(result[:, :, -1] - ref[:, :, -1]).max())
        else:
            diff["last_layer"] = float(np.abs(result[:, :, -1] - ref[:, :, -1]).max())
        record["max_abs_diff_vs_emoverify"] = diff
    return record


# --------------------------------------------------------------------------------------------------
# Driver


def _run_worker(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as f:
        result_path = f.name
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec), "--worker-out", result_path]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
            return {"model": spec["model"], "contender": spec["contender"], "error": "\n".join(tail)}
        return json.loads(Path(result_path).read_text())
    except subprocess.TimeoutExpired:
        return {"model": spec["model"], "contender": spec["contender"], "error": f"timed out after {timeout}s"}
    finally:
        Path(result_path).unlink(missing_ok=True)


def _merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One record from a contender's rounds: every timed run pooled, the median over all of them."""
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return rounds[-1]
    merged = dict(ok[0])
    merged["seconds_all"] = [t for r in ok for t in r["seconds_all"]]
    merged["seconds"] = statistics.median(merged["seconds_all"])
    merged["seconds_by_round"] = [r["seconds_all"] for r in ok]
    merged["warmup_seconds"] = [r["warmup_seconds"] for r in ok]
    merged["loadavg_after"] = [r["loadavg_after"] for r in ok]
    for key in ("rss_peak_run_mib", "rss_run_increase_mib", "ru_maxrss_mib", "cuda_max_allocated_mib"):
        if key in merged:
            merged[key] = max(r[key] for r in ok)
    merged["rounds"] = len(ok)
    if len(ok) < len(rounds):
        merged["failed_rounds"] = [r["error"] for r in rounds if "error" in r]
    return merged


def _derive(records: list[dict[str, Any]], peak: float, shapes_rate: float) -> None:
    """Add throughput, speed-up vs the full-LM forward, FLOP/s and fraction of the matmul rate."""
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        by_model.setdefault(r["model"], {})[r["contender"]] = r
    for contenders in by_model.values():
        base = contenders.get(BASELINE)
        for r in contenders.values():
            if "error" in r:
                continue
            f = r["flops"]
            r["tokens"] = f["tokens"]
            r["tokens_per_s"] = f["tokens"] / r["seconds"]
            r["samples_per_s"] = r.get("n_prompts", 0) / r["seconds"] if r.get("n_prompts") else None
            flops = f["base"] + (f["lm_head"] if r["lm_head_ran"] else 0.0)
            r["flops_counted"] = flops
            r["flop_per_s"] = flops / r["seconds"]
            r["fraction_of_peak_matmul"] = r["flop_per_s"] / peak
            r["fraction_of_model_shape_matmul"] = r["flop_per_s"] / shapes_rate
            if base and "error" not in base:
                r["speedup_vs_full_lm_forward"] = base["seconds"] / r["seconds"]


def _ratio_interval(numerator: list[float], denominator: list[float], draws: int = 2000) -> list[float]:
    """95% bootstrap interval of median(numerator) / median(denominator), resampling each one's runs."""
    rng = np.random.default_rng(0)
    num, den = np.asarray(numerator), np.asarray(denominator)
    ratios = (np.median(rng.choice(num, (draws, num.size)), axis=1)
              / np.median(rng.choice(den, (draws, den.size)), axis=1))
    return [float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975))]


def _verdict(records: list[dict[str, Any]]) -> dict[str, Any]:
    verdict: dict[str, Any] = {}
    models = sorted({r["model"] for r in records}, key=[r["model"] for r in records].index)
    for model in models:
        rs = {r["contender"]: r for r in records if r["model"] == model and "error" not in r}
        ours = rs.get("emoverify")
        if ours is None:
            continue
        anchors = {k: v for k, v in rs.items() if k != "emoverify"}
        fastest = min(anchors, key=lambda k: anchors[k]["seconds"]) if anchors else None
        # Anchors that do the same job (capture every layer at the 2 positions) vs the bare forward.
        verdict[model] = {
            "speedup_vs_full_lm_forward": ours.get("speedup_vs_full_lm_forward"),
            "meets_1.3x_full_lm_forward": (ours.get("speedup_vs_full_lm_forward") or 0) >= TARGET_SPEEDUP,
            "fastest_anchor": fastest,
            "vs_fastest_anchor": anchors[fastest]["seconds"] / ours["seconds"] if fastest else None,
            "vs_fastest_anchor_ci95": _ratio_interval(anchors[fastest]["seconds_all"], ours["seconds_all"])
            if fastest else None,
            "no_slower_than_fastest_anchor": ours["seconds"] <= anchors[fastest]["seconds"] if fastest else None,
            "fraction_of_peak_matmul": ours["fraction_of_peak_matmul"],
        }
    return verdict


LABELS = {
    "emoverify": "**emoverify** `extract_residuals`",
    "full_lm_forward": "(a) full LM forward (logits)",
    "hidden_states_base": "(b) `lm.base(output_hidden_states=True)`",
    "hidden_states_full": "(b') `lm.model(output_hidden_states=True)`",
    "nnsight": "(c) nnsight trace + early stop",
    "transformer_lens": "(c) TransformerLens run_with_cache",
    "transformer_lens_stop": "(c) TransformerLens + stop hook",
}


def _markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    mm = report["matmul"]
    lines = [
        f"# Extraction throughput ({report['device']})",
        "",
        f"Generated by `benchmarks/extraction.py` on {m['date']}. Dataset `{report['dataset']}` "
        f"({report['n_prompts']} prompts), batch size {report['batch_size']}, length-sorted batches; "
        f"median of {report['repeats']} timed runs × {report.get('rounds', 1)} rounds, each round after a warm-up "
        f"on the {report['warmup_batches']} longest batches, each contender in a fresh process per round; "
        "odd rounds run the contenders in reverse order.",
        "",
        f"Machine: {m['cpu_model']}, {m['cpu_count']} CPUs, torch {m['torch_version']} with "
        f"{m['torch_num_threads']} intra-op threads (default, not changed); "
        + (f"GPU {m['gpu']['name']}; " if "gpu" in m else "")
        + f"load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}.",
        "",
        f"Measured fp32 matmul rate: peak {mm['peak_flop_per_s'] / 1e9:.1f} GFLOP/s; "
        + "; ".join(f"{k} {v / 1e9:.1f}" for k, v in mm["flop_per_s"].items()) + " GFLOP/s.",
        "",
        "| model | contender | tokens/s | samples/s | s (median) | × full LM | GFLOP/s | % of matmul peak "
        "| LM head ran | peak RSS MiB (run +Δ) | max abs diff vs ours |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in report["results"]:
        label = LABELS.get(r["contender"], r["contender"])
        if "error" in r:
            lines.append(f"| {r['model']} | {label} | failed: {r['error'].splitlines()[-1][:120]} |"
                         " | | | | | | | |")
            continue
        diff = r.get("max_abs_diff_vs_emoverify")
        diff_s = "reference" if r["contender"] == "emoverify" else (
            "n/a (nothing kept)" if diff is None else ", ".join(f"{k}: {v:.1e}" for k, v in diff.items()))
        mem = f"{r['rss_peak_run_mib']:.0f} (+{r['rss_run_increase_mib']:.0f})"
        if "cuda_max_allocated_mib" in r:
            mem += f"; CUDA {r['cuda_max_allocated_mib']:.0f}"
        lines.append(
            f"| {r['model']} | {label} | {r['tokens_per_s']:.0f} | {r['samples_per_s']:.1f} | {r['seconds']:.3f} "
            f"| {r.get('speedup_vs_full_lm_forward', float('nan')):.2f} | {r['flop_per_s'] / 1e9:.1f} "
            f"| {100 * r['fraction_of_peak_matmul']:.0f}% | {'yes' if r['lm_head_ran'] else 'no'} | {mem} "
            f"| {diff_s} |")
    lines += ["", "## Targets", "",
              "| model | × full LM forward (target ≥ 1.3) | fastest anchor | ours vs it (≥ 1 = no slower) "
              "| % of matmul peak |", "|---|---:|---|---:|---:|"]
    for model, v in report["verdict"].items():
        if v["speedup_vs_full_lm_forward"] is None or v["fastest_anchor"] is None:
            continue
        ok1 = "met" if v["meets_1.3x_full_lm_forward"] else "**missed**"
        ok2 = "met" if v["no_slower_than_fastest_anchor"] else "**missed**"
        ci = v.get("vs_fastest_anchor_ci95")
        if ci:
            ok2 += f"; 95% CI {ci[0]:.2f}–{ci[1]:.2f}" + (", within run-to-run noise" if ci[0] <= 1 <= ci[1] else "")
        lines.append(f"| {model} | {v['speedup_vs_full_lm_forward']:.2f} ({ok1}) | {LABELS[v['fastest_anchor']]} "
                     f"| {v['vs_fastest_anchor']:.2f} ({ok2}) | {100 * v['fraction_of_peak_matmul']:.0f}% |")
    lines += ["", "## How each contender is configured", ""]
    seen = set()
    for r in report["results"]:
        if r["contender"] in seen or "error" in r:
            continue
        seen.add(r["contender"])
        lines.append(f"* {LABELS.get(r['contender'], r['contender'])}: {r['config']}."
                     + (f" {r['note']}." if r.get("note") else ""))
    lines += ["", "FLOPs: 2 × the blocks' matmul parameters per real token + causal attention "
              "(4 × d_model × attended positions per token and layer) for the real lengths, + 2 × d_model × vocab "
              "per token where the LM head ran (checked with a hook on the output embedding). Peak RSS: the "
              "process RSS sampled every 2 ms during the warm-up and timed runs (after loading the model); "
              "Δ is the increase over the RSS before the first run."]
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"* {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    parser.add_argument("--models", nargs="+", default=None, help=f"model refs (default: {' '.join(FULL_MODELS)})")
    parser.add_argument("--dataset", default="extended")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per forward pass (default 32, "
                        "as `emoverify run`)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per round after the warm-up")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every contender, each in a fresh "
                        "process, odd rounds in reverse order (default 2); the median over all timed runs")
    parser.add_argument("--warmup-batches", type=int, default=3,
                        help="batches (longest prompts first) of the untimed warm-up run")
    parser.add_argument("--contenders", nargs="+", default=CONTENDERS, choices=CONTENDERS)
    parser.add_argument("--quick", action="store_true", help="tiny models, 1 repeat: a smoke test")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="results directory")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per contender run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    parser.add_argument("--note", action="append", default=[], help="a note to record with the results")
    args = parser.parse_args(argv)
    notes = list(args.note)

    if args.worker:
        record = worker(json.loads(args.worker))
        Path(args.worker_out).write_text(json.dumps(record))
        return 0

    models = args.models or (QUICK_MODELS if args.quick else FULL_MODELS)
    repeats = 1 if args.quick and args.repeats == 3 else args.repeats
    device = torch.device(args.device)
    texts, _, _ = _prompts(args.dataset)
    machine = _machine(args.device)
    print(f"machine: {machine['cpu_model']}, {machine['torch_num_threads']} torch threads, device {device}",
          flush=True)

    # Matmul rate at the mean number of rows one batch feeds each GEMM.
    from emoverify.lm.extraction import encode_prompts
    from emoverify.lm.models import load_tokenizer

    encoded = encode_prompts(load_tokenizer(models[0]), texts, _prompts(args.dataset)[1])
    plan = _plan(encoded, args.batch_size)
    m_tokens = int(round(sum(len(rows) * width for rows, width in plan) / len(plan)))
    matmul = matmul_rates(device, m_tokens)
    print(f"matmul peak {matmul['peak_flop_per_s'] / 1e9:.1f} GFLOP/s "
          f"(model shapes {matmul['model_shapes_flop_per_s'] / 1e9:.1f})", flush=True)

    out = Path(args.out)
    stem = f"extraction-{device.type}" + ("-quick" if args.quick else "")
    records: list[dict[str, Any]] = []

    def write() -> None:
        """(Re)write the results: called after every contender, so an interrupted run keeps what it has."""
        done = [dict(r) for r in records]
        _derive(done, matmul["peak_flop_per_s"], matmul["model_shapes_flop_per_s"])
        report = {
            "benchmark": "extraction", "device": args.device, "dataset": args.dataset, "n_prompts": len(texts),
            "batch_size": args.batch_size, "repeats": repeats, "rounds": args.rounds,
            "warmup_batches": args.warmup_batches,
            "quick": args.quick, "models": models, "contenders": args.contenders,
            "machine": machine, "matmul": matmul, "results": done, "verdict": _verdict(done), "notes": notes,
        }
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        (out / f"{stem}.md").write_text(_markdown(report))

    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            reference = str(Path(tmp) / f"{model.replace(':', '-').replace('/', '--')}.npy")
            forward = ["emoverify"] + [c for c in args.contenders if c != "emoverify"]
            runs: dict[str, list[dict[str, Any]]] = {c: [] for c in forward}
            for round_index in range(args.rounds):
                # Odd rounds run the contenders in reverse order, so a drift of the machine's speed over
                # the run (or an advantage of going first) falls on every contender alike.
                order = forward if round_index % 2 == 0 else forward[::-1]
                for contender in order:
                    spec = {"model": model, "contender": contender, "device": args.device,
                            "dataset": args.dataset, "batch_size": args.batch_size, "repeats": repeats,
                            "reference": reference, "warmup_batches": args.warmup_batches}
                    record = _run_worker(spec, args.timeout)
                    record["n_prompts"] = len(texts)
                    runs[contender].append(record)
                    if "error" in record:
                        print(f"{model:24s} {contender:22s} round {round_index}: FAILED: "
                              f"{record['error'].splitlines()[-1]}", flush=True)
                    else:
                        print(f"{model:24s} {contender:22s} round {round_index}: "
                              f"{' '.join(f'{t:.2f}' for t in record['seconds_all'])} s", flush=True)
                    records[:] = [r for r in records if r["model"] != model] + [
                        _merge_rounds(rs) for rs in runs.values() if rs]
                    write()
    write()
    print(f"wrote {out / stem}.json and .md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
