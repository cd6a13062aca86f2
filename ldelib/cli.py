"""The ``ldelib`` command line: a demo, and fit / score / sample on ``.npy`` files.

Every subcommand is a thin layer over the library API; ``main(argv)`` returns an exit
status so it can be tested without a subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main"]


def _parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--param expects KEY=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value  # a bare string such as architecture=paper
    return params


def _load_array(path: str) -> np.ndarray:
    """The 2-D numeric array of the ``.npy`` file at ``path``, memory-mapped and checked."""
    from ._sources import open_rows

    return open_rows(path)


def _save_array(path: str, array: np.ndarray) -> str:
    """Write ``array`` to exactly ``path`` (numpy.save would append .npy); return it."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Cannot write {path!r}: the folder {folder!r} does not exist.")
    with open(path, "wb") as f:
        np.save(f, array)
    return path


def _demo(args: argparse.Namespace) -> int:
    from .datasets import make_target
    from .metrics import mean_log_likelihood
    from .models import GMM, CausalConvMDN

    target = make_target(args.target)
    n_train = 2000 if args.quick else args.n_train
    train = target.sample(n_train, random_state=args.seed)
    test = target.sample(n_train, random_state=args.seed + 1)
    d = target.n_features
    truth, truth_se = mean_log_likelihood(target.log_prob(test))
    rows: list[tuple[str, float, float, float | None]] = [
        ("truth (exact density)", truth, truth_se, None)
    ]
    models = {
        "CausalConvMDN": CausalConvMDN(
            random_state=args.seed, max_epochs=40 if args.quick else 200
        ),
        "GMM (10 full-covariance)": GMM(10, covariance_type="full", random_state=args.seed),
    }
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(train)
        elapsed = time.perf_counter() - start
        mean, se = mean_log_likelihood(model.score_samples(test))
        rows.append((name, mean, se, elapsed))

    print(f"target {target.name!r} ({d}-D): {n_train} training rows, {len(test)} test rows")
    print(f"{'model':<28}{'test log-lik (nats/row)':>26}{'nats/dim':>10}{'fit (s)':>9}")
    for name, mean, se, fit_s in rows:
        fit = "" if fit_s is None else f"{fit_s:.1f}"
        print(f"{name:<28}{mean:>17.4f} ± {se:<6.4f}{mean / d:>10.4f}{fit:>9}")

    if args.out:
        _demo_figure(target, models, Path(args.out), args.seed)
        print(f"wrote {args.out}")
    return 0


def _demo_figure(target: Any, models: dict[str, Any], path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plot import plot_density_2d, plot_samples_2d

    data = target.sample(20_000, random_state=seed + 2)
    lo, hi = np.percentile(data, 0.5, axis=0), np.percentile(data, 99.5, axis=0)
    pad = 0.15 * (hi - lo)
    bounds = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
    mdn = models["CausalConvMDN"]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4), constrained_layout=True)
    plot_density_2d(target.log_prob, bounds, axes[0], title="true density")
    for ax, (name, model) in zip(axes[1:3], models.items(), strict=True):
        plot_density_2d(model.score_samples, bounds, ax, title=f"{name} density")
    plot_samples_2d(
        mdn.sample(5000, random_state=seed), bounds, axes[3], title="CausalConvMDN samples"
    )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fit(args: argparse.Namespace) -> int:
    X = _load_array(args.data)
    params = {"verbose": 1, **_parse_params(args.param)}
    from . import distributed
    from .models import make_model

    # The path, not the array: models read a file in chunks (a memmap, never whole).
    model = make_model(args.model, **params).fit(args.data)
    ctx = distributed.context()
    if ctx.is_main:  # under torchrun every rank holds the same model: rank 0 writes it
        model.save(args.out)
        print(
            f"fitted {type(model).__name__} on {X.shape[0]} rows x {X.shape[1]} dims; "
            f"saved {args.out}"
        )
        if getattr(model, "best_validation_score_", None) is not None:
            print(f"best validation log-likelihood: {model.best_validation_score_:.4f} nats/row")
    distributed.barrier(ctx)
    distributed.shutdown()
    return 0


def _score(args: argparse.Namespace) -> int:
    from .metrics import mean_log_likelihood
    from .persistence import load

    model = load(args.model)
    X = _load_array(args.data)
    if not model._has_log_prob():
        raise ValueError(
            f"{type(model).__name__} has no tractable density, so it cannot score rows; "
            "fit --model mdn or gmm for exact log-likelihoods."
        )
    model.verbose = 1  # a progress bar over the rows
    log_prob = model.score_samples(args.data, out=args.out)
    mean, se = mean_log_likelihood(log_prob)
    print(
        f"mean log-likelihood: {mean:.4f} ± {se:.4f} nats/row ({mean / X.shape[1]:.4f} nats/dim)"
    )
    if args.out:
        print(f"wrote {log_prob.shape[0]} log-likelihoods to {args.out}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from .persistence import load

    model = load(args.model)
    samples = model.sample(args.n, random_state=args.seed)
    path = _save_array(args.out, samples)
    print(f"wrote {args.n} samples of {samples.shape[1]} dims to {path}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .persistence import convert

    convert(args.source, args.target)
    print(f"wrote {args.target}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import run_suite

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
    written = report.write(args.out)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__
    from .datasets import TARGETS
    from .models import MODELS

    parser = argparse.ArgumentParser(prog="ldelib", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ldelib {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="on an error, show the full traceback"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="fit on a 2-D target with a known density, compare")
    demo.add_argument(
        "--target",
        default="spiral",
        choices=[t for t in TARGETS if t != "sine-chain" and t != "gmm"],
    )
    demo.add_argument("--n-train", type=int, default=5000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quick", action="store_true", help="a smaller, faster run")
    demo.add_argument("--out", default="demo.png", help="PNG to write ('' for none)")
    demo.set_defaults(run=_demo)

    fit = sub.add_parser("fit", help="fit a model on an (n, D) .npy array and save it")
    fit.add_argument("data")
    fit.add_argument("--model", choices=list(MODELS), default="mdn")
    fit.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    fit.add_argument("--out", required=True)
    fit.set_defaults(run=_fit)

    score = sub.add_parser("score", help="log-likelihood of the rows of a .npy array")
    score.add_argument("model")
    score.add_argument("data")
    score.add_argument("--out", help="write per-row log-likelihoods to this .npy")
    score.set_defaults(run=_score)

    sample = sub.add_parser("sample", help="draw samples from a saved model")
    sample.add_argument("model")
    sample.add_argument("n", type=int)
    sample.add_argument("--out", required=True)
    sample.add_argument("--seed", type=int)
    sample.set_defaults(run=_sample)

    convert = sub.add_parser(
        "convert", help="rewrite a model file of ldelib 0.1 (format 1) in the current format"
    )
    convert.add_argument("source", help="the old model file")
    convert.add_argument("target", help="where to write the converted file")
    convert.set_defaults(run=_convert)

    from .bench import SUITES

    bench = sub.add_parser("bench", help="run a benchmark suite; writes JSON, markdown, PNG")
    bench.add_argument("suite", choices=list(SUITES))
    bench.add_argument("--quick", action="store_true", help="a reduced run of a few minutes")
    bench.add_argument("--out", default="bench-results", help="output folder")
    bench.add_argument("--seeds", type=int, nargs="+", help="override the suite's seeds")
    bench.add_argument("--cache", help="folder for trained autoencoders (default OUT/cache)")
    bench.add_argument(
        "--budget", type=float, help="wall-time budget (s) per neural model, for every model"
    )
    bench.add_argument(
        "--models",
        nargs="+",
        help="run only these models (lde, lde-paper, gmm, gmmn, kde, maf, nsf)",
    )
    bench.add_argument("--dims", type=int, nargs="+", help="latents: only these latent sizes")
    bench.set_defaults(run=_bench)
    return parser


#: Errors that mean the input was wrong (exit status 2); any other failed computation
#: exits with 1.
_INPUT_ERRORS = (ValueError, TypeError, OSError, KeyError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``).

    Every error ends here: one line on stderr and exit status 2 for bad input (a missing
    or foreign file, bad data, an unknown parameter), 1 for a computation that failed
    (a diverged fit, memory); ``--debug`` shows the traceback instead.
    """
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print(f"ldelib {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        message = str(error)
        if isinstance(error, OSError) and error.strerror:  # without the "[Errno N]"
            message = error.strerror + (f": {error.filename!r}" if error.filename else "")
        message = " ".join(message.split()) or type(error).__name__
        if not isinstance(error, (*_INPUT_ERRORS, FloatingPointError, MemoryError)):
            message = f"{type(error).__name__}: {message} (rerun with --debug for the traceback)"
        print(f"ldelib {args.command}: error: {message}", file=sys.stderr)
        return 2 if isinstance(error, _INPUT_ERRORS) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
