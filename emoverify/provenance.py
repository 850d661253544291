"""Hashes, atomic writes, and the records of environment, machine and source code that artifacts carry.

Standard library only: every layer may use it. File digests that are remembered between reads are the
store's business (`emoverify.store.file_sha256`), so that there is one cache of what was verified.

An atomic write leaves no temporary file when it fails, is interrupted (KeyboardInterrupt) or is sent
SIGTERM (`terminate_raises`); what a SIGKILL or a power cut leaves (`.<name>.<random>.tmp`) is removed by
the next write of the same file once it is older than `STALE_SECONDS` (no write takes that long), and the
store sweeps its whole tree the same way (`sweep_stale_temporaries`). `pause_for_fault_injection` is the
test suite's hook to kill a process at a chosen point (tests/test_faults.py).
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import json
import os
import platform
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "STALE_SECONDS",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "environment",
    "machine",
    "pause_for_fault_injection",
    "sha256_bytes",
    "sha256_file",
    "source_digest",
    "sweep_stale_temporaries",
    "terminate_raises",
    "utc_now",
    "versions",
]

# A temporary file older than this was left by a process that died (a write takes seconds); it is removed.
STALE_SECONDS = 3600.0

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
    target with one `os.replace` (atomic on POSIX and Windows). A failed, interrupted or terminated
    (SIGTERM) write removes its temporary file; one left by a killed process is removed by a later write
    of the same file once it is stale (`STALE_SECONDS`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with terminate_raises():
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
            pause_for_fault_injection("atomic-replace", target.name)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    sweep_stale_temporaries(target.parent, f".{glob.escape(target.name)}.*.tmp")
    return target


def sweep_stale_temporaries(
    directory: str | os.PathLike[str], pattern: str = ".*.tmp", recursive: bool = False,
    older_than: float = STALE_SECONDS,
) -> list[Path]:
    """Remove the temporary files (`pattern`) in `directory` last modified more than `older_than` seconds ago.

    What atomic writes killed by SIGKILL left. A file that vanishes or cannot be removed meanwhile is
    skipped: another process swept it, or the directory is not ours to clean. Returns what was removed.
    """
    now, removed = time.time(), []
    try:
        found = list(Path(directory).rglob(pattern) if recursive else Path(directory).glob(pattern))
    except OSError:
        return removed
    for path in found:
        try:
            if path.is_file() and not path.is_symlink() and now - path.stat().st_mtime > older_than:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return removed


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def terminate_raises() -> Iterator[None]:
    """While inside, SIGTERM raises `SystemExit(143)`, so `finally` and `except BaseException` blocks clean up.

    Python's default for SIGTERM is to die at once, leaving temporary files behind. Installed only in the
    main thread (where Python delivers signals) and only over the default handler: an application's own
    handler, or an enclosing `terminate_raises`, stays in charge.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not \
            signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def pause_for_fault_injection(point: str, detail: str = "") -> None:
    """Test hook: stop here while `EMOVERIFY_PAUSE_AT` names this point, so a test can kill the process here.

    `EMOVERIFY_PAUSE_AT` is `<point>` or `<point>:<detail>`. Points: `extraction` (after the first batch),
    `atomic-replace:<file name>` (the temporary file written and flushed, not yet renamed), `standin-build`
    (a stand-in's temporary build directory complete, not yet renamed). On arrival the file named by
    `EMOVERIFY_PAUSE_MARK` is created (so the test knows the process is there), then the process sleeps for
    `EMOVERIFY_PAUSE_S` seconds (default 600). Unset, as outside tests, it costs one environment lookup.
    """
    wanted = os.environ.get("EMOVERIFY_PAUSE_AT")
    if not wanted or wanted not in (point, f"{point}:{detail}"):
        return
    mark = os.environ.get("EMOVERIFY_PAUSE_MARK")
    if mark:
        Path(mark).write_text(f"{point}:{detail} {os.getpid()}\n")
    time.sleep(float(os.environ.get("EMOVERIFY_PAUSE_S", "600")))


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
