"""Hashes, atomic writes, and the records of environment, machine and source code that artifacts carry.

Standard library only: every layer may use it. File digests that are remembered between reads are the
store's business (`emoverify.store.file_sha256`), so that there is one cache of what was verified.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "environment",
    "machine",
    "sha256_bytes",
    "sha256_file",
    "source_digest",
    "utc_now",
    "versions",
]

_LIBRARIES = ("emoverify", "torch", "transformers", "tokenizers", "safetensors", "numpy", "scipy",
              "scikit-learn", "pandas")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` so that a reader sees the old file or the whole new one, never a part.

    The bytes go to a temporary file in the same directory, are flushed to disk, and replace the
    target with one `os.replace` (atomic on POSIX and Windows). An interrupted write leaves at most a
    stray `.tmp` file, which nothing reads.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp creates 0600; give the file the mode an ordinary open() would (reports are shared).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions(names: list[str] | tuple[str, ...]) -> dict[str, str | None]:
    """The installed version of each distribution in `names` (None where it is not installed)."""
    return {name: _version(name) for name in names}


def environment() -> dict[str, Any]:
    """Library versions and machine facts, recorded beside every result."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "libraries": versions(_LIBRARIES),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What a speed measurement depends on besides the code: the CPU model and count, the platform, Python.

    `usable_cpus` is the number this process may run on (a container or `taskset` may allow fewer than the
    machine has).
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "usable_cpus": usable,
            "platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version()}


def source_digest(modules: list[str] | tuple[str, ...]) -> str:
    """sha256 over the source files of `modules` (dotted names), found without importing them.

    A cache key that includes it changes whenever the code that computes the cached value changes, which a
    package version (`0.1.0` through development) does not tell.
    """
    parts = []
    for name in sorted(modules):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not os.path.isfile(spec.origin):
            raise ValueError(f"no source file for module {name!r}")
        parts.append(f"{name}:{sha256_file(spec.origin)};")
    return sha256_bytes("".join(parts).encode())
