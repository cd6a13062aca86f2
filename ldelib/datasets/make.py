"""The synthetic targets by name: :func:`make_target`."""

from __future__ import annotations

from typing import Any

from ._checks import count
from .targets import DIMENSIONAL, PLANAR, Target
from .warped import WARPED

__all__ = ["TARGETS", "make_target"]

#: The names :func:`make_target` accepts.
TARGETS: tuple[str, ...] = (
    "ring",
    "moons",
    "spiral",
    "checkerboard",
    "banana",
    "sine-chain",
    "gmm",
    "warped",
    "warped-heavy",
)


def make_target(name: str, n_features: int | None = None, **kwargs: Any) -> Target:
    """Build a synthetic target with an exact log-density.

    Parameters
    ----------
    name : str
        One of :data:`TARGETS`:

        * ``"ring"``: 8 equal Gaussians on a circle of radius 2, std 0.2
          (kwargs ``n_components``, ``radius``, ``std``).
        * ``"moons"``: 100 Gaussians of std 0.1 along the two arcs of
          ``sklearn.datasets.make_moons`` (kwargs ``n_components``, ``std``).
        * ``"spiral"``: 100 Gaussians of std 0.1 evenly spaced along 1.5 turns of a spiral
          of radius 0.3 to 2 (kwargs ``n_components``, ``turns``, ``std``).
        * ``"checkerboard"``: uniform on the 8 black squares of a 4x4 board on
          ``[-2, 2]^2``; ``log_prob`` is ``-inf`` off the support.
        * ``"banana"``: ``z0 ~ N(0, 1)``, ``z1 | z0 ~ N(0.5 z0^2 - 1, 0.5^2)``
          (kwargs ``curvature``, ``noise``).
        * ``"sine-chain"``: any ``D >= 2`` (default 16). ``z0 ~ N(0, 1)`` and
          ``z_j | z_{j-1} ~ N(sin(2 z_{j-1}) + 0.3 z_{j-1}, 0.3^2)``; smooth, strongly
          non-Gaussian, not a finite mixture (kwargs ``amplitude``, ``frequency``,
          ``slope``, ``noise``).
        * ``"gmm"``: ``D``-dimensional (default 8) random mixture of well-separated
          full-covariance Gaussians (kwargs ``n_components=5``, ``seed=0``).
        * ``"warped"``: any ``D >= 2`` (default 8). A random mixture of 8 full-covariance
          Gaussians pushed through ``n_layers=2`` layers of rotation, elementwise
          sinh-arcsinh (skew and tail weight) and additive coupling (a ``tanh`` shear),
          then a last rotation: a :class:`WarpedMixtureTarget` whose exact density is
          the change of variables (kwargs ``n_components=8``, ``n_layers=2``,
          ``seed=0``, ``dof=None``).
        * ``"warped-heavy"``: the same with Student-t clusters of ``dof=3`` degrees of
          freedom (kwargs as ``"warped"``).
    n_features : int, optional
        Dimension; only ``"sine-chain"``, ``"gmm"`` and the warped targets accept values
        other than 2.
    **kwargs
        Target-specific parameters listed above.

    Returns
    -------
    Target

    Examples
    --------
    >>> t = make_target("sine-chain", n_features=4)
    >>> t.sample(3, random_state=0).shape
    (3, 4)
    """
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")
    dim_args: tuple[int, ...]
    if name in PLANAR:
        if n_features not in (None, 2):
            raise ValueError(f"target {name!r} is 2-D only; got n_features={n_features}")
        build, dim_args = PLANAR[name], ()
    else:
        build, default, min_dim = {**DIMENSIONAL, **WARPED}[name]
        dim = default if n_features is None else n_features
        dim_args = (count(f"n_features of target {name!r}", dim, min_dim),)
    try:
        return build(*dim_args, **kwargs)
    except TypeError as exc:
        raise ValueError(f"bad keyword argument for target {name!r}: {exc}") from None
