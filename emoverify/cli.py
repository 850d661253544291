"""Command line: `python -m emoverify run|claims|report` (also installed as `emoverify`)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from emoverify.errors import EmoverifyError, did_you_mean
from emoverify.lm import checkpoints
from emoverify.lm.planted import PLANTED_MODELS
from emoverify.paper import PAPER_MODELS, split_seed

__all__ = ["main"]

PAPER_REFS = tuple(m.hub_id for m in PAPER_MODELS.values())
STANDIN_REFS = tuple(m.standin for m in PAPER_MODELS.values())
TINY_REFS = ("tiny:gpt2", "tiny:pythia", "tiny:gpt-neo")


def _run(args: argparse.Namespace) -> int:
    # local import: only `run` needs torch and the models; `report` and `claims` start without them.
    import torch
    from tqdm.auto import tqdm

    from emoverify.data import DATASETS
    from emoverify.lm.activation_store import cached_activations, ensure_activations
    from emoverify.lm.models import load_model

    refs = [r.strip() for r in args.models.split(",") if r.strip()]
    # Every option is checked before any work, so a typo never costs an extraction.
    check_models(refs)
    check_device(args.device)
    check_out(Path(args.out))
    datasets = list(DATASETS) if args.dataset == "all" else [args.dataset]
    dtype = getattr(torch, args.dtype)
    for ref in tqdm(refs, desc="models", unit="model"):
        lm = None
        for dataset in datasets:
            # The model is loaded lazily: an intact, current model x dataset in the store never loads it.
            acts = cached_activations(ref, dataset, args.out, dtype)
            if acts is None:
                lm = lm or load_model(ref, device=args.device, dtype=dtype)
                acts = ensure_activations(ref, dataset, args.out, device=args.device, batch_size=args.batch_size,
                                          dtype=dtype, lm=lm, progress=True)
            speed = acts.manifest["throughput"]
            tqdm.write(f"{ref} / {dataset}: {len(acts.groups)} files in {acts.directory} "
                       f"({speed['samples_per_s']:.0f} samples/s, {speed['tokens_per_s']:.0f} tokens/s "
                       f"when extracted on {acts.manifest['settings']['device']})")
    return 0


def check_models(refs: Sequence[str]) -> None:
    """Every model reference is known and its weights can be had; else one error naming every problem.

    A stand-in name or a paper model's hub id with a typo gets "did you mean"; every model whose weights are
    missing is named at once with its fetch command, so a researcher downloads once, not once per model.
    """
    if not refs:
        raise EmoverifyError("--models names no model: give hub ids, local directories or standin:* refs")
    problems, missing = [], []
    known_standins = [m.standin for m in PAPER_MODELS.values()] + list(TINY_REFS) + list(PLANTED_MODELS)
    for ref in refs:
        if ref.startswith(("standin:", "tiny:")):
            if split_seed(ref)[0] not in known_standins:
                problems.append(f"unknown stand-in {ref!r}{did_you_mean(ref, known_standins)}")
        elif not checkpoints.weights_available(ref):
            hub_ids = [m.hub_id for m in PAPER_MODELS.values()]
            close = did_you_mean(ref, hub_ids)
            if ref not in hub_ids and "did you mean" in close:
                problems.append(f"unknown model {ref!r}{close}")
            else:
                missing.append(ref)
    if missing and not checkpoints.hub_reachable():
        commands = " && ".join(checkpoints.fetch_command(ref) for ref in missing)
        problems.append(f"the weights of {', '.join(missing)} are not on this machine and the model hub cannot be "
                        f"reached: on a machine with network access run `{commands}` (then copy "
                        "~/.cache/huggingface here), or pass local checkpoint directories; `--models "
                        f"{','.join(STANDIN_REFS)}` runs the pipeline on random-init stand-ins")
    if problems:
        raise EmoverifyError("; ".join(problems))


def check_device(device: str) -> None:
    """`device` names a device this torch build can use (`cpu`, `cuda`, `cuda:1`, `mps`)."""
    import torch  # local import: the claims and report commands never import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise EmoverifyError(f"--device {device!r} is not a device: use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"a CUDA {torch.version.cuda} build"
            raise EmoverifyError(f"--device {device}: this torch ({torch.__version__}, {build}) sees no CUDA GPU; "
                                 "run on cpu, or install a CUDA build of torch on a machine with a GPU")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise EmoverifyError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise EmoverifyError(f"--device {device}: MPS is not available on this machine")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise EmoverifyError(f"--device {device}: emoverify runs on cpu, cuda or mps, not {parsed.type}")


def check_out(out: Path) -> None:
    """`out` is a folder emoverify can write in (created if absent), checked with a probe file."""
    if out.exists() and not out.is_dir():
        raise EmoverifyError(f"--out {out} is a file, not a folder: give a folder for the artifact store")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise EmoverifyError(f"--out {out} is not a folder emoverify can write in: {err.strerror or err}") from None


def _claims(args: argparse.Namespace, extra: Sequence[str]) -> int:
    import pytest  # local import: pytest is a test dependency, needed by `claims` alone

    options = [args.path, f"--emoverify-models={args.models}", "-q", *extra]
    return int(pytest.main(options))


def _report(extra: Sequence[str]) -> int:
    from emoverify.report import main as report_main  # local import: `run` need not load the report's

    return report_main(list(extra))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emoverify", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="extract activations for models x datasets into the artifact store")
    run.add_argument("--models", default=",".join(PAPER_REFS),
                     help="comma-separated model refs: hub ids, local dirs, standin:*, tiny:* "
                          f"(default: the paper's three; offline: {','.join(STANDIN_REFS)})")
    run.add_argument("--dataset", default="all", choices=["baseline", "extended", "all"])
    run.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")
    run.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    run.add_argument("--batch-size", type=int, default=32)
    run.add_argument("--out", default="artifacts", help="artifact store root")
    claims = sub.add_parser("claims", help="recompute the claims (pytest claims/)")
    claims.add_argument("--models", default="real", choices=["real", "standin"])
    claims.add_argument("--path", default="claims")
    sub.add_parser("report", help="write the corrections table, HTML report and badges", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        return _report(argv[1:])
    args, extra = build_parser().parse_known_args(argv)
    try:
        if args.command == "run":
            if extra:
                build_parser().error(f"unrecognised arguments: {' '.join(extra)}")
            return _run(args)
        return _claims(args, extra)
    except EmoverifyError as err:
        print(f"emoverify: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a folder that turned read-only: one line, not a traceback
        where = f" ({err.filename})" if err.filename else ""
        print(f"emoverify: cannot read or write{where}: {err.strerror or err}; finished files are kept, "
              "nothing half-written is used", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emoverify: interrupted; finished files are kept, the unfinished group is redone next run",
              file=sys.stderr)
        return 130
