"""Saving and loading: one file format and one code path for every ldelib object.

A model file is a `safetensors <https://huggingface.co/docs/safetensors>`_ file: the
tensors (arrays and module weights) in its body, and a JSON configuration (class,
parameters, fitted attributes) in its metadata. Reading one parses a JSON header and
copies raw numbers, so loading never unpickles anything and never runs code, on any
torch version. The class to rebuild is looked up in an explicit registry of public
names (``"ldelib.GMM"``...), never imported from a path stored in the file.

A saveable class inherits :class:`Persistent`, is registered with :func:`register`, and
lists the fitted attributes it saves in ``_saved_attributes``; everything else (the
encoding of arrays, modules and nested objects, devices, validation, atomic writes) is
done here.
"""

from .files import FORMAT, FORMAT_VERSION, convert, read_model_file, write_model_file
from .objects import Persistent, load, save
from .registry import LoadError, register, registered

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LoadError",
    "Persistent",
    "convert",
    "load",
    "read_model_file",
    "register",
    "registered",
    "save",
    "write_model_file",
]
