"""Run one benchmark suite: ``python -m benchmarks SUITE [--quick] [--out DIR]``.

From the repository root, after ``pip install -e ".[bench]"``; ``main(argv)`` returns
an exit status so it can be tested without a subprocess.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import textwrap
from collections.abc import Sequence

from ldelib.cli import run_reported

from . import SUITES, run_suite
from ._models import SHORT_NAMES

__all__ = ["main"]

PROG = "python -m benchmarks"


def _suites() -> str:
    """The suites, one per entry with what it measures, for the end of ``--help``."""
    width = max(map(len, SUITES)) + 4
    lines = ["suites:"]
    for name, suite in SUITES.items():
        lines += textwrap.wrap(
            suite.doc, 79, initial_indent=f"  {name:<{width - 2}}", subsequent_indent=" " * width
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a benchmark suite; writes JSON, markdown and PNG files.",
        epilog=_suites(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("suite", choices=list(SUITES), metavar="SUITE", help="the suite to run")
    parser.add_argument("--quick", action="store_true", help="a reduced run of a few minutes")
    parser.add_argument("--out", default="bench-results", help="output folder")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the suite's seeds")
    parser.add_argument("--cache", help="folder for trained autoencoders (default OUT/cache)")
    parser.add_argument(
        "--budget", type=float, help="wall-time budget (s) per neural model, for every model"
    )
    parser.add_argument(
        "--models",
        nargs="+",
        help="run only these models (" + ", ".join(SHORT_NAMES) + ")",
    )
    parser.add_argument(
        "--dims", type=int, nargs="+", help="only these latent sizes (warped: dimensions)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the written paths as one JSON object"
    )
    parser.add_argument(
        "--debug", action="store_true", help="on an error, show the full traceback"
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    # With --json, stdout is for the JSON alone: the suites' progress lines go to stderr.
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with quiet:
        report = run_suite(
            args.suite,
            args.out,
            args.quick,
            args.seeds,
            args.cache,
            args.budget,
            models=args.models,
            dims=args.dims,
        )
        written = [str(p) for p in report.write(args.out)]
    if args.json:
        payload = {"suite": args.suite, "quick": args.quick, "out": args.out, "written": written}
        print(json.dumps(payload, allow_nan=False))
    else:
        print("wrote " + ", ".join(written))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite ``argv`` names (default: ``sys.argv[1:]``); the exit status.

    As ``ldelib``'s own command line: an error is one line on stderr and exit status 2
    for bad input (an unknown model, an option the suite does not take), 1 for a run that
    failed; ``--debug`` shows the traceback instead.
    """
    args = _parser().parse_args(argv)
    return run_reported(lambda: _run(args), PROG, args.debug)


if __name__ == "__main__":
    sys.exit(main())
