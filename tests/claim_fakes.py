"""Fake computations and weights for the harness tests: no model is ever loaded.

`fake_registry` swaps the computation registry for a fresh one holding only the fakes below (so the
real computation modules are never imported); `weights` makes `weights_available` answer from a set.
Test modules import these fixtures by name.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emoverify.computations import registry as registry_module
from emoverify.computations.registry import ClaimContext, ComputationRegistry, Measurement, computation
from emoverify.errors import WeightsUnavailable
from emoverify.lm import checkpoints

# A valid claim entry on the fake registry, for tests to parse, mutate and fuzz.
GOOD_ENTRY = """\
- id: DATA-1
  section: "2"
  statement: seventy per emotion
  computation: fake.constant
  args: {value: 280}
  expect: {equals: 280}
  protocol: counts records
  requires: []
"""

# A valid 1x1 PNG, so figure embedding is tested without matplotlib.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _register_fakes() -> None:
    @computation("fake.constant")
    def constant(ctx: ClaimContext, value: Any, standin_value: Any = None, interval: Any = None,
                 model: str | None = None, models: list[str] | None = None, seed_values: list[Any] | None = None,
                 ) -> Measurement:
        """Measures `value` on real models and `standin_value` (if given) on the stand-ins; with `seed_values`,
        `seed_values[seed]` on the stand-ins of each seed (a seed past its end raises)."""
        measured = standin_value if ctx.model_source == "standin" and standin_value is not None else value
        if ctx.model_source == "standin" and seed_values is not None:
            measured = seed_values[ctx.standin_seed]
        return Measurement(value=measured, interval=interval, details={"model_source": ctx.model_source},
                           provenance={"model": ctx.model_ref(model) if model else None})

    @computation("fake.where_it_ran")
    def where_it_ran(ctx: ClaimContext, value: Any, model: str = "gpt2") -> Measurement:
        """Measures `value` and says in `details` the context it ran in."""
        return Measurement(value=value, details={"role": ctx.role, "figure_only": ctx.figure_only,
                                                 "model_ref": ctx.model_ref(model),
                                                 "figures": None if ctx.figures_dir is None else str(ctx.figures_dir)})

    @computation("fake.raises")
    def raises(ctx: ClaimContext, message: str) -> Measurement:
        raise ValueError(message)

    @computation("fake.weights_missing_inside")
    def weights_missing_inside(ctx: ClaimContext, model: str) -> Measurement:
        ref = ctx.model_ref(model)
        raise WeightsUnavailable(f"no weights for {ref}", ref=ref, fetch_command=f"hf download {ref}")

    @computation("fake.not_a_measurement")
    def not_a_measurement(ctx: ClaimContext) -> Measurement:
        return {"value": 1}  # type: ignore[return-value]  # the mistake under test

    @computation("fake.figure")
    def figure(ctx: ClaimContext, value: float) -> Measurement:
        path = Path(ctx.figures_dir) / "fake.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(TINY_PNG)
        return Measurement(value=value, figures=(str(path),), label=f"{value} (see figure)")


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> ComputationRegistry:
    registry = ComputationRegistry(modules=())
    monkeypatch.setattr(registry_module, "_REGISTRY", registry)
    _register_fakes()
    return registry


@pytest.fixture
def weights(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """The set of real model refs whose weights are 'on this machine' (stand-ins always are)."""
    available: set[str] = set()
    monkeypatch.setattr(checkpoints, "weights_available",
                        lambda ref: ref.startswith(("standin:", "tiny:")) or ref in available)
    yield available


def with_models(args: str, requires: str) -> str:
    """A fake claim's flow-mapping `args` naming the models of `requires` (which must agree with args)."""
    if requires.strip("[] ") and "model" not in args:
        return args.rstrip().removesuffix("}") + f", models: {requires}}}"
    return args
