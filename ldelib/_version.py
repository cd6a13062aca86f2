"""The version of ldelib, in a module of its own.

Modules inside the package import it from here, never from the package's ``__init__``
(which imports them), and the build reads it from here.
"""

__version__ = "0.1.0"
