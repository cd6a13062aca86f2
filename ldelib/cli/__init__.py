"""The ``ldelib`` command line: a demo, and fit / compare / score / sample / info on ``.npy`` files.

Every subcommand is a thin layer over the library API; ``main(argv)`` returns an exit
status so it can be tested without a subprocess.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ._parser import build_parser

__all__ = ["main"]


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
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print(f"ldelib {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        message = str(error)
        if isinstance(error, OSError) and error.strerror:  # without the "[Errno N]"
            message = error.strerror + (f": {error.filename!r}" if error.filename else "")
            if error.filename2:  # a rename: the destination is the path the user gave
                message += f" -> {error.filename2!r}"
        message = " ".join(message.split()) or type(error).__name__
        if not isinstance(error, (*_INPUT_ERRORS, FloatingPointError, MemoryError)):
            message = f"{type(error).__name__}: {message} (rerun with --debug for the traceback)"
        print(f"ldelib {args.command}: error: {message}", file=sys.stderr)
        return 2 if isinstance(error, _INPUT_ERRORS) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
