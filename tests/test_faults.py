"""Faults injected for real: runs killed at chosen points, bytes flipped in data and in metadata, two processes
on one store at once, a killed stand-in build. Each ends in a run that succeeds, with a warning naming what was
wrong wherever something damaged was there, and no temporary file left behind.

A process is stopped at a chosen point by the test hook `provenance.pause_for_fault_injection`: with
`EMOVERIFY_PAUSE_AT=<point>[:<file name>]` it creates the file `EMOVERIFY_PAUSE_MARK` on arrival and sleeps,
and the test kills it there (SIGKILL: nothing of Python runs; SIGTERM: `finally` blocks do).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from emoverify import store
from emoverify.errors import ArtifactError
from emoverify.lm import activation_store
from emoverify.lm.activation_store import ensure_activations, group_dir, load_activations
from emoverify.lm.standins import ensure_standin, standin_dir, sweep_abandoned_builds
from emoverify.provenance import atomic_write_text
from emoverify.store import Entry, Result, cached_entry, cached_result, file_sha256, read_entry, result_dir
from emoverify.store.entries import _seal

ROOT = Path(__file__).parents[1]
RUN = [sys.executable, "-m", "emoverify", "run", "--models", "tiny:gpt2", "--dataset", "baseline"]
RECOMPUTING = "recomputing activations/baseline/tiny-gpt2"


def _env(**extra: str) -> dict[str, str]:
    """This checkout first on the path (the package is installed from another), plus `extra`."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def _start(argv: list[str], tmp_path: Path, pause_at: str | None = None, **env: str) -> tuple[subprocess.Popen, Path]:
    mark = tmp_path / f"paused-{time.monotonic_ns()}"
    extra = {"EMOVERIFY_PAUSE_AT": pause_at, "EMOVERIFY_PAUSE_MARK": str(mark)} if pause_at else {}
    process = subprocess.Popen(argv, env=_env(**extra, **env), cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    return process, mark


def _kill_when_paused(process: subprocess.Popen, mark: Path, sig: int = signal.SIGKILL) -> int:
    """Wait until `process` reaches its pause point, send it `sig`, and return its exit code."""
    deadline = time.monotonic() + 120
    while not mark.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"the process never reached its pause point (exit {process.returncode}): {err[-2000:]}")
        time.sleep(0.05)
    process.send_signal(sig)
    process.communicate(timeout=60)
    return process.returncode


def _temporaries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.tmp"))


def _manifest(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def _reseal(directory: Path, manifest: dict) -> None:
    """Write `manifest` with a seal that matches it: an edit made with care, that only the files can expose."""
    content = {k: v for k, v in manifest.items() if k != "sha256"}
    (directory / "manifest.json").write_text(json.dumps({**content, "sha256": _seal(content)}))


# --- runs killed at every point, then a run that succeeds --------------------------------------------------


def test_a_run_killed_anywhere_is_redone_by_the_next_run_and_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "store"
    argv = [*RUN, "--out", str(out)]
    entry = group_dir(out, "baseline", "tiny:gpt2")

    started, _ = _start(argv, tmp_path)  # right after start: still importing
    time.sleep(0.5)
    started.kill()
    assert started.wait(timeout=60) == -signal.SIGKILL

    process, mark = _start(argv, tmp_path, "extraction")  # after the first batch of the extraction
    assert _kill_when_paused(process, mark) == -signal.SIGKILL
    assert not (entry / "manifest.json").exists()

    # While writing: two group files in place, the third's temporary file written but not yet renamed.
    process, mark = _start(argv, tmp_path, "atomic-replace:gratitude.safetensors")
    assert _kill_when_paused(process, mark) == -signal.SIGKILL
    assert sorted(p.name for p in entry.glob("*.safetensors")) == ["anger.safetensors", "apology.safetensors"]
    assert [Path(t).name.startswith(".gratitude.safetensors.") for t in _temporaries(out)] == [True]

    # SIGTERM while the manifest's temporary file is written: Python runs the cleanup, the entry stays incomplete.
    process, mark = _start(argv, tmp_path, "atomic-replace:manifest.json")
    assert _kill_when_paused(process, mark, signal.SIGTERM) == 128 + signal.SIGTERM
    assert not (entry / "manifest.json").exists() and len(list(entry.glob("*.safetensors"))) == 4
    assert _temporaries(out) == []  # the killed run's .tmp went with the rewrite, this one's with the SIGTERM

    rerun = subprocess.run(argv, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert RECOMPUTING in rerun.stderr and "incomplete: no manifest" in rerun.stderr
    assert _temporaries(out) == []
    store.forget()
    assert load_activations(out, "baseline", "tiny:gpt2").groups["anger"].sentence_end.shape[1:] == (3, 64)


# --- bytes flipped in the data and in the metadata ----------------------------------------------------------


@pytest.fixture(scope="module")
def good_activations(tmp_path_factory) -> tuple[Path, Entry]:
    """An intact tiny:gpt2 entry (extracted once) and its contents, for a stand-in extraction that is quick."""
    root = tmp_path_factory.mktemp("good")
    acts = ensure_activations("tiny:gpt2", "baseline", root)
    stored = read_entry(root, ("activations", "baseline", "tiny-gpt2"),
                        activation_store.activation_key("tiny:gpt2", "baseline"))
    return acts.directory, Entry(files=stored.files, record=stored.record, metadata=stored.metadata)


def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _damage(directory: Path, how: str) -> None:
    manifest, anger = _manifest(directory), directory / "anger.safetensors"
    if how == "flip an id in the manifest":
        text = (directory / "manifest.json").read_text()
        (directory / "manifest.json").write_text(text.replace('"anger-003"', '"anger-002"', 1))
    elif how == "flip the throughput":
        manifest["record"]["throughput"]["samples_per_s"] *= 10
        (directory / "manifest.json").write_text(json.dumps(manifest))
    elif how == "flip the seal's key":
        manifest["sha257"] = manifest.pop("sha256")
        (directory / "manifest.json").write_text(json.dumps(manifest))
    elif how == "flip a file's sha256 key":
        manifest["files"]["anger"]["sha257"] = manifest["files"]["anger"].pop("sha256")
        _reseal(directory, manifest)
    elif how in ("delete the record", "delete the provenance"):
        del manifest[how.split()[-1]]
        (directory / "manifest.json").write_text(json.dumps(manifest))
    elif how == "flip an id and reseal":
        manifest["record"]["groups"]["anger"]["ids"][2] = "anger-002"  # anger-003, as the issue saw it
        _reseal(directory, manifest)
    elif how == "swap two groups' files and reseal":
        shutil.copyfile(directory / "apology.safetensors", anger)
        manifest["files"]["anger"] = manifest["files"]["apology"]
        _reseal(directory, manifest)
    elif how == "drop a group and reseal":
        del manifest["files"]["neutral"]
        _reseal(directory, manifest)
    elif how == "a throughput that is text, resealed":
        manifest["record"]["throughput"]["samples_per_s"] = "fast"
        _reseal(directory, manifest)
    elif how == "a file name that is a path, resealed":
        manifest["files"]["../anger"] = manifest["files"].pop("anger")
        _reseal(directory, manifest)
    elif how == "flip a data byte":
        _flip_byte(anger, -5)
    elif how == "flip an id in a file's own metadata":
        blob = anger.read_bytes()
        anger.write_bytes(blob.replace(b"anger-003", b"anger-002", 1))
    elif how == "manifest not JSON":
        (directory / "manifest.json").write_text('{"canonical_key": ')
    elif how == "manifest a list":
        (directory / "manifest.json").write_text("[1, 2]")
    else:
        raise AssertionError(how)


DAMAGE = {
    "flip an id in the manifest": "does not match its own sha256",
    "flip the throughput": "does not match its own sha256",
    "flip the seal's key": r"unreadable \(KeyError",
    "flip a file's sha256 key": "anger.safetensors does not match its manifest",
    "delete the record": r"unreadable \(KeyError: 'record'",
    "delete the provenance": r"unreadable \(KeyError: 'provenance'",
    "flip an id and reseal": "disagrees with the manifest .*id 2 is 'anger-003' in the file, 'anger-002'",
    "swap two groups' files and reseal": "anger.safetensors disagrees with the manifest",
    "drop a group and reseal": "holds no neutral group",
    "a throughput that is text, resealed": "throughput that is not a positive number",
    "a file name that is a path, resealed": "unreadable",
    "flip a data byte": "anger.safetensors does not match its manifest",
    "flip an id in a file's own metadata": "anger.safetensors does not match its manifest",
    "manifest not JSON": r"unreadable \(JSONDecodeError",
    "manifest a list": r"unreadable \(TypeError",
}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_damaged_activations_are_recomputed_with_a_warning_never_used(tmp_path, monkeypatch, good_activations, how):
    source, contents = good_activations
    directory = tmp_path / source.relative_to(source.parents[3])
    shutil.copytree(source, directory)
    store.forget()
    _damage(directory, how)
    with pytest.raises(ArtifactError, match=DAMAGE[how]):
        load_activations(tmp_path, "baseline", "tiny:gpt2")
    extractions = []
    monkeypatch.setattr(activation_store, "_extract", lambda *args: extractions.append(args) or contents)
    with pytest.warns(UserWarning, match=f"{RECOMPUTING}: .*{DAMAGE[how]}"):
        again = ensure_activations("tiny:gpt2", "baseline", tmp_path)
    assert len(extractions) == 1 and again.manifest["throughput"] == contents.record["throughput"]
    store.forget()
    assert load_activations(tmp_path, "baseline", "tiny:gpt2").groups["anger"].ids[2] == "anger-003"  # repaired


class Sweep:
    """A result computation that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> Result:
        self.calls += 1
        return Result(arrays={"scores": np.arange(6, dtype=np.float32)}, record={"value": 0.25, "layers": [3]})


@pytest.mark.parametrize("how", ["edit a value", "flip the seal's key", "delete the record", "delete the provenance",
                                 "another kind's arrays, resealed"])
def test_a_damaged_result_is_recomputed_with_a_warning(tmp_path, how):
    key = {"model": "tiny:gpt2", "seed": 0}
    compute = Sweep()
    cached_result(tmp_path, "sweep", key, compute)
    directory = result_dir(tmp_path, "sweep", key)
    manifest = _manifest(directory)
    if how == "edit a value":
        manifest["record"]["value"] = 0.95
        (directory / "manifest.json").write_text(json.dumps(manifest))
    elif how == "flip the seal's key":
        manifest["sha257"] = manifest.pop("sha256")
        (directory / "manifest.json").write_text(json.dumps(manifest))
    elif how.startswith("delete"):
        del manifest[how.split()[-1]]
        (directory / "manifest.json").write_text(json.dumps(manifest))
    else:
        other = cached_result(tmp_path, "other", key, compute).provenance["directory"]
        shutil.copyfile(Path(other) / "arrays.safetensors", directory / "arrays.safetensors")
        manifest["files"]["arrays"] = _manifest(Path(other))["files"]["arrays"]
        _reseal(directory, manifest)
    with pytest.warns(UserWarning, match="recomputing results/sweep: "):
        again = cached_result(tmp_path, "sweep", key, compute)
    assert not again.from_cache and again.record["value"] == 0.25
    store.forget()
    assert cached_result(tmp_path, "sweep", key, compute).from_cache  # repaired


def test_a_flipped_digest_record_is_not_trusted(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights" * 100)
    true = file_sha256(weights, remember=True)
    record = tmp_path / ".model.safetensors.sha256.json"
    record.write_text(record.read_text().replace(true[:8], f"{int(true[0], 16) ^ 1:x}{true[1:8]}"))
    store.forget()  # a new process: only the record stands for the file, whose stat is unchanged
    assert file_sha256(weights, remember=True) == true  # the record's seal failed: the bytes were hashed again


# --- two processes on one store at once ---------------------------------------------------------------------

_RACE = """
import hashlib, os, sys, time
import numpy as np
from emoverify.store import Entry, cached_entry
def compute():
    time.sleep(1.0)  # long enough for the other process to arrive while this one computes
    return Entry(files={name: {"x": np.frombuffer(os.urandom(4096), dtype=np.float32)} for name in ("a", "b", "c")})
entry = cached_entry(sys.argv[1], ("results", "race"), {"k": 1}, compute)
print(entry.from_cache, hashlib.sha256(b"".join(entry.files[n]["x"].tobytes() for n in "abc")).hexdigest())
"""


def test_two_processes_writing_one_entry_take_turns(tmp_path):
    # Each process computes different random bytes: without the lock both would write, files interleaved.
    racers = [subprocess.Popen([sys.executable, "-c", _RACE, str(tmp_path)], env=_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [racer.communicate(timeout=120) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), [err for _, err in outcomes]
    (first_cached, first), (second_cached, second) = (out.split() for out, _ in outcomes)
    assert first == second and sorted([first_cached, second_cached]) == ["False", "True"]  # one computed, one read
    store.forget()
    stored = cached_entry(tmp_path, ("results", "race"), {"k": 1}, lambda: pytest.fail("recomputed"))
    assert hashlib.sha256(b"".join(stored.files[n]["x"].tobytes() for n in "abc")).hexdigest() == first
    assert _temporaries(tmp_path) == []


def test_runs_with_the_same_and_other_settings_on_one_store_at_once(tmp_path):
    out = tmp_path / "store"
    runs = [_start([*RUN, "--out", str(out), "--dtype", dtype], tmp_path)[0]
            for dtype in ("float32", "float32", "bfloat16")]
    errors = [run.communicate(timeout=300)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], errors
    assert not any("recomputing" in err or "corrupt" in err for err in errors)  # nobody saw another's half-entry
    store.forget()
    float32 = load_activations(out, "baseline", "tiny:gpt2", "float32")
    bfloat16 = load_activations(out, "baseline", "tiny:gpt2", "bfloat16")
    assert float32.directory != bfloat16.directory and bfloat16.manifest["settings"]["dtype"] == "bfloat16"
    assert len(list(out.glob("activations/baseline/tiny-gpt2/*/manifest.json"))) == 2
    assert _temporaries(out) == []


# --- temporary files and build directories swept ------------------------------------------------------------


def test_stale_temporary_files_are_swept_fresh_ones_kept(tmp_path):
    hour_ago = time.time() - 2 * 3600
    stale = [tmp_path / "store" / "activations" / "x" / ".anger.safetensors.k1.tmp",
             tmp_path / "reports" / ".index.html.k2.tmp"]
    fresh = tmp_path / "store" / "results" / ".arrays.safetensors.k3.tmp"  # perhaps a live writer's
    for path in [*stale, fresh]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    for path in stale:
        os.utime(path, (hour_ago, hour_ago))
    cached_result(tmp_path / "store", "sweep", {"k": 0}, Sweep())  # a write sweeps the store once
    atomic_write_text(tmp_path / "reports" / "index.html", "<html/>")  # a write sweeps its own file's leftovers
    assert not any(path.exists() for path in stale) and fresh.exists()


def test_a_killed_stand_in_build_is_swept_and_rebuilt(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("EMOVERIFY_CACHE", str(cache))
    build = [sys.executable, "-c", "from emoverify.lm.standins import ensure_standin; ensure_standin('tiny:gpt2')"]
    target = standin_dir("tiny:gpt2")

    def leftovers() -> list[Path]:
        return [p for p in target.parent.iterdir() if p.is_dir() and p.name.startswith(".")]

    process, mark = _start(build, tmp_path, "standin-build", EMOVERIFY_CACHE=str(cache))
    assert _kill_when_paused(process, mark, signal.SIGTERM) == 128 + signal.SIGTERM
    assert leftovers() == [] and not target.exists()  # SIGTERM: the build removed its own directory

    process, mark = _start(build, tmp_path, "standin-build", EMOVERIFY_CACHE=str(cache))
    deadline = time.monotonic() + 120
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    (building,) = leftovers()
    os.utime(building, (time.time() - 3600, time.time() - 3600))  # old, but its builder is alive: kept
    assert sweep_abandoned_builds(target.parent) == [] and building.is_dir()
    assert _kill_when_paused(process, mark) == -signal.SIGKILL
    assert leftovers() == [building] and not target.exists()

    assert sweep_abandoned_builds(target.parent) == [building]  # its lock is free now
    assert ensure_standin("tiny:gpt2") == target and leftovers() == []
    config = target / "config.json"
    config.write_text(config.read_text().replace('"n_layer": 2', '"n_layer": 3'))  # the weights still hash
    with pytest.warns(UserWarning, match="rebuilding the stand-in tiny:gpt2 .*config.json does not match"):
        ensure_standin("tiny:gpt2")
    assert '"n_layer": 2' in config.read_text()
