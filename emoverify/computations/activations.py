"""Claims of Phase 2 (ACT-1, ACT-2): what extraction writes and what it logs.

File counts and extraction speed do not depend on weight values, so these claims may run on the stand-ins
(`weights: standin`) where the paper's weights are absent.

A speed is a property of a machine: ACT-2.rev1's measurement is kept in the store keyed by the machine
(CPU model and count, platform, Python, the device and, on a GPU, its name), the extraction code and the
library versions, so it is measured once per machine and code, not on every run; its label and details
say when and where it was measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from emoverify.computations._inputs import activations
from emoverify.computations.registry import ClaimContext, Measurement, computation
from emoverify.data import EMOTIONS, dataset_sha256, load_dataset
from emoverify.errors import EmoverifyError
from emoverify.provenance import environment, machine, source_digest, utc_now, versions
from emoverify.store import Result, cached_result

__all__ = ["activation_file_count", "extraction_speed_log", "extraction_throughput_spread", "speed_key"]

# The code and libraries an extraction speed depends on (the cache key of a measurement names them).
_SPEED_CODE = ("emoverify.lm.extraction", "emoverify.lm.hooks", "emoverify.lm.models",
               "emoverify.computations.activations")
_SPEED_LIBRARIES = ("torch", "transformers", "tokenizers", "numpy")


def _weights_context(ctx: ClaimContext, weights: str) -> ClaimContext:
    # File counts and speed do not depend on weight values: such claims may run on the stand-ins.
    if weights not in ("paper", "standin"):
        raise EmoverifyError(f"weights must be 'paper' or 'standin', not {weights!r}")
    return ctx.with_models("standin") if weights == "standin" else ctx


@computation("activations.file_count")
def activation_file_count(
    ctx: ClaimContext, models: Sequence[str], datasets: Sequence[str], weights: str = "paper"
) -> Measurement:
    """How many activation files extraction writes per dataset for `models` (the layout's count)."""
    ctx = _weights_context(ctx, weights)
    counts, per_prompt, files = [], [], {}
    for dataset in datasets:
        paths = []
        for name in models:
            acts = activations(ctx, name, dataset)  # extract if needed: the count is of what the pipeline wrote
            paths.extend(sorted(acts.directory.glob("*.safetensors")))
        counts.append(len(paths))
        per_prompt.append(len(models) * len(load_dataset(dataset)))
        files[dataset] = [str(p) for p in paths]
    return Measurement(
        value=counts,
        label=" / ".join(f"{c} files ({d})" for c, d in zip(counts, datasets, strict=True)),
        details={"files": files, "one_file_per_prompt_and_model_would_give": dict(zip(datasets, per_prompt,
                                                                                      strict=True))},
        provenance={"models": {n: ctx.model_ref(n) for n in models},
                    "datasets": {d: dataset_sha256(d) for d in datasets}},
    )


@computation("activations.speed_log")
def extraction_speed_log(
    ctx: ClaimContext, models: Sequence[str], dataset: str, weights: str = "paper"
) -> Measurement:
    """Whether every model's manifest carries a throughput log, and what it says."""
    ctx = _weights_context(ctx, weights)
    per_model = {}
    for name in models:
        manifest = activations(ctx, name, dataset).manifest
        log = manifest.get("throughput", {})
        per_model[name] = {**log, "device": manifest["settings"]["device"],
                           "platform": manifest["environment"]["platform"],
                           "cpu_count": manifest["environment"]["cpu_count"]}
    logged = all(m.get("samples_per_s", 0) > 0 and m.get("tokens_per_s", 0) > 0 for m in per_model.values())
    return Measurement(
        value=logged,
        label=("logged: " if logged else "missing: ")
        + ", ".join(f"{n} {m.get('samples_per_s', 0):.0f} samples/s on {m['device']}" for n, m in per_model.items()),
        details={"per_model": per_model},
        provenance={"models": {n: ctx.model_ref(n) for n in models}},
    )


def where_measured(device: str) -> dict[str, Any]:
    """The machine a speed is measured on: `provenance.machine()`, the device and, on a GPU, its name."""
    where = {**machine(), "device": device}
    if device != "cpu":
        import torch  # local import: only a GPU's name needs torch; a CPU run reads the stored speed without it

        where["accelerator"] = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else device
    return where


def speed_key(
    ctx: ClaimContext, models: Sequence[str], dataset: str, batch_sizes: Sequence[int], prompts: int
) -> dict[str, Any]:
    """What an extraction speed depends on: models, prompts, settings, machine, code and libraries."""
    return {"models": {n: ctx.model_ref(n) for n in models}, "dataset_sha256": dataset_sha256(dataset),
            "prompts": prompts, "batch_sizes": list(batch_sizes), "machine": where_measured(ctx.device),
            "code": source_digest(_SPEED_CODE), "libraries": versions(_SPEED_LIBRARIES)}


def _measure_rates(
    ctx: ClaimContext, models: Sequence[str], dataset: str, batch_sizes: Sequence[int], prompts: int
) -> Result:
    """Time extraction of the first prompts of each emotion, per model and batch size, after a warm-up."""
    # local import: measuring runs the models (torch); a stored measurement is read without them.
    from emoverify.lm.extraction import extract_residuals
    from emoverify.lm.models import load_model

    frame = load_dataset(dataset).groupby("emotion", sort=False).head(max(1, prompts // len(EMOTIONS)))
    texts = frame["text"].tolist()
    spans = list(zip(frame["span_start"], frame["span_end"], strict=True))
    rates: dict[str, dict[str, float]] = {}
    for name in models:
        lm = load_model(ctx.model_ref(name), device=ctx.device)
        extract_residuals(lm, texts[:2], spans[:2], batch_size=2)  # warm-up: allocator, kernels
        rates[name] = {str(b): extract_residuals(lm, texts, spans, batch_size=b)[1]["samples_per_s"]
                       for b in batch_sizes}
        del lm
    return Result(arrays={}, record={"samples_per_s": rates, "prompts": len(texts), "measured_at": utc_now(),
                                     "machine": where_measured(ctx.device), "environment": environment()})


@computation("activations.throughput_spread")
def extraction_throughput_spread(
    ctx: ClaimContext,
    models: Sequence[str],
    dataset: str,
    batch_sizes: Sequence[int] = (1, 32),
    prompts: int = 32,
    weights: str = "paper",
) -> Measurement:
    """How far one machine's samples/s varies with the settings a bare speed figure leaves out.

    Times extraction of the first `prompts` prompts of `dataset` for each model at each batch size, on
    `ctx.device`, after one warm-up batch; the value is max / min samples/s across all of them. The timing
    is kept in the store per machine, code and library versions (`speed_key`) and read back on later runs.
    """
    ctx = _weights_context(ctx, weights)
    key = speed_key(ctx, models, dataset, batch_sizes, prompts)
    result = cached_result(ctx.artifacts_dir, "extraction-speed", key,
                           lambda: _measure_rates(ctx, models, dataset, batch_sizes, prompts))
    rates, where = result.record["samples_per_s"], result.record["machine"]
    flat = [r for per_batch in rates.values() for r in per_batch.values()]
    spread = max(flat) / min(flat)
    measured = {"at": result.record["measured_at"], "machine": where, "from_store": result.from_cache}
    return Measurement(
        value=round(spread, 2),
        label=f"{min(flat):.0f}-{max(flat):.0f} samples/s (x{spread:.1f}) on {ctx.device}, "
              + "; ".join(f"{n}: " + ", ".join(f"b{b} {r:.0f}" for b, r in per.items()) for n, per in rates.items())
              + f" (measured {measured['at']} on {where['cpu']}, {where['usable_cpus']} CPUs)",
        details={"samples_per_s": rates, "prompts": result.record["prompts"],
                 "environment": result.record["environment"], "measured": measured},
        provenance={"models": {n: ctx.model_ref(n) for n in models}, "dataset_sha256": dataset_sha256(dataset)},
    )
