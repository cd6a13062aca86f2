"""The ``ldelib`` command line: a demo, and fit / compare / score / sample / info on ``.npy`` files.

Every subcommand is a thin layer over the library API; ``main(argv)`` returns an exit
status so it can be tested without a subprocess.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path, resolve_target
from .persistence.describe import (
    Fitted,
    describe_model_file,
    format_value,
    jsonable,
    n_features,
    read_description,
    training_summary,
)

__all__ = ["main"]


def _parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as keyword arguments: values are JSON, else bare strings.

    A malformed pair is a ValueError (not SystemExit) so that it is reported like every
    other bad input, in one line by ``main``.
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--param expects KEY=VALUE (e.g. max_epochs=50), got {pair!r}.")
        if key in params:
            raise ValueError(f"--param {key} is given twice; give each parameter once.")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value  # a bare string such as architecture=paper
    return params


def _check_param_names(model: str, params: dict[str, Any]) -> None:
    """Refuse a parameter the model does not have, naming the nearest one that it does."""
    import difflib

    from .models import MODELS

    names = list(MODELS[model]().get_params())
    for key in params:
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(
                f"{MODELS[model].__name__} has no parameter {key!r}{hint} "
                f"(`ldelib params {model}` lists them)."
            )


#: A reStructuredText role (``:class:`~a.B```: its last name) or literal (its text).
_ROLES = re.compile(r":\w+:`~?(?:[\w.]+\.)?([^`]+)`|``([^`]+)``")


def _parameter_docs(cls: type) -> dict[str, str]:
    """The first sentence of each parameter's description in ``cls``'s docstring."""
    lines = (cls.__doc__ or "").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "Parameters"), None)
    if start is None:
        return {}
    docs: dict[str, str] = {}
    names: list[str] = []
    indent = len(lines[start]) - len(lines[start].lstrip())
    for line in lines[start + 2 :]:
        depth = len(line) - len(line.lstrip())
        if line.strip() and depth == indent:
            if " : " not in line:  # the next section
                break
            names = [n.strip() for n in line.split(" : ")[0].split(",")]
            continue
        if names and line.strip():
            for name in names:
                docs[name] = f"{docs.get(name, '')} {line.strip()}".strip()
    # reStructuredText roles and literals read as plain text on a terminal.
    plain = {name: _ROLES.sub(lambda m: m[1] or m[2], text) for name, text in docs.items()}
    # "Up to the first full stop followed by a space" is the first sentence.
    return {name: text.split(". ")[0].rstrip(".") + "." for name, text in plain.items()}


def _load_array(path: str) -> np.ndarray:
    """The 2-D numeric array of the ``.npy`` file at ``path``, memory-mapped and checked."""
    from ._sources import open_rows

    return open_rows(path)


def _check_output(path: str) -> None:
    """Refuse an output path that cannot be written, before any work is spent on it.

    A fit can take hours: finding out only at the end that ``--out`` names a missing
    folder or an existing folder would waste them. Messages name ``path`` exactly as
    the user wrote it.
    """
    if not path:
        raise ValueError("The output path is empty; give a file name.")
    resolve_target(path)
    folder = os.path.dirname(os.path.realpath(path))
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"Cannot write {path!r}: the folder {folder!r} is not writable.")


def _save_array(path: str, array: np.ndarray) -> str:
    """Write ``array`` to exactly ``path`` (numpy.save would append .npy); return it."""
    with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as f:
        np.save(f, array)
    return path


def _load_model(path: str) -> Any:
    """The object saved at ``path``, or a ValueError saying why the command line cannot.

    An autoencoder file holds weights, not the user's module classes, so ``load`` needs
    modules that only Python code can give (a LoadError): say so in command-line terms.
    """
    from .persistence import LoadError, load, read_model_file, registered

    try:
        return load(path)
    except LoadError as error:
        name = registered(str(read_model_file(path)[0].get("class"))).__name__
        raise ValueError(
            f"{path!r} holds {_article(name)} {name}, which loads only in Python, given the "
            f"modules or callables the file does not store ({error}). `ldelib info {path}` "
            "describes the file."
        ) from error


def _article(noun: str) -> str:
    return "an" if noun[:1] in "AEIOU" else "a"


def _print_json(payload: dict[str, Any]) -> None:
    """Print ``payload`` as one line of strict JSON: the whole stdout of a ``--json`` run."""
    print(json.dumps(jsonable(payload), allow_nan=False))


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

    fig = _draw_demo(target, models, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DEMO_DPI)
    plt.close(fig)


#: Resolution of the demo's figure; with its size (8 x 8 inches), 800 pixels a side.
_DEMO_DPI = 100


def _draw_demo(target: Any, models: dict[str, Any], seed: int) -> Any:
    """The demo's figure: the true density, the two fitted ones and samples, 2 x 2.

    Two by two rather than in a row, and with 14-point titles, so that the figure is
    still readable shrunk to the width of a page (about 700 pixels).
    """
    import matplotlib.pyplot as plt

    from .plot import plot_density_2d, plot_samples_2d

    data = target.sample(20_000, random_state=seed + 2)
    lo, hi = np.percentile(data, 0.5, axis=0), np.percentile(data, 99.5, axis=0)
    pad = 0.15 * (hi - lo)
    bounds = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
    mdn = models["CausalConvMDN"]
    fig, grid = plt.subplots(2, 2, figsize=(8, 8), constrained_layout=True)
    axes = grid.ravel()
    plot_density_2d(target.log_prob, bounds, axes[0], title="true density")
    for ax, (name, model) in zip(axes[1:3], models.items(), strict=True):
        plot_density_2d(model.score_samples, bounds, ax, title=f"{name} density")
    plot_samples_2d(
        mdn.sample(5000, random_state=seed), bounds, axes[3], title="CausalConvMDN samples"
    )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.title.set_fontsize(14)
    return fig


def _fit(args: argparse.Namespace) -> int:
    params = _parse_params(args.param)
    _check_param_names(args.model, params)
    if args.seed is not None:
        if "random_state" in params:
            raise ValueError("Give the seed once: --seed or --param random_state, not both.")
        params["random_state"] = args.seed
    _check_output(args.out)
    X = _load_array(args.data)
    from . import distributed
    from .models import make_model

    model = make_model(args.model, **params)
    # A progress bar while fitting; the saved model keeps the user's own verbosity.
    saved_verbose = model.verbose
    model.set_params(verbose=max(1, int(saved_verbose)))
    # The path, not the array: models read a file in chunks (a memmap, never whole).
    model.fit(args.data)
    model.set_params(verbose=saved_verbose)
    ctx = distributed.context()
    if ctx.is_main:  # under torchrun every rank holds the same model: rank 0 writes it
        model.save(args.out)
        print(
            f"fitted {type(model).__name__} on {X.shape[0]} rows x {X.shape[1]} dims; "
            f"saved {args.out}"
        )
        for item in training_summary(Fitted.of(model)):
            print(f"{item.label}: {item.text()}")
    distributed.barrier(ctx)
    distributed.shutdown()
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .compare import compare

    if args.test is not None and args.test_fraction is not None:
        raise ValueError("Give --test or --test-fraction, not both.")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} is a file; give a folder for the results.")
    # Everything is checked before the first fit, and nothing is written until the end.
    result = compare(
        args.train,
        args.test,
        test_fraction=0.2 if args.test_fraction is None else args.test_fraction,
        models=args.models,
        budget=args.budget,
        seeds=args.seeds,
        progress=not args.json,
    )
    paths = result.save(args.out)
    if args.json:
        _print_json({"files": paths, "ranking": result.ranking(), "skipped": result.skipped})
    else:
        print(result.to_markdown())
        print("wrote " + ", ".join(paths.values()))
    return 0


def _score(args: argparse.Namespace) -> int:
    from .base import BaseGenerativeModel
    from .density import BaseDensityEstimator
    from .metrics import mean_log_likelihood

    if args.out is not None:
        _check_output(args.out)
    model = _load_model(args.model)
    X = _load_array(args.data)
    if not isinstance(model, BaseDensityEstimator):
        raise ValueError(
            f"{type(model).__name__} has no tractable density, so it cannot score rows; "
            "fit --model mdn or gmm for exact log-likelihoods."
            if isinstance(model, BaseGenerativeModel)
            else f"{args.model!r} holds a {type(model).__name__}, not a density model: "
            "`ldelib score` scores rows with a model fitted by `ldelib fit --model mdn` "
            "or `gmm`."
        )
    model.verbose = 1  # a progress bar over the rows (on stderr)
    log_prob = model.score_samples(args.data, out=args.out)
    mean, se = mean_log_likelihood(log_prob)
    n_rows, n_features = X.shape
    if args.json:
        _print_json(
            {
                "model": args.model,
                "data": args.data,
                "class": type(model).__name__,
                "mean": mean,
                "standard_error": se,
                "unit": "nats/row",
                "nats_per_dim": mean / n_features,
                "n_rows": n_rows,
                "n_features": n_features,
                "out": args.out,
            }
        )
        return 0
    print(
        f"mean log-likelihood: {mean:.4f} ± {se:.4f} nats/row ({mean / n_features:.4f} nats/dim)"
    )
    if args.out:
        print(f"wrote {log_prob.shape[0]} log-likelihoods to {args.out}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    _check_output(args.out)
    model = _load_model(args.model)
    samples = model.sample(args.n, random_state=args.seed)
    path = _save_array(args.out, samples)
    print(f"wrote {args.n} samples of {samples.shape[1]} dims to {path}")
    return 0


def _info(args: argparse.Namespace) -> int:
    if args.json:
        _print_json(describe_model_file(args.model))
        return 0
    fitted, file = read_description(args.model)
    written_by = f"ldelib {file['ldelib_version']} (torch {file['torch_version']})"
    rows: list[tuple[str, str]] = [
        ("file", args.model),
        ("format", f"{file['format']} {file['format_version']}, written by {written_by}"),
        ("class", fitted.name),
    ]
    input_shape = fitted.attributes.get("input_shape_")
    if isinstance(input_shape, tuple):  # an encoder's inputs: D counts its latents
        rows.append(("latent dimensions (D)", format_value(n_features(fitted))))
        rows.append(("input shape", str(input_shape)))
    else:
        rows.append(("dimensions (D)", format_value(n_features(fitted))))
    rows.append(("parameters", ""))
    for name, value in fitted.params.items():
        shown = "not stored (code: passed to load)" if name in fitted.not_stored else repr(value)
        rows.append((f"  {name}", shown))
    summary = training_summary(fitted)
    if summary:
        rows.append(("training", ""))
        rows += [(f"  {item.label}", item.text()) for item in summary]
    width = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        print(f"{label:<{width}}{value}".rstrip())
    return 0


def _params(args: argparse.Namespace) -> int:
    from .models import MODELS

    cls = MODELS[args.model]
    docs = _parameter_docs(cls)
    defaults = cls().get_params()
    order = [name for name in inspect.signature(cls).parameters if name in defaults]
    rows = [(f"{name}={defaults[name]!r}", docs.get(name, "")) for name in order]
    width = max(len(left) for left, _ in rows) + 4
    print(f"{cls.__name__} parameters (ldelib fit --model {args.model} --param KEY=VALUE):")
    for left, text in rows:
        lines = textwrap.wrap(text, max(40, 100 - width)) or [""]
        print(f"  {left:<{width - 2}}{lines[0]}".rstrip())
        for line in lines[1:]:
            print(" " * width + line)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .persistence import convert

    convert(args.source, args.target)
    print(f"wrote {args.target}")
    return 0


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__
    from .datasets import TARGETS
    from .models import MODELS

    parser = argparse.ArgumentParser(
        prog="ldelib", description=__doc__.splitlines()[0].replace("``", "")
    )
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
    demo.set_defaults(run=_demo)

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
    fit.add_argument("--out", required=True, help="the model file to write")
    fit.set_defaults(run=_fit)

    params = sub.add_parser(
        "params", help="list a model's parameters, with their defaults, for `fit --param`"
    )
    params.add_argument("model", choices=list(MODELS), help="the model")
    params.set_defaults(run=_params)

    from .compare import MODELS as COMPARED

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
    compare.set_defaults(run=_compare)

    score = sub.add_parser("score", help="log-likelihood of the rows of a .npy array")
    score.add_argument("model", help="a model file written by `ldelib fit` (mdn or gmm)")
    score.add_argument("data", help="the rows to score: a .npy file of shape (n, D)")
    score.add_argument("--out", help="write per-row log-likelihoods to this .npy")
    score.add_argument("--json", action="store_true", help=json_help)
    score.set_defaults(run=_score)

    sample = sub.add_parser("sample", help="draw samples from a saved model")
    sample.add_argument("model", help="a model file written by `ldelib fit`")
    sample.add_argument("n", type=int, help="the number of samples to draw")
    sample.add_argument("--out", required=True, help="the .npy file to write (exactly this path)")
    sample.add_argument("--seed", type=int, help="random seed (default: the model's own stream)")
    sample.set_defaults(run=_sample)

    info = sub.add_parser(
        "info", help="describe a model file: class, parameters, dimension, training, versions"
    )
    info.add_argument("model", help="a model file (any ldelib class)")
    info.add_argument("--json", action="store_true", help=json_help)
    info.set_defaults(run=_info)

    convert = sub.add_parser(
        "convert", help="rewrite a model file of ldelib 0.1 (format 1) in the current format"
    )
    convert.add_argument("source", help="the old model file")
    convert.add_argument("target", help="where to write the converted file")
    convert.set_defaults(run=_convert)
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
            if error.filename2:  # a rename: the destination is the path the user gave
                message += f" -> {error.filename2!r}"
        message = " ".join(message.split()) or type(error).__name__
        if not isinstance(error, (*_INPUT_ERRORS, FloatingPointError, MemoryError)):
            message = f"{type(error).__name__}: {message} (rerun with --debug for the traceback)"
        print(f"ldelib {args.command}: error: {message}", file=sys.stderr)
        return 2 if isinstance(error, _INPUT_ERRORS) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
