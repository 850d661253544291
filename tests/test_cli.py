"""The command line: every option checked before any work, every failure one clear line and exit code 2."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emoverify.cli import main
from emoverify.lm import checkpoints


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["run", "--dataset", "baseline", *argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoints, "hub_reachable", lambda timeout=3.0: False)


@pytest.mark.parametrize(("argv", "words"), [
    (["--models", "gtp2"], "unknown model 'gtp2' (did you mean 'gpt2'?)"),
    (["--models", "standin:gtp2"], "unknown stand-in 'standin:gtp2' (did you mean 'standin:gpt2'?)"),
    (["--models", "tiny:gpt2,standin:gpt3"], "unknown stand-in 'standin:gpt3'"),
    (["--models", " , "], "--models names no model"),
    (["--models", "tiny:gpt2", "--device", "tpu"], "--device 'tpu' is not a device"),
    (["--models", "tiny:gpt2", "--device", "cuda:7"], "--device cuda:7"),
    (["--models", "tiny:gpt2", "--out", "/proc/x"], "--out /proc/x is not a folder emoverify can write in"),
])
def test_options_are_checked_before_any_work(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, argv: list[str], words: str) -> None:
    monkeypatch.chdir(tmp_path)  # --out defaults to ./artifacts: nothing may appear there
    code, err = run(capsys, *argv)
    assert code == 2 and err.startswith("emoverify: ") and words in err
    assert not (tmp_path / "artifacts").exists() or not any((tmp_path / "artifacts").iterdir())


def test_every_missing_model_is_named_at_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = run(capsys, "--models", "gpt2,EleutherAI/pythia-160m,EleutherAI/gpt-neo-125M",
                    "--out", str(tmp_path))
    assert code == 2
    assert "`hf download gpt2 && hf download EleutherAI/pythia-160m && hf download EleutherAI/gpt-neo-125M`" in err
    assert "did you mean" not in err


def test_out_that_is_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "store").write_text("not a folder")
    code, err = run(capsys, "--models", "tiny:gpt2", "--out", str(tmp_path / "store"))
    assert code == 2 and "is a file, not a folder" in err


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A small tmpfs at `path`; the test is skipped where this machine does not allow mounting one."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}): needs root in the sandbox")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs mounts are Linux")
def test_read_only_out(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "size=1m,ro") as out:
        code, err = run(capsys, "--models", "tiny:gpt2", "--out", str(out))
    assert code == 2 and "is not a folder emoverify can write in: Read-only file system" in err


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs mounts are Linux")
def test_full_disk_during_extraction(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # 64 KiB: the probe file fits, the first activation file does not.
    with tmpfs(tmp_path / "full", "size=64k") as out:
        code, err = run(capsys, "--models", "tiny:gpt2", "--out", str(out))
        # The entry's lock file (empty, kept for the next writer: emoverify.store.locking) is no leftover.
        leftovers = [p.name for p in out.rglob("*") if p.is_file() and p.suffix != ".lock"]
    messages = [line for line in err.splitlines() if line.startswith("emoverify: ")]  # tqdm bars aside
    assert code == 2 and len(messages) == 1 and "No space left on device" in messages[0]
    assert leftovers == []  # nothing half-written: no partial file, no temporary file
