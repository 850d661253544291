"""What a claim computation is, what it returns, the context it runs in, and the registry that finds it.

Computations are plain functions `f(ctx, **args) -> Measurement`, registered by name with a decorator::

    @computation("data.prompt_counts")
    def prompt_counts(ctx: ClaimContext, dataset: str) -> Measurement: ...

The registry is filled on the first lookup by importing every module of `emoverify.computations` (one per
`claims/*.yaml` file) except this one: adding a module is enough, there is no list to keep. Those modules
import `computation` from here, so they are imported by name at run time, never at this module's import
time; a module that fails to import is an error for every claim that needs the registry, never a silent
skip. This module imports neither torch nor any computation, so the claim harness (and its pytest plugin)
can load claim files without torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from emoverify.errors import EmoverifyError, did_you_mean
from emoverify.paper import PAPER_MODELS, ModelSource, check_model_source

__all__ = [
    "ROLES",
    "ClaimContext",
    "ComputationRegistry",
    "Measurement",
    "computation",
    "computation_modules",
    "get_computation",
    "Role",
]

# What a run of a computation is for: the claim's measurement, or one seed of its null-model control.
Role = Literal["claim", "null"]
ROLES: tuple[Role, ...] = get_args(Role)


@dataclass(frozen=True)
class Measurement:
    """What a computation measured.

    Attributes:
        value: what `expect` is checked against: a number, a list of numbers, an int, a bool.
        details: JSON-able neighbouring choices (all layers or pairs, raw and centred, n versus d ...),
            so a reader sees whether the figure depends on the protocol's choice.
        interval: 95% CI as `(lo, hi)`, or a list of `(lo, hi)` parallel to a list value; None if unknown.
        figures: PNG paths written under `ctx.figures_dir`, embedded by the report.
        provenance: model refs, weights and dataset sha256, settings.
        label: short text of the measured value for the table, e.g. "0.52 / 0.61 / 0.70 (layer 12)".
    """

    value: Any
    details: dict[str, Any] = field(default_factory=dict)
    interval: Any = None
    figures: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    label: str = ""


@dataclass(frozen=True)
class ClaimContext:
    """Where and on what a computation runs.

    Attributes:
        artifacts_dir: activation store root.
        figures_dir: where computations write PNGs; None draws none (sweeps, benchmarks), see `draw`.
        device: torch device for extraction and interventions.
        seed: seed for every random thing a computation does.
        model_source: "real" (the paper's models by hub id) or "standin" (random-init stand-ins).
        standin_seed: which random-init stand-in "standin" means: 0 is the stored one (`standin:gpt2`), N
            draws its weights from seed N (`standin:gpt2~seedN`, see `paper.seeded_ref`).
        null_seeds: how many stand-in seeds (0..null_seeds-1) the null-model control runs the claim on.
        role: "claim" for the claim's own measurement, "null" for one seed of its null-model control.
    """

    artifacts_dir: Path = Path("artifacts")
    figures_dir: Path | None = Path("reports/figures")
    device: str = "cpu"
    seed: int = 0
    model_source: ModelSource = "real"
    standin_seed: int = 0
    null_seeds: int = 5
    role: Role = "claim"

    def __post_init__(self) -> None:
        check_model_source(self.model_source)
        if self.role not in ROLES:
            raise EmoverifyError(f"role must be one of {', '.join(ROLES)}, not {self.role!r}")
        for name, least in (("standin_seed", 0), ("null_seeds", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise EmoverifyError(f"{name} must be an integer of at least {least}, not {value!r}")

    @property
    def figure_only(self) -> bool:
        """Whether this run needs only the figure the claim checks: a null-model run on a seed other than 0.

        Such a run feeds one draw of the null distribution (value, label, status), so a computation may skip
        what serves only the reader and costs more inputs: SUB-2/SUB-3 skip their held-out check on the
        `extended` prompts (another extraction per model). Seed 0's null run, like the claim's, does all.
        """
        return self.role == "null" and self.standin_seed != 0

    def model_ref(self, name: str) -> str:
        """The reference to load for a paper model name: its hub id, or its stand-in of `standin_seed`."""
        if name not in PAPER_MODELS:
            raise EmoverifyError(f"unknown paper model {name!r}{did_you_mean(name, PAPER_MODELS)}")
        return PAPER_MODELS[name].ref(self.model_source, self.standin_seed)

    def draw(self, func: Callable[..., str], name: str, *args: Any, **kwargs: Any) -> tuple[str, ...]:
        """`func(*args, path=figures_dir / name, **kwargs)`, a figure function that writes a PNG and returns
        its path; nothing when figures are off. Returns the paths written, for `Measurement.figures`."""
        if self.figures_dir is None:
            return ()
        return (func(*args, path=self.figures_dir / name, **kwargs),)

    def with_models(self, source: ModelSource) -> ClaimContext:
        """The same context on other models ("real" or "standin"); the store it reads is the same."""
        return dataclasses.replace(self, model_source=source)


F = TypeVar("F", bound=Callable[..., Measurement])


def computation_modules() -> tuple[str, ...]:
    """Every module of `emoverify.computations` but this one and private ones: the modules that register."""
    package = __name__.rpartition(".")[0]
    here = Path(__file__).parent
    return tuple(f"{package}.{info.name}" for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda i: i.name)
                 if f"{package}.{info.name}" != __name__ and not info.name.startswith("_"))


class ComputationRegistry:
    """Computations by name, filled by importing `modules` on the first lookup.

    Args:
        modules: the modules whose import registers the computations; None: `computation_modules()`.
    """

    def __init__(self, modules: tuple[str, ...] | None = None) -> None:
        self.modules = modules
        self._entries: dict[str, Callable[..., Measurement]] = {}
        self._loaded = False
        self._load_error: EmoverifyError | None = None

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: register `f(ctx, **args) -> Measurement` under `name`."""

        def decorator(func: F) -> F:
            if name in self._entries:
                previous = self._entries[name]
                raise EmoverifyError(f"computation {name!r} is registered twice: "
                                     f"{previous.__module__}.{previous.__qualname__} and "
                                     f"{func.__module__}.{func.__qualname__}")
            self._entries[name] = func
            return func

        return decorator

    def get(self, name: str) -> Callable[..., Measurement]:
        """The computation registered as `name`; `EmoverifyError` with "did you mean" if none is."""
        self._load()
        if name not in self._entries:
            raise EmoverifyError(f"unknown computation {name!r}{did_you_mean(name, self._entries)}")
        return self._entries[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def _load(self) -> None:
        if self._load_error is not None:
            raise self._load_error
        if self._loaded:
            return
        for module in self.modules if self.modules is not None else computation_modules():
            try:
                importlib.import_module(module)
            except Exception as err:  # any import failure must be loud, and the same on every lookup
                self._load_error = EmoverifyError(
                    f"cannot import computation module {module}: {type(err).__name__}: {err}")
                raise self._load_error from err
        self._loaded = True


_REGISTRY = ComputationRegistry()


def computation(name: str) -> Callable[[F], F]:
    """Register a computation under `name`; a duplicate name raises `EmoverifyError`.

    Example:
        >>> @computation("data.prompt_counts")          # doctest: +SKIP
        ... def prompt_counts(ctx: ClaimContext, dataset: str) -> Measurement: ...
    """
    return _REGISTRY.register(name)


def get_computation(name: str) -> Callable[..., Measurement]:
    """The computation registered as `name`; unknown names raise `EmoverifyError` with "did you mean"."""
    return _REGISTRY.get(name)
