"""One content-addressed, hash-checked store for everything emoverify computes and reads again.

What goes in: activations (`lm.activation_store`: one entry per model x dataset x extraction settings, one
file per emotion group), encoder features (`lm.encoders`), and every slow result (`cached_result`: a
probe fit, a speed measurement, a subspace analysis, a steering sweep). An entry is a directory addressed
by what it was made from::

    <root>/<namespace...>/<first 16 hex of sha256(canonical key)>/
        <name>.safetensors ...   its arrays, in one or more files (with string metadata in each header)
        manifest.json            the canonical key, each file's sha256 and size, the record, provenance,
                                 and a sha256 of all that (so an edited record is caught too)
    <root>/<namespace...>/.<first 16 hex>.lock   the entry's lock (empty; stays after release)

The key must say everything the entry depends on: model reference and weights digest, dataset sha256,
settings, seeds, the code that computes it, and any input arrays (`array_digest`). The store adds its
format. Files are written one by one, each atomically, the manifest last, so an entry is complete exactly
when its manifest exists and names files that hash to the sha256 it records. A read checks the key stored
in the manifest against the one asked for (a hash-prefix collision, a hand-edited file), the manifest's own
sha256 and every file's sha256, then what the reader asks of the entry's shape (`check`: an activation
entry's four groups, their shapes, and the prompt ids in the manifest equal to those in each hashed file's
own metadata); anything else (absent, partial, corrupt, of the wrong shape, an older format) raises
`ArtifactError`, and `cached_entry` / `cached_result` recompute it, with a warning that says why if
something was there. Nothing is read without passing the checks, and no damage is a crash.

Writers hold a lock per entry (`locking`: `flock`, released by the kernel when its holder dies), and
`cached_entry` looks for the entry once more under it: two runs on one store never interleave their files,
and the second waits for the first and reads its entry. A write replaces the entry's directory whole, so
what a killed writer left there goes with it; stale temporary files elsewhere in the store are swept once
per process (`provenance.sweep_stale_temporaries`).

In one process, what was read and verified is kept in one memo (`memo.MEMO`), keyed by content: an entry by
its directory and canonical key, a file digest by the file's path, each stored with the stat signature
(device, inode, size, mtime_ns, ctime_ns) of every file it came from. Each read stats those files again
and serves the memo only if none changed; otherwise it verifies from the bytes again. Arrays read from the
store are read-only, since the memo hands the same arrays to every reader.

Large files that are read but not written here (a checkpoint's weights) are digested by `file_sha256`; with
`remember=True` the digest is also recorded beside the file, so later processes skip re-reading it while
the file is unchanged (see `file_sha256` for what that trusts).

Modules: `entries` (write, read, check), `results` (`cached_result`), `digests` (`file_sha256`,
`array_digest`), `memo` (the in-process memo), `locking` (one writer at a time; the sweep). The package
imports numpy, safetensors and filelock, never torch (an `import-linter` contract), so the harness can read
stored results without loading a model library.
"""

from emoverify.store.digests import array_digest, file_sha256
from emoverify.store.entries import (
    MANIFEST,
    STORE_FORMAT,
    Entry,
    EntryCheck,
    cached_entry,
    entry_dir,
    read_entry,
    write_entry,
)
from emoverify.store.locking import exclusive, lock_path
from emoverify.store.memo import forget
from emoverify.store.results import Result, cached_result, load_result, result_dir

__all__ = [
    "MANIFEST",
    "STORE_FORMAT",
    "Entry",
    "EntryCheck",
    "Result",
    "array_digest",
    "cached_entry",
    "cached_result",
    "entry_dir",
    "exclusive",
    "file_sha256",
    "forget",
    "load_result",
    "lock_path",
    "read_entry",
    "result_dir",
    "write_entry",
]
