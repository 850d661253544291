"""Atomic writes: whole file or the old one, ordinary permissions, no stray temp files."""

from __future__ import annotations

import os

import pytest

from emoverify.provenance import atomic_write_bytes, atomic_write_json, sha256_file


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "f.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert target.read_text().strip().endswith("}") and '"a": 2' in target.read_text()
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_an_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")
    before = sha256_file(target)

    def fail(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    assert sha256_file(target) == before and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
