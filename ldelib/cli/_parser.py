"""The ``ldelib`` command line's arguments."""

from __future__ import annotations

import argparse

from . import _commands as commands
from ._demo import demo as run_demo

__all__ = ["DESCRIPTION", "build_parser"]

DESCRIPTION = (
    "The ldelib command line: a demo, and fit / compare / score / sample / info on .npy files."
)


LABELS_FIT = (
    "what each row is conditioned on: a .npy of class labels, shape (n,), or of a context, "
    "shape (n, C); fits p(x | y) (the model's conditional=True)"
)
LABELS_SCORE = "the labels or context of each row (.npy), for a model fitted with --labels"
LABELS_SAMPLE = "the condition of the draws (.npy): one label or context for all, or one per draw"


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__
    from ..datasets import TARGETS
    from ..models import MODELS

    parser = argparse.ArgumentParser(prog="ldelib", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"ldelib {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="on an error, show the full traceback"
    )
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="what to do (COMMAND -h: its options)",
    )
    json_help = "print one JSON object on stdout (and nothing else)"

    demo = sub.add_parser("demo", help="fit on a 2-D target with a known density, compare")
    demo.add_argument(
        "--target",
        default="spiral",
        # The targets whose default is a 2-D picture (the others default to more dimensions).
        choices=[t for t in TARGETS if t not in ("sine-chain", "gmm", "warped", "warped-heavy")],
        help="the 2-D target distribution (default: %(default)s)",
    )
    demo.add_argument(
        "--n-train", type=int, default=5000, help="training rows (default: %(default)s)"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--quick", action="store_true", help="a smaller, faster run")
    demo.add_argument("--out", default="demo.png", help="PNG to write ('' for none)")
    demo.set_defaults(run=run_demo)

    fit = sub.add_parser(
        "fit",
        help="fit a model on an (n, D) .npy array and save it",
        epilog="Each model's parameters, with their defaults: ldelib params MODEL.",
    )
    fit.add_argument("data", help="the training rows: a .npy file of shape (n, D)")
    fit.add_argument(
        "--model", choices=list(MODELS), default="mdn", help="the model (default: %(default)s)"
    )
    fit.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a constructor parameter of the model (VALUE is JSON, else a string); repeatable",
    )
    fit.add_argument("--seed", type=int, help="random seed of the fit (the model's random_state)")
    fit.add_argument("--labels", metavar="FILE.npy", help=LABELS_FIT)
    fit.add_argument("--out", required=True, help="the model file to write")
    fit.set_defaults(run=commands.fit)

    params = sub.add_parser(
        "params", help="list a model's parameters, with their defaults, for `fit --param`"
    )
    params.add_argument("model", choices=list(MODELS), help="the model")
    params.set_defaults(run=commands.params)

    from ..compare import MODELS as COMPARED

    compare = sub.add_parser(
        "compare",
        help="fit every density model to your rows under one budget, rank them on test rows",
        epilog="Models: " + ", ".join(f"{k} ({v})" for k, v in COMPARED.items()) + ".",
    )
    compare.add_argument("train", help="the training rows: a .npy file of shape (n, D)")
    compare.add_argument("--test", help="test rows (.npy); default: hold out --test-fraction")
    compare.add_argument(
        "--test-fraction",
        type=float,
        help="share of the training rows held out as test rows (default: 0.2)",
    )
    compare.add_argument(
        "--models",
        nargs="+",
        choices=list(COMPARED),
        metavar="MODEL",
        help="the models to compare (default: all; see below)",
    )
    compare.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="wall-clock seconds per model and seed (default: %(default)s)",
    )
    compare.add_argument(
        "--seeds", type=int, default=1, help="fits per model, seeds 0, 1, ... (default: 1)"
    )
    compare.add_argument("--out", required=True, help="folder for compare.md, .json and .png")
    compare.add_argument("--json", action="store_true", help=json_help)
    compare.set_defaults(run=commands.compare)

    score = sub.add_parser("score", help="log-likelihood of the rows of a .npy array")
    score.add_argument("model", help="a model file written by `ldelib fit` (mdn or gmm)")
    score.add_argument("data", help="the rows to score: a .npy file of shape (n, D)")
    score.add_argument("--out", help="write per-row log-likelihoods to this .npy")
    score.add_argument("--labels", metavar="FILE.npy", help=LABELS_SCORE)
    score.add_argument("--json", action="store_true", help=json_help)
    score.set_defaults(run=commands.score)

    sample = sub.add_parser("sample", help="draw samples from a saved model")
    sample.add_argument("model", help="a model file written by `ldelib fit`")
    sample.add_argument("n", type=int, help="the number of samples to draw")
    sample.add_argument("--out", required=True, help="the .npy file to write (exactly this path)")
    sample.add_argument("--seed", type=int, help="random seed (default: the model's own stream)")
    condition = sample.add_mutually_exclusive_group()
    condition.add_argument("--labels", metavar="FILE.npy", help=LABELS_SAMPLE)
    condition.add_argument(
        "--label", metavar="VALUE", help="one class label for every draw (JSON, else a string)"
    )
    sample.set_defaults(run=commands.sample)

    info = sub.add_parser(
        "info", help="describe a model file: class, parameters, dimension, training, versions"
    )
    info.add_argument("model", help="a model file (any ldelib class)")
    info.add_argument("--json", action="store_true", help=json_help)
    info.set_defaults(run=commands.info)

    convert = sub.add_parser(
        "convert", help="rewrite a model file of ldelib 0.1 (format 1) in the current format"
    )
    convert.add_argument("source", help="the old model file")
    convert.add_argument("target", help="where to write the converted file")
    convert.set_defaults(run=commands.convert)
    return parser
