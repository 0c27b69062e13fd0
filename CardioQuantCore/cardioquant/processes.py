"""Child processes that can be ended with everything they started: the Slicer panels' background runs (PythonSlicer
is a launcher that starts the real Python) and the batch engines (which may start vmtk's or TotalSegmentator's)."""

from __future__ import annotations

import os
import signal
import subprocess


def own_group() -> dict:
    """Popen arguments that give the child a process group of its own."""
    if os.name == "posix":
        return {"start_new_session": True}
    return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}  # type: ignore[attr-defined]  # Windows only


def end_process_tree(process: subprocess.Popen, grace_s: float = 5.0) -> None:
    """End a child started with own_group() and every process in its group: politely, then by force."""
    if os.name == "posix":
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    else:
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
    process.wait()
