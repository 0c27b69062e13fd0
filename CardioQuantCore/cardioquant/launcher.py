"""The `cardioquant` command's entry point. It imports the command line itself, so that Ctrl-C while the
libraries load (SimpleITK, VTK and torch take seconds) ends in one line, not a traceback or VTK's ImportError."""

from __future__ import annotations

import sys

from .errors import INTERRUPTED, interrupted

EXIT_INTERRUPTED = 3  # as the command line's own: a processing run that did not finish, nothing written


def main() -> int:
    try:
        from .cli import main as run_command_line

        return run_command_line()
    except (KeyboardInterrupt, ImportError) as exc:
        if not interrupted(exc):
            raise
        print(f"cardioquant: {INTERRUPTED}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
