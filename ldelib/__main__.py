"""``python -m ldelib``: the command line, also under ``torchrun -m ldelib``."""

import sys

from .cli import main

sys.exit(main())
