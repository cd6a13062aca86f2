"""The subcommands that work on files: fit, compare, score, sample, info, params, convert.

Each is a thin layer over the library's API; its messages speak of the command line's
options and files.
"""

from __future__ import annotations

import argparse
import inspect
import os
import textwrap

import numpy as np

from ..persistence.describe import (
    Fitted,
    describe_model_file,
    format_value,
    n_features,
    read_description,
    training_summary,
)
from ._io import (
    check_output,
    check_param_names,
    load_array,
    load_labels,
    load_model,
    parameter_docs,
    parse_params,
    parse_value,
    print_json,
    save_array,
)

__all__ = ["compare", "convert", "fit", "info", "params", "sample", "score"]


def fit(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    check_param_names(args.model, params)
    if args.seed is not None:
        if "random_state" in params:
            raise ValueError("Give the seed once: --seed or --param random_state, not both.")
        params["random_state"] = args.seed
    check_output(args.out)
    X = load_array(args.data)
    from .. import distributed
    from ..models import make_model

    labels = None
    if args.labels is not None:
        labels = load_labels(args.labels, len(X))
        if "conditional" not in make_model(args.model).get_params():
            raise ValueError(f"--model {args.model} cannot condition on --labels; use mdn or gmm.")
        params["conditional"] = True
    model = make_model(args.model, **params)
    # A progress bar while fitting; the saved model keeps the user's own verbosity.
    saved_verbose = model.verbose
    model.set_params(verbose=max(1, int(saved_verbose)))
    # The path, not the array: models read a file in chunks (a memmap, never whole); a
    # conditional fit holds the rows in memory beside their labels.
    model.fit(args.data) if labels is None else model.fit(np.asarray(X), labels)
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


def compare(args: argparse.Namespace) -> int:
    from ..compare import compare

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
        print_json({"files": paths, "ranking": result.ranking(), "skipped": result.skipped})
    else:
        print(result.to_markdown())
        print("wrote " + ", ".join(paths.values()))
    return 0


def score(args: argparse.Namespace) -> int:
    from ..base import BaseGenerativeModel
    from ..density import BaseDensityEstimator
    from ..metrics import mean_log_likelihood

    if args.out is not None:
        check_output(args.out)
    model = load_model(args.model)
    X = load_array(args.data)
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
    _check_labels(model, args.labels is not None)
    labels = None if args.labels is None else load_labels(args.labels, len(X))
    log_prob = model.score_samples(args.data, labels, out=args.out)
    mean, se = mean_log_likelihood(log_prob)
    n_rows, n_features = X.shape
    if args.json:
        print_json(
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


def sample(args: argparse.Namespace) -> int:
    check_output(args.out)
    model = load_model(args.model)
    _check_labels(model, args.labels is not None or args.label is not None)
    condition = {}
    if args.labels is not None:
        condition["y"] = load_labels(args.labels, None)
    elif args.label is not None:
        condition["y"] = parse_value(args.label)
    samples = model.sample(args.n, random_state=args.seed, **condition)
    path = save_array(args.out, samples)
    print(f"wrote {args.n} samples of {samples.shape[1]} dims to {path}")
    return 0


def _check_labels(model: object, given: bool) -> None:
    """Ask for --labels where the model was fitted with them, and refuse them elsewhere."""
    fitted_with = hasattr(model, "classes_") or hasattr(model, "context_mean_")
    if fitted_with and not given:
        raise ValueError(
            f"This {type(model).__name__} was fitted with --labels: give the labels (or "
            "context) to condition on, --labels FILE.npy (sample also takes --label VALUE)."
        )
    if given and not fitted_with:
        raise ValueError(
            f"This {type(model).__name__} was fitted without --labels, so it takes none."
        )


def info(args: argparse.Namespace) -> int:
    if args.json:
        print_json(describe_model_file(args.model))
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


def params(args: argparse.Namespace) -> int:
    from ..models import MODELS

    cls = MODELS[args.model]
    docs = parameter_docs(cls)
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


def convert(args: argparse.Namespace) -> int:
    from ..persistence import convert

    convert(args.source, args.target)
    print(f"wrote {args.target}")
    return 0
