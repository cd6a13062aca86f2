"""Suite ``conditional``: conditional densities p(x | y), against the truth and on MNIST.

*Target.* ``ConditionalWarpedTarget`` (4 classes of 3 clusters, a 2-D context that moves,
reweighs and skews them, then a fixed warp) at D = 4 and 8, in two tasks: ``labels``
(classes drawn, context 0: p(x | y)) and ``context`` (class 0, context drawn:
p(x | c)). The exact density is the truth; the conditional GMM, the conditional LDE and
zuko's conditional MAF and NSF get the same rows and wall-time budget. Each model's
"gap closed" is ``(ll - ll_GMM) / (ll_truth - ll_GMM)``.

*MNIST.* The reference incremental autoencoder (as in ``latents``) at D = 16 and 32; the
conditional GMM and LDE fit p(z | digit) to the training images' latents and score the
test images' given their digits. Their generative classifiers (p(y) p(z | y)) are
compared with a LogisticRegression judge fitted to the same latents. Samples drawn for
each digit are decoded and judged by a held-out classifier: an MLP on the pixels of
images that neither the autoencoder nor the density saw.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ldelib import GMM, CausalConvMDN
from ldelib.datasets import ConditionalWarpedTarget
from ldelib.metrics import mean_log_likelihood
from ldelib.peers import ZukoFlowPeer, zuko_available

from ._data import autoencoder, images
from ._report import Report
from ._suite import Suite

#: The compared models, in table order: how each is made for a budget and a seed.
MODELS = {
    "GMM (conditional)": lambda budget, seed: GMM(
        "auto", reg_covar="auto", conditional=True, max_time=budget, random_state=seed
    ),
    "LDE (conditional)": lambda budget, seed: CausalConvMDN(
        conditional=True, max_time=budget, random_state=seed
    ),
    "zuko MAF (context)": lambda budget, seed: ZukoFlowPeer(
        "maf", conditional=True, max_time=budget, random_state=seed
    ),
    "zuko NSF (context)": lambda budget, seed: ZukoFlowPeer(
        "nsf", conditional=True, max_time=budget, random_state=seed
    ),
}
LDE, GMM_ = "LDE (conditional)", "GMM (conditional)"
TASKS = ("labels", "context")


def run(
    out: Path,
    quick: bool,
    seeds: list[int] | None = None,
    budget_s: float | None = None,
    cache_dir: Path | None = None,
) -> Report:
    seeds = seeds or [0]
    budget = budget_s or (2.0 if quick else 60.0)
    dims, n_train, n_eval = ((4,), 800, 800) if quick else ((4, 8), 10_000, 5000)
    latent_dims = (8,) if quick else (16, 32)
    report = Report(
        "conditional",
        quick,
        {
            "target": "ConditionalWarpedTarget(n_features=D, seed=0): 4 classes x 3 clusters, "
            "2-D context",
            "tasks": {
                "labels": "classes uniform, context 0: p(x | y)",
                "context": "class 0, context N(0, I): p(x | c)",
            },
            "dims": list(dims),
            "n_train": n_train,
            "n_test": n_eval,
            "latent_dims": list(latent_dims),
            "seeds": seeds,
            "budget_s_per_model": budget,
        },
    )
    models = [m for m in MODELS if "zuko" not in m or zuko_available()]
    for d in dims:
        target = ConditionalWarpedTarget(n_features=d, seed=0)
        for task in TASKS:
            for seed in seeds:
                train = _draw(target, task, n_train, 2 * seed)
                test = _draw(target, task, n_eval, 2 * seed + 1)
                _target_rows(report, target, task, d, seed, train, test, models, budget)
    for d in latent_dims:
        for seed in seeds:
            _mnist_rows(report, d, seed, quick, budget, cache_dir, out)
    tabulate(report)
    return report


def _draw(target: ConditionalWarpedTarget, task: str, n: int, seed: int) -> tuple[Any, ...]:
    """Rows, the condition the models see, and the target's (y, context)."""
    if task == "labels":
        X, y, c = target.sample(n, seed, context=np.zeros((n, target.n_context)))
        return X, y, y, c
    X, y, c = target.sample(n, seed, y=np.zeros(n, dtype=np.int64))
    return X, c, y, c


def _target_rows(
    report: Report,
    target: ConditionalWarpedTarget,
    task: str,
    d: int,
    seed: int,
    train: tuple[Any, ...],
    test: tuple[Any, ...],
    models: list[str],
    budget: float,
) -> None:
    X, condition = train[0], train[1]
    X_test, condition_test, y_test, c_test = test
    truth = target.log_prob(X_test, y_test, c_test)
    ll, se = mean_log_likelihood(truth)
    base = {"task": task, "D": d, "seed": seed}
    report.add(**base, model="truth", ll_per_dim=ll / d, se_per_dim=se / d)
    scores: dict[str, np.ndarray] = {}
    for name in models:
        began = time.perf_counter()
        model = MODELS[name](budget, seed).fit(X, condition)
        fit_s = time.perf_counter() - began
        scores[name] = model.score_samples(X_test, condition_test)
        ll, se = mean_log_likelihood(scores[name])
        report.add(**base, model=name, ll_per_dim=ll / d, se_per_dim=se / d, fit_s=fit_s)
    _leads(report, base, scores, d)


def _leads(report: Report, base: dict[str, Any], scores: dict[str, np.ndarray], d: int) -> None:
    """The LDE's paired lead over each other model, on the same test rows, per dim."""
    if LDE not in scores:
        return
    for row in report.rows:
        if all(row.get(k) == v for k, v in base.items()) and row["model"] in scores:
            if row["model"] == LDE:
                continue
            lead, lead_se = mean_log_likelihood(scores[LDE] - scores[row["model"]])
            row["lde_lead_per_dim"], row["lead_se_per_dim"] = lead / d, lead_se / d


def _mnist_rows(
    report: Report,
    d: int,
    seed: int,
    quick: bool,
    budget: float,
    cache_dir: Path | None,
    out: Path,
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    n_train, n_judge, n_test = (2000, 2000, 1000) if quick else (10_000, 10_000, 5000)
    data = images("mnist", n_train, n_judge, n_test, seed=seed)
    ae = autoencoder(
        data,
        key=f"mnist-n{n_train}",
        latent_dim=d,
        incremental=True,
        epochs=3 if quick else 12,
        seed=seed,
        cache_dir=cache_dir,
        width=16,
    ).model
    Z, Z_test = ae.encode(data.train), ae.encode(data.test)
    y, y_test = data.train_label, data.test_label
    # The judge of decoded samples: pixels of images held out from everything else.
    judge = MLPClassifier((256,), max_iter=60 if quick else 200, random_state=seed)
    with warnings.catch_warnings():  # quick runs stop it early, on purpose
        warnings.simplefilter("ignore", ConvergenceWarning)
        judge.fit(data.valid.reshape(len(data.valid), -1), data.valid_label)
    judge_accuracy = float(judge.score(data.test.reshape(len(data.test), -1), y_test))
    linear = LogisticRegression(max_iter=2000).fit(Z, y)
    base = {"task": "mnist-iae", "D": d, "seed": seed}
    report.add(
        **base,
        model="LogisticRegression (judge)",
        accuracy=float(linear.score(Z_test, y_test)),
        pixel_judge_accuracy=judge_accuracy,
    )
    scores: dict[str, np.ndarray] = {}
    for name in (GMM_, LDE):
        began = time.perf_counter()
        model = MODELS[name](budget, seed).fit(Z, y)
        fit_s = time.perf_counter() - began
        scores[name] = model.score_samples(Z_test, y_test)
        ll, se = mean_log_likelihood(scores[name])
        per_class, drawn = _judged_samples(ae, model, judge, 100 if quick else 500, seed)
        report.add(
            **base,
            model=name,
            ll=ll,
            se=se,
            ll_per_dim=ll / d,
            se_per_dim=se / d,
            fit_s=fit_s,
            accuracy=float((model.predict(Z_test) == y_test).mean()),
            judged_as_requested=float(np.mean(per_class)),
            judged_per_class=[round(float(v), 3) for v in per_class],
        )
        if name == LDE and d == min((8,) if quick else (16, 32)) and seed == 0:
            _figure(report, drawn, out, d)
    _leads(report, base, scores, d)


def _judged_samples(
    ae: Any, model: Any, judge: Any, per_class: int, seed: int
) -> tuple[list[float], np.ndarray]:
    """The share of each digit's decoded samples that the judge calls that digit, and
    the first eight images of each digit."""
    shares, grid = [], []
    for digit in range(10):
        latents = model.sample(per_class, y=digit, random_state=seed + 17 * digit)
        pictures = ae.decode(latents).clip(0, 1)
        guess = judge.predict(pictures.reshape(per_class, -1))
        shares.append(float((guess == digit).mean()))
        grid.append(pictures[:8, 0])
    return shares, np.stack(grid)


def _figure(report: Report, drawn: np.ndarray, out: Path, d: int) -> None:
    plt = report.pyplot()
    if plt is None:
        return
    rows, cols = drawn.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9))
    for r in range(rows):
        for c in range(cols):
            axes[r, c].imshow(drawn[r, c], cmap="gray", vmin=0, vmax=1)
            axes[r, c].axis("off")
    fig.suptitle(f"Samples of the conditional LDE given each digit (MNIST IAE, D = {d})")
    report.save_figure(fig, out, "conditional-digits")


def tabulate(report: Report) -> None:
    for row in report.rows:  # the share of the GMM's gap to the truth that each closes
        group = [
            r
            for r in report.rows
            if (r["task"], r["D"], r["seed"]) == (row["task"], row["D"], row["seed"])
        ]
        lls = {r["model"]: r.get("ll_per_dim") for r in group}
        truth, gmm = lls.get("truth"), lls.get(GMM_)
        if truth is not None and gmm is not None and truth > gmm and row.get("ll_per_dim"):
            row["gap_closed"] = (row["ll_per_dim"] - gmm) / (truth - gmm)
    report.table(
        "Conditional target: test log p(x | y), nats/dim (± standard error), the LDE's "
        "paired lead over each model, and the share of the GMM's gap to the truth closed",
        [
            "task",
            "D",
            "seed",
            "model",
            "ll_per_dim",
            "se_per_dim",
            "lde_lead_per_dim",
            "lead_se_per_dim",
            "gap_closed",
            "fit_s",
        ],
        lambda r: r["task"] in TASKS,
    )
    report.table(
        "MNIST, incremental autoencoder: test log p(z | digit) (nats per latent vector), "
        "generative-classifier accuracy against the LogisticRegression judge on the same "
        "latents, and the share of decoded samples of each digit that a held-out pixel "
        "classifier calls that digit",
        [
            "D",
            "seed",
            "model",
            "ll",
            "se",
            "lde_lead_per_dim",
            "lead_se_per_dim",
            "accuracy",
            "judged_as_requested",
            "judged_per_class",
            "pixel_judge_accuracy",
            "fit_s",
        ],
        lambda r: r["task"] == "mnist-iae",
    )
    report.notes += [
        "gap_closed = (ll - ll_GMM) / (ll_truth - ll_GMM): 1 is the truth, 0 the GMM.",
        (
            "Every model gets the same rows and wall-time budget (the LDE's includes its "
            "anchor mixture's search and EM); zuko's flows take labels as a one-hot context."
        ),
        (
            "judged_per_class: digits 0 to 9. The pixel judge is an MLP (one hidden layer of "
            "256) fitted to images that neither the autoencoder nor the densities saw; "
            "pixel_judge_accuracy is its accuracy on the test images."
        ),
    ]


#: How ``python -m benchmarks`` runs this suite.
SUITE = Suite(
    "conditional",
    run,
    "conditional densities p(x | y): a target with an exact density, and MNIST digits",
    uses_autoencoders=True,
)
