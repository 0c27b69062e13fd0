"""The `cardioquant` command's entry point. It imports the command line itself, so that Ctrl-C while the
libraries load (SimpleITK, VTK and torch take seconds) ends in one line, not a traceback or VTK's ImportError."""

from __future__ import annotations

import atexit
import gc
import sys

from .errors import INTERRUPTED, interrupted

EXIT_INTERRUPTED = 3  # as the command line's own: a processing run that did not finish, nothing written


def leave_objects_to_the_system_at_exit() -> None:
    """Skip Python's last garbage collection when this process ends: it walks every object the process made, and
    with PyTorch, VTK and Matplotlib loaded that took 0.7-2 s on the 2-core benchmark machine, longer than a scar
    analysis. Objects frozen into the permanent generation are not walked; the operating system frees the process's
    memory at once. Output files are written and closed before then, and exit handlers still run (this one is
    registered before PyTorch's and VTK's, so it runs after them); only at exit, so a process that calls main() and
    goes on (a test) keeps its collector."""
    atexit.register(gc.freeze)


def main() -> int:
    leave_objects_to_the_system_at_exit()
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
