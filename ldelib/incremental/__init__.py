"""Incremental learning of latent variables: autoencoders with ordered latents.

:class:`IncrementalAutoencoder` trains a user's torch encoder and decoder with the
schedule of Yoo et al. (2019): training starts with only the first latent dimension
reaching the decoder, and one more dimension is switched on at a steady pace until all
are active. Earlier dimensions thus learn the most important features, much as
principal components are ordered by the variance they explain.
"""

from .autoencoder import IncrementalAutoencoder
from .schedule import active_dims

__all__ = ["IncrementalAutoencoder", "active_dims"]
