"""The ``ldelib`` command line: a demo, and fit / compare / score / sample / info on ``.npy`` files.

Every subcommand is a thin layer over the library API; ``main(argv)`` returns an exit
status so it can be tested without a subprocess.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from ._parser import build_parser

__all__ = ["explain", "main", "run_reported"]


#: Errors that mean the input was wrong (exit status 2); any other failed computation
#: exits with 1.
_INPUT_ERRORS = (ValueError, TypeError, OSError, KeyError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``).

    Every error ends here: one line on stderr and exit status 2 for bad input (a missing
    or foreign file, bad data, an unknown parameter), 1 for a computation that failed
    (a diverged fit, memory); ``--debug`` shows the traceback instead.
    """
    args = build_parser().parse_args(argv)
    return run_reported(lambda: int(args.run(args)), f"ldelib {args.command}", args.debug)


def run_reported(call: Callable[[], int], prog: str, debug: bool = False) -> int:
    """``call()``'s exit status; an error or an interrupt becomes one line on stderr,
    ``PROG: error: ...`` (see :func:`explain`), unless ``debug`` lets it raise."""
    try:
        return call()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if debug:
            raise
        message, status = explain(error)
        print(f"{prog}: error: {message}", file=sys.stderr)
        return status


def explain(error: Exception) -> tuple[str, int]:
    """An error as the command line reports it: one line, and the exit status (2 for bad
    input, 1 for a computation that failed). Unexpected errors name their type and point
    to ``--debug``."""
    message = str(error)
    if isinstance(error, OSError) and error.strerror:  # without the "[Errno N]"
        message = error.strerror + (f": {error.filename!r}" if error.filename else "")
        if error.filename2:  # a rename: the destination is the path the user gave
            message += f" -> {error.filename2!r}"
    message = " ".join(message.split()) or type(error).__name__
    if not isinstance(error, (*_INPUT_ERRORS, FloatingPointError, MemoryError)):
        message = f"{type(error).__name__}: {message} (rerun with --debug for the traceback)"
    return message, 2 if isinstance(error, _INPUT_ERRORS) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
