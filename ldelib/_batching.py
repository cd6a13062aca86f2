"""Running a user's callable (a torch module, a bound method of one, or any function) in
batches of rows, with the module's device, dtype and train/eval modes respected."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ._arrays import check_has_values
from ._constraints import Callable as IsCallable
from ._constraints import Constraint, Integral
from ._validation import validate_params

ArrayLike = Any

__all__ = ["Codec", "apply_batched", "check_rows_of", "placement"]


def _module_behind(fn: Callable[..., Any]) -> nn.Module | None:
    """The torch module ``fn`` runs: the module itself, or the owner of a bound method."""
    if isinstance(fn, nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    if inspect.ismethod(fn) and isinstance(owner, nn.Module):
        return owner
    return None


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, then give each its own previous mode back."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def placement(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of a module's first floating parameter or buffer."""
    tensors = list(itertools.chain(module.parameters(), module.buffers()))
    for t in tensors:
        if t.is_floating_point():
            return t.device, t.dtype
    device = tensors[0].device if tensors else torch.device("cpu")
    return device, torch.get_default_dtype()


def _module_input(batch: Any, device: torch.device, dtype: torch.dtype, role: str) -> Tensor:
    if not isinstance(batch, Tensor):
        array = np.asarray(batch)
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"The {role} is a torch module, so its input must be numeric; got an array "
                f"of dtype {array.dtype}."
            )
        # A writeable C-ordered array (copied only if needed): torch warns on others.
        batch = torch.from_numpy(np.require(array, requirements=["C", "W"]))
    if batch.is_complex():
        raise TypeError(f"The {role} input must be real-valued, got dtype {batch.dtype}.")
    return batch.detach().to(device=device, dtype=dtype)


def _to_numpy(out: Any, role: str, where: str) -> np.ndarray:
    if isinstance(out, (tuple, list)) and any(isinstance(o, Tensor) for o in out):
        raise TypeError(
            f"The {role} returned a {type(out).__name__} of {len(out)} items {where}; it must "
            "return a single array. For a VAE, wrap it to return the mean, e.g. "
            "encoder=lambda x: vae.encode(x)[0]."
        )
    if isinstance(out, Tensor):
        if out.is_complex():
            raise TypeError(f"The {role} returned a complex tensor {where}.")
        return out.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(out)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"The {role} returned {type(out).__name__} of dtype {array.dtype} {where}; it "
            "must return a real-valued numpy array or torch tensor."
        )
    return array.astype(np.float64, copy=False)


def apply_batched(
    fn: Callable[[Any], Any],
    X: Any,
    *,
    batch_size: int,
    role: str,
    flat: bool,
) -> np.ndarray:
    """Run ``fn`` over ``X`` in batches of rows and concatenate the results.

    A torch module (or a bound method of one) gets tensors on its device and in its
    dtype, runs in eval mode under ``torch.no_grad()``, and has each submodule's
    train/eval mode restored afterwards; any other callable gets numpy arrays. Results
    come back as one float64 numpy array. With ``flat=True`` every output must have
    shape ``(batch, D)`` with one ``D`` for all batches.
    """
    module = _module_behind(fn)
    if module is None:
        if isinstance(X, Tensor):
            X = X.detach().cpu().numpy()
        device, dtype = torch.device("cpu"), torch.float64
    else:
        device, dtype = placement(module)
    n = len(X)
    outputs: list[np.ndarray] = []
    with _eval_mode(module) if module is not None else nullcontext(), torch.no_grad():
        for index, start in enumerate(range(0, n, batch_size)):
            stop = min(start + batch_size, n)
            batch = X[start:stop]
            if module is not None:
                batch = _module_input(batch, device, dtype, role)
            where = f"for batch {index} (rows {start}:{stop} of {n})"
            try:
                out = fn(batch)
            except Exception as error:
                raise RuntimeError(
                    f"The {role} failed {where}, input shape {tuple(batch.shape)}: "
                    f"{type(error).__name__}: {error}"
                ) from error
            out = _to_numpy(out, role, where)
            if flat and out.ndim != 2:
                raise ValueError(
                    f"The {role} returned shape {out.shape} {where}; it must return a 2-D "
                    f"array of shape (batch, D), here ({stop - start}, D). Flatten its "
                    "output, e.g. encoder=lambda x: net(x).flatten(1)."
                )
            if out.ndim == 0 or len(out) != stop - start:
                raise ValueError(
                    f"The {role} returned shape {out.shape} {where}; its first axis must "
                    f"have one entry per input row ({stop - start})."
                )
            if flat and outputs and out.shape[1] != outputs[0].shape[1]:
                raise ValueError(
                    f"The {role} returned {out.shape[1]} latent dimensions {where} but "
                    f"{outputs[0].shape[1]} for batch 0; every batch must give the same D."
                )
            if flat and not np.isfinite(out).all():
                raise ValueError(
                    f"The {role} returned NaN or infinite values {where}; a density needs "
                    "finite latents."
                )
            outputs.append(out)
    return np.concatenate(outputs)


def check_rows_of(X: Any, what: str) -> Any:
    """``X`` as something with rows: a tensor stays a tensor, the rest becomes numpy."""
    check_has_values(X, what)
    if not isinstance(X, Tensor):
        X = np.asarray(X)
    if X.ndim == 0 or len(X) == 0:
        raise ValueError(
            f"{what} must have at least one row (shape (n_samples, ...)), got shape "
            f"{tuple(X.shape)}."
        )
    return X


class Codec:
    """Encoding and decoding through the ``encoder``/``decoder`` callables of an estimator.

    The host class has ``encoder``, ``decoder`` (callables or ``None``) and
    ``batch_size`` parameters, and ``latent_dim_`` once fitted.
    """

    encoder: Callable[[Any], Any] | None
    decoder: Callable[[Any], Any] | None
    batch_size: int

    _codec_constraints: ClassVar[dict[str, list[Constraint | None]]] = {
        "encoder": [None, IsCallable()],
        "decoder": [None, IsCallable()],
        "batch_size": [Integral(1, None)],
    }

    def _codec_batch_size(self) -> int:
        """Check the callables and return the batch size, as a Python int."""
        return int(validate_params(self, self._codec_constraints)["batch_size"])

    def encode(self, X: ArrayLike) -> np.ndarray:
        """Encode inputs to latents, in batches of ``batch_size`` rows.

        Needs no fitting: it only runs ``encoder``.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            Inputs in whatever shape the encoder takes; latents of shape
            (n_samples, D) when there is no encoder.

        Returns
        -------
        Z : ndarray of shape (n_samples, D)
        """
        batch_size = self._codec_batch_size()
        X = check_rows_of(X, "X")
        if self.encoder is None:
            Z = X.detach().cpu().numpy() if isinstance(X, Tensor) else X
            if Z.ndim != 2:
                raise ValueError(
                    f"Without an encoder the inputs must be latents of shape (n_samples, D), "
                    f"got shape {tuple(Z.shape)}. Pass encoder=... to encode other inputs."
                )
            if Z.dtype.kind not in "biuf":
                raise TypeError(f"Latents must be real numbers, got an array of dtype {Z.dtype}.")
            return np.array(Z, dtype=np.float64)
        return apply_batched(self.encoder, X, batch_size=batch_size, role="encoder", flat=True)

    def encode_tensor(self, X: Tensor) -> Tensor:
        """Encode a tensor in one call, keeping the graph: latents of shape (n, D).

        A torch encoder runs in eval mode but with gradients, on its own device and
        dtype, so gradients flow from the latents back to ``X`` and to the encoder's
        weights; any other encoder runs on numpy (no gradient to ``X``). The latents come
        back on ``X``'s device.
        """
        self._codec_batch_size()
        X = check_rows_of(X, "X")
        if self.encoder is None:
            Z = X
        elif (module := _module_behind(self.encoder)) is None:
            Z = torch.as_tensor(self.encode(X), device=X.device)
        else:
            device, dtype = placement(module)
            with _eval_mode(module):
                try:
                    Z = self.encoder(X.to(device=device, dtype=dtype))
                except Exception as error:
                    raise RuntimeError(
                        f"The encoder failed on input shape {tuple(X.shape)}: "
                        f"{type(error).__name__}: {error}"
                    ) from error
            if not isinstance(Z, Tensor):
                raise TypeError(
                    f"The encoder is a torch module but returned {type(Z).__name__}; it "
                    "must return one tensor of shape (batch, D)."
                )
            Z = Z.to(X.device)
        if Z.ndim != 2 or len(Z) != len(X):
            raise ValueError(
                f"Latents must have shape (n_samples, D) = ({len(X)}, D), got "
                f"{tuple(Z.shape)}."
                + ("" if self.encoder is not None else " Pass encoder=... to encode inputs.")
            )
        if Z.is_complex() or not (Z.is_floating_point() or Z.dtype == torch.int64):
            raise TypeError(f"Latents must be real numbers, got a tensor of dtype {Z.dtype}.")
        return Z

    def decode(self, Z: ArrayLike) -> np.ndarray:
        """Decode latents to data, in batches of ``batch_size`` rows.

        Parameters
        ----------
        Z : array-like or Tensor of shape (n_samples, D)

        Returns
        -------
        X : ndarray of shape (n_samples, ...)
            The decoder's output, as float64.

        Raises
        ------
        ValueError
            If there is no decoder, or ``Z`` is not 2-D (or, once fitted, does not have
            ``latent_dim_`` columns).
        """
        batch_size = self._codec_batch_size()
        decoder = self._require_decoder("decode latents")
        Z = check_rows_of(Z, "Z")
        if Z.ndim != 2:
            raise ValueError(f"Latents must have shape (n_samples, D), got {tuple(Z.shape)}.")
        expected = getattr(self, "latent_dim_", Z.shape[1])
        if Z.shape[1] != expected:
            raise ValueError(
                f"Latents have {Z.shape[1]} dimensions, but the density was fitted on {expected}."
            )
        return apply_batched(decoder, Z, batch_size=batch_size, role="decoder", flat=False)

    def reconstruct(self, X: ArrayLike) -> np.ndarray:
        """Encode then decode: ``decode(encode(X))``, shape like the decoder's output."""
        self._require_decoder("reconstruct inputs")
        return self.decode(self.encode(X))

    def _require_decoder(self, what: str) -> Callable[[Any], Any]:
        """The decoder; a ValueError saying that ``what`` needs one if there is none."""
        if self.decoder is None:
            raise ValueError(
                f"Cannot {what}: this LatentDensityEstimator has no decoder. Pass "
                "decoder=... when creating it, or use decode=False to get latents."
            )
        return self.decoder
