"""Where a model's weights are and how to get them, without importing torch.

The claim harness asks whether a paper model's weights are on this machine before it runs a claim
(`needs-weights` otherwise, with the command that fetches them); the CLI checks every model before any
work. Neither may import torch, so these checks live here, apart from loading (`lm.models`).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import try_to_load_from_cache

from emoverify.errors import WeightsUnavailable

__all__ = ["cache_root", "check_weights", "fetch_command", "hub_reachable", "model_slug", "split_revision",
           "weights_available", "weights_unavailable"]


def model_slug(ref: str) -> str:
    """A file-system name for a model reference: `EleutherAI/pythia-160m` -> `EleutherAI--pythia-160m`."""
    if os.path.isdir(ref) and not ref.startswith(("standin:", "tiny:")):
        ref = "local-" + Path(ref).resolve().name
    return ref.replace("/", "--").replace(":", "-").replace("@", "--rev-")


def split_revision(ref: str) -> tuple[str, str | None]:
    if "@" in ref and not os.path.isdir(ref):
        repo, revision = ref.split("@", 1)
        return repo, revision
    return ref, None


def fetch_command(ref: str) -> str:
    """The command that puts `ref`'s weights where `from_pretrained` finds them offline."""
    repo, revision = split_revision(ref)
    rev = f" --revision {revision}" if revision else ""
    return f"hf download {repo}{rev}"


def cache_root() -> Path:
    return Path(os.environ.get("EMOVERIFY_CACHE", Path.home() / ".cache" / "emoverify"))


def _hub_cached(repo: str, revision: str | None) -> bool:
    def cached(filename: str) -> bool:
        return isinstance(try_to_load_from_cache(repo, filename, revision=revision), str)

    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    return cached("config.json") and any(cached(w) for w in weights)


def weights_available(ref: str) -> bool:
    """Whether `ref` can be loaded without the network. Never touches the network."""
    if ref.startswith(("standin:", "tiny:")):
        return True
    if os.path.isdir(ref):
        return (Path(ref) / "config.json").is_file()
    repo, revision = split_revision(ref)
    return _hub_cached(repo, revision)


def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def weights_unavailable(ref: str) -> WeightsUnavailable:
    command = fetch_command(ref)
    return WeightsUnavailable(
        f"weights for {ref!r} are not on this machine and the model hub cannot be reached. "
        f"On a machine with network access run `{command}` (then copy ~/.cache/huggingface here), "
        f"or pass a local checkpoint directory instead of {ref!r}; "
        f"`--models standin:...` runs the pipeline on random-init stand-ins.",
        ref=ref,
        fetch_command=command,
    )


def check_weights(refs: list[str]) -> None:
    """Fail at once, before any work, if some model cannot be had: cached, local, or hub reachable."""
    missing = [ref for ref in refs if not weights_available(ref)]
    if missing and not hub_reachable():
        raise weights_unavailable(missing[0])
