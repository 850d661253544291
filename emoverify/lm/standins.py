"""Stand-ins for the paper's models: the published configurations with seeded random weights.

`standin:gpt2`, `standin:pythia-160m` and `standin:gpt-neo-125M` are the exact published configurations
(`published_config`) with weights drawn by the architecture's own initialiser under `STANDIN_SEED`, and a
byte-level BPE tokenizer trained here on the study's prompts. `tiny:gpt2`, `tiny:pythia` and `tiny:gpt-neo`
are the same architectures at 2 layers and width 64, for unit tests. Each is built once into a cache
directory keyed by everything its bytes depend on, checked against the sha256 of its files recorded at build
time on every use (rebuilt, with a warning, when a check fails), and loaded back through the same
`from_pretrained` path as a real checkpoint (`lm.models.load_model`).

A build holds a lock (`.<name>.lock` beside the directory) and writes into a hidden temporary directory
(`.<name>.<random>`) renamed into place when complete: two processes never build one stand-in at once, and
the second uses the first's. A build killed before its rename (a full-size one leaves ~475 MB) is swept by
the next `ensure_standin`, which removes a temporary build directory only when it can take that stand-in's
lock (no live process is building it) and the directory has not been touched for ten minutes.

Seeded stand-ins (`standin:gpt2~seed1`, `tiny:gpt2~seed1`: the syntax is `paper.seeded_ref`'s) are not
kept as checkpoints: their weights are drawn at load time by the same initialiser under their seed, on seed
0's configuration, and they use seed 0's tokenizer (`standin_build.draw_standin`). What makes that safe is
that drawing is deterministic, and that is checked rather than assumed: the first draw of a seed records the
sha256 of the weights it drew (`draw_record_path`, keyed by seed 0's checkpoint, the seed, and the torch and
transformers versions), every later draw is compared with that record and a different draw is an error, and
that sha256 is the seeded stand-in's weights fingerprint in every activation key and manifest
(`drawn_weights_sha256`), so a store entry names the exact weights it was extracted from.

This module says what a stand-in is, where it lives and whether it is intact, without importing torch (the
activation store asks it for a cache key); building one (`lm.standin_build`) imports torch when needed.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from emoverify.data import DATASETS, dataset_sha256
from emoverify.errors import EmoverifyError
from emoverify.lm.checkpoints import cache_root, model_slug
from emoverify.lm.planted import ensure_planted, is_planted
from emoverify.paper import PAPER_MODELS, split_seed
from emoverify.provenance import sha256_bytes
from emoverify.store import exclusive, file_sha256, lock_path

__all__ = ["STANDIN_FORMAT", "STANDIN_SEED", "draw_record_path", "drawn_weights_sha256", "ensure_standin",
           "published_config", "recorded_draw", "standin_dir", "standin_spec", "sweep_abandoned_builds"]

# Bumped when the way stand-ins are built changes, so old cache directories are not reused.
STANDIN_FORMAT = 2  # 2: every file of the checkpoint hashed, not only the weights
STANDIN_SEED = 0
# A build directory untouched this long, whose lock is free, was abandoned (a build writes it in seconds).
_BUILD_GRACE_S = 600.0


def published_config(name: str) -> dict[str, Any]:
    """The published `config.json` fields of the paper's models (architecture only, no weights)."""
    if name == "gpt2":
        return dict(model_type="gpt2", vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                    activation_function="gelu_new", resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1,
                    layer_norm_epsilon=1e-5, initializer_range=0.02, bos_token_id=50256, eos_token_id=50256)
    if name == "pythia-160m":
        return dict(model_type="gpt_neox", vocab_size=50304, hidden_size=768, num_hidden_layers=12,
                    num_attention_heads=12, intermediate_size=3072, hidden_act="gelu", rotary_pct=0.25,
                    rotary_emb_base=10000, max_position_embeddings=2048, initializer_range=0.02,
                    layer_norm_eps=1e-5, use_parallel_residual=True, tie_word_embeddings=False,
                    attention_dropout=0.0, hidden_dropout=0.0, bos_token_id=0, eos_token_id=0)
    if name == "gpt-neo-125M":
        return dict(model_type="gpt_neo", vocab_size=50257, hidden_size=768, num_layers=12, num_heads=12,
                    attention_types=[[["global", "local"], 6]], window_size=256, max_position_embeddings=2048,
                    intermediate_size=None, activation_function="gelu_new", embed_dropout=0.0,
                    attention_dropout=0.0, resid_dropout=0.0, layer_norm_epsilon=1e-5,
                    initializer_range=0.02, bos_token_id=50256, eos_token_id=50256)
    raise KeyError(name)


_TINY: dict[str, dict[str, Any]] = {
    "gpt2": dict(model_type="gpt2", vocab_size=50257, n_positions=256, n_embd=64, n_layer=2, n_head=4,
                 activation_function="gelu_new", bos_token_id=50256, eos_token_id=50256),
    "pythia": dict(model_type="gpt_neox", vocab_size=50304, hidden_size=64, num_hidden_layers=2,
                   num_attention_heads=4, intermediate_size=256, hidden_act="gelu", rotary_pct=0.25,
                   max_position_embeddings=256, use_parallel_residual=True, tie_word_embeddings=False,
                   bos_token_id=0, eos_token_id=0),
    "gpt-neo": dict(model_type="gpt_neo", vocab_size=50257, hidden_size=64, num_layers=2, num_heads=4,
                    attention_types=[[["global", "local"], 1]], window_size=8, max_position_embeddings=256,
                    activation_function="gelu_new", bos_token_id=50256, eos_token_id=50256),
}



def standin_spec(ref: str) -> tuple[dict[str, Any], str]:
    """(configuration, name) of a `standin:*` or `tiny:*` reference, seeded or not."""
    kind, name = split_seed(ref)[0].split(":", 1)
    if kind == "standin":
        try:
            return published_config(name), name
        except KeyError:
            known = ", ".join(m.standin for m in PAPER_MODELS.values())
            raise EmoverifyError(f"unknown stand-in {ref!r}; known: {known}") from None
    if name not in _TINY:
        known = ", ".join(f"tiny:{n}" for n in _TINY)
        raise EmoverifyError(f"unknown tiny model {ref!r}; known: {known}")
    return dict(_TINY[name]), name


def standin_dir(ref: str) -> Path:
    """The cache directory of a stand-in, keyed by everything its bytes depend on (a seeded stand-in: seed 0's)."""
    config, _ = standin_spec(ref)
    key = json.dumps({"config": config, "seed": STANDIN_SEED, "format": STANDIN_FORMAT,
                      "corpus": [dataset_sha256(d) for d in DATASETS], "torch": metadata.version("torch")},
                     sort_keys=True)
    return cache_root() / "standins" / f"{model_slug(ref)}-{sha256_bytes(key.encode())[:12]}"


def _standin_damage(directory: Path) -> str | None:
    """Why the stand-in at `directory` cannot be used (absent, or a file failing its recorded sha256), or None."""
    record_path = directory / "standin.json"
    if not record_path.is_file():
        return "its record standin.json is missing (an interrupted build)" if directory.exists() else "absent"
    try:
        files = json.loads(record_path.read_text())["files"]
        names = [name for name in files if isinstance(name, str) and name == Path(name).name and name]
        if not names or len(names) != len(files):
            return "its record standin.json lists no files or odd names"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return f"its record standin.json is unreadable ({type(err).__name__}: {err})"
    for name in names:
        # remember=True: the weights are hundreds of MB, read on every run otherwise (see `file_sha256`).
        if not (directory / name).is_file():
            return f"{name} is missing"
        if file_sha256(directory / name, remember=True) != files[name]:
            return f"{name} does not match the sha256 recorded when it was built"
    return None


def sweep_abandoned_builds(standins: Path, grace_s: float = _BUILD_GRACE_S) -> list[Path]:
    """Remove the temporary build directories in `standins` that no live process is building; returns them.

    A build's directory is `.<name>.<random>` and its builder holds `.<name>.lock`: a directory whose lock
    can be taken now belongs to a build that died (killed, or a machine that went down). It must also be
    untouched for `grace_s` seconds, for a build by an emoverify from before the lock, which takes none.
    """
    removed = []
    try:
        hidden = [p for p in standins.iterdir() if p.name.startswith(".") and p.is_dir() and not p.is_symlink()]
    except OSError:
        return removed
    for build in hidden:
        try:
            if time.time() - build.stat().st_mtime < grace_s:
                continue
        except OSError:
            continue
        target = standins / build.name[1:].rsplit(".", 1)[0]
        with exclusive(lock_path(target), str(target), wait=False) as free:
            if free and build.exists():
                shutil.rmtree(build, ignore_errors=True)
                removed.append(build)
    return removed


def ensure_standin(ref: str) -> Path:
    """The stand-in's checkpoint directory, built (or rebuilt, if its files fail their hashes) on demand.

    For a seeded stand-in, seed 0's: its configuration and tokenizer are the seeded one's too.
    """
    if is_planted(ref):  # the positive controls: trained here, built and checked by `lm.planted`
        return ensure_planted(ref)
    ref = split_seed(ref)[0]
    directory = standin_dir(ref)
    sweep_abandoned_builds(directory.parent)
    if _standin_damage(directory) is None:
        return directory
    with exclusive(lock_path(directory), f"the stand-in {ref}"):
        damage = _standin_damage(directory)  # again, under the lock: another process may have just built it
        if damage is None:
            return directory
        # local import: building needs torch, transformers and tokenizers; finding an intact one does not.
        from emoverify.lm.standin_build import build_standin

        if directory.is_symlink() or directory.is_file():
            directory.unlink()
        elif directory.exists():
            warnings.warn(f"rebuilding the stand-in {ref} in {directory}: {damage}", stacklevel=2)
            shutil.rmtree(directory)
        build_standin(ref, directory)
    return directory


def draw_record_path(ref: str) -> Path:
    """Where the sha256 of a seeded stand-in's drawn weights is recorded, keyed by what the draw depends on:
    seed 0's checkpoint (configuration, format, torch version), the seed, and the transformers version (its
    initialisers draw the weights)."""
    base, seed = split_seed(ref)
    if seed == 0:
        raise EmoverifyError(f"{ref!r} is a stored stand-in, not a seeded one: its weights are files")
    key = json.dumps({"checkpoint": standin_dir(base).name, "seed": seed, "format": STANDIN_FORMAT,
                      "torch": metadata.version("torch"), "transformers": metadata.version("transformers")},
                     sort_keys=True)
    return cache_root() / "standins" / "draws" / f"{model_slug(ref)}-{sha256_bytes(key.encode())[:12]}.json"


def recorded_draw(ref: str) -> str | None:
    """The sha256 recorded at the first draw of a seeded stand-in's weights; None when none is recorded."""
    try:
        digest = json.loads(draw_record_path(ref).read_text())["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return digest if isinstance(digest, str) else None


def drawn_weights_sha256(ref: str) -> str:
    """The sha256 of the weights a seeded stand-in's seed draws (the state dict's, as `lm.models.weights_sha256`
    computes it): the recorded one, or drawn now and recorded (which needs torch) when none is."""
    recorded = recorded_draw(ref)
    if recorded is not None:
        return recorded
    # local import: drawing needs torch and transformers; reading the record does not.
    from emoverify.lm.standin_build import draw_standin

    draw_standin(ref)
    recorded = recorded_draw(ref)
    if recorded is None:
        raise EmoverifyError(f"drew {ref!r} but cannot read its record back from {draw_record_path(ref)}")
    return recorded
