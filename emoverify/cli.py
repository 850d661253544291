"""Command line: `python -m emoverify run|claims|report` (also installed as `emoverify`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from emoverify.errors import EmoverifyError

__all__ = ["main"]

PAPER_REFS = ("gpt2", "EleutherAI/pythia-160m", "EleutherAI/gpt-neo-125M")
STANDIN_REFS = ("standin:gpt2", "standin:pythia-160m", "standin:gpt-neo-125M")


def _run(args: argparse.Namespace) -> int:
    # local import: only `run` needs torch and the models; `report` and `claims` start without them (~2 s).
    import torch
    from tqdm.auto import tqdm

    from emoverify.data import DATASETS
    from emoverify.lm.activation_store import cached_activations, ensure_activations
    from emoverify.lm.checkpoints import check_weights
    from emoverify.lm.models import load_model

    refs = [r.strip() for r in args.models.split(",") if r.strip()]
    datasets = list(DATASETS) if args.dataset == "all" else [args.dataset]
    check_weights(refs)  # stop before any work if some model cannot be had
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
    except KeyboardInterrupt:
        print("emoverify: interrupted; finished files are kept, the unfinished group is redone next run",
              file=sys.stderr)
        return 130
