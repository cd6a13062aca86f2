"""Saving and loading an incremental autoencoder: weights in the file, modules from the user."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from typing_extensions import Self  # typing.Self is Python 3.11+

from ..persistence import LoadError, Persistent

__all__ = ["AutoencoderFiles"]

LossFunction = Callable[[Tensor, Tensor], Tensor]


class AutoencoderFiles(Persistent):
    """What an :class:`~ldelib.IncrementalAutoencoder` file holds, and how it loads."""

    _saved_attributes: ClassVar[tuple[str, ...]] = (
        "encoder_",
        "decoder_",
        "device_",
        "input_shape_",
        "loss_curve_",
        "validation_scores_",
        "best_validation_score_",
        "best_epoch_",
        "active_dims_curve_",
        "n_warmup_epochs_",
        "n_iter_",
        "n_batches_",
    )
    # The modules' classes are code: the file holds their weights, and load takes
    # freshly built modules of the trained architecture.
    _unsaved_params: ClassVar[tuple[str, ...]] = ("encoder", "decoder")

    input_shape_: tuple[int, ...]

    def _file_params(self) -> dict[str, Any]:
        params = super()._file_params()
        if callable(params["loss"]):
            loss = params["loss"]
            params["loss"] = "custom:" + getattr(loss, "__qualname__", repr(loss))
        params["betas"] = [float(b) for b in params["betas"]]
        return params

    @classmethod
    def _from_file_params(
        cls,
        params: dict[str, Any],
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        loss: Literal["mse"] | LossFunction | None = None,
        **extras: Any,
    ) -> Self:
        for name, module in (("encoder", encoder), ("decoder", decoder)):
            if not isinstance(module, nn.Module):
                raise LoadError(
                    f"Loading an {cls.__name__} needs {name}=, an nn.Module of the trained "
                    f"architecture; got {type(module).__name__}."
                )
        params["betas"] = tuple(params["betas"])
        saved_loss = params.pop("loss")
        if loss is None and str(saved_loss).startswith("custom:"):
            warnings.warn(
                f"The model was trained with the custom loss {saved_loss[7:]!r}, which cannot "
                "be stored; the loaded model uses loss='mse' for any later fit. Pass loss= "
                "to load to keep it.",
                UserWarning,
                stacklevel=5,
            )
            loss = "mse"
        return super()._from_file_params(
            params, encoder=encoder, decoder=decoder, loss=loss or saved_loss, **extras
        )

    def _load_module(self, name: str, state: dict[str, Tensor]) -> nn.Module:
        role = name.rstrip("_")
        module = copy.deepcopy(getattr(self, role))
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise LoadError(
                f"The {role} passed does not match the saved weights; pass a freshly "
                f"constructed module of the trained architecture. {e}"
            ) from e
        return module

    def _restored(self) -> None:
        self._check_params()  # type: ignore[attr-defined]
        self.input_shape_ = tuple(int(s) for s in self.input_shape_)

    @classmethod
    def load(  # type: ignore[override]
        cls,
        path: Any,
        encoder: nn.Module,
        decoder: nn.Module,
        map_location: str | torch.device | None = None,
        loss: Literal["mse"] | LossFunction | None = None,
    ) -> Self:
        """Load a model saved with :meth:`save` into modules of the same architecture.

        The file stores weights, not code, so it cannot rebuild the user's module
        classes: pass freshly constructed ``encoder`` and ``decoder`` modules of the
        architecture that was trained. They become the new model's ``encoder`` and
        ``decoder`` parameters unchanged; deep copies of them, holding the saved
        weights, become ``encoder_`` and ``decoder_``. Nothing in the file is run.

        Parameters
        ----------
        path : str, PathLike or binary file object
        encoder, decoder : nn.Module
            Modules of the trained architecture (their weights are not used).
        map_location : str or torch.device, optional
            Device for the modules; by default the device saved from, or the CPU if that
            is not available here.
        loss : "mse" or callable, optional
            The loss for any later ``fit``; by default the saved one. A custom loss
            cannot be stored: without this argument, such a model loads with "mse" and a
            warning.

        Raises
        ------
        ValueError
            If the file is not an IncrementalAutoencoder file, or the modules do not
            match the saved weights (names or shapes).
        """
        for name, module in (("encoder", encoder), ("decoder", decoder)):
            if not isinstance(module, nn.Module):
                raise TypeError(
                    f"{name} must be an nn.Module of the trained architecture, got "
                    f"{type(module).__name__}."
                )
        return super().load(path, map_location, encoder=encoder, decoder=decoder, loss=loss)
