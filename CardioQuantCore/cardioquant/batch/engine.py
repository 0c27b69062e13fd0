"""The work of one study and analysis on a Dask worker.

Each worker process keeps one engine: a child Python process that runs the single-study command line again and
again, so networks are loaded once per worker (models.runtime caches them) and reused. The engine is what makes
a study fail alone: past its time limit it is killed (with anything it started) and replaced; a crash inside
compiled code (VTK, vmtk, ITK) ends only the engine, and the study is reported as crashed. Results are written
to a staging folder and swapped in as a whole folder (OUTROOT/<study>/<analysis>), so OUTROOT never holds half
a result; a result folder being replaced is kept beside it as <analysis>.previous-<time>.

Protocol: one JSON line in (the command line's arguments), one JSON line out ([exit code, message]).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from ..processes import end_process_tree, own_group

_ENGINE = None  # this worker process's engine


class Engine:
    def __init__(self, log_path: Path | None = None):
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 (kept open with the engine)
        self.process = subprocess.Popen([sys.executable, "-m", "cardioquant.batch.engine"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=log, **own_group())
        assert self.process.stdin is not None and self.process.stdout is not None  # both are pipes
        self.stdin, self.stdout = self.process.stdin, self.process.stdout

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, argv: list[str], timeout: float) -> tuple[int, str]:
        """(exit code, one line): the command line's own, 124 past `timeout`, or the engine's crash."""
        try:
            self.stdin.write((json.dumps(argv) + "\n").encode())
            self.stdin.flush()
        except BrokenPipeError:
            return self._crashed()
        ready, _, _ = select.select([self.stdout], [], [], timeout)
        if not ready:
            self.stop()
            return 124, f"timed out after {timeout:g} s (--timeout)"
        line = self.stdout.readline()
        if not line:
            return self._crashed()
        code, message = json.loads(line)
        return int(code), str(message)

    def _crashed(self) -> tuple[int, str]:
        code = self.process.wait()
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return 134, f"the analysis crashed ({how}): a fault in compiled code or the process was killed"

    def stop(self) -> None:
        """End the engine and everything it started (its own process group)."""
        end_process_tree(self.process, grace_s=0.0)


def engine(log_folder: str | None = None) -> Engine:
    global _ENGINE
    if _ENGINE is None or not _ENGINE.alive():
        log = Path(log_folder) / f"engine-{os.getpid()}.log" if log_folder else None
        _ENGINE = Engine(log)
    return _ENGINE


def run_job(job: dict) -> dict:
    """Run one study's analysis (a Dask task). `job`: study, analysis, argv (the analysis's arguments without
    -o), final (the result folder), staging (OUTROOT/.staging), timeout (s), logs (folder or None)."""
    started = time.perf_counter()
    staging = Path(job["staging"]) / f"{job['study']}-{job['analysis']}-{uuid.uuid4().hex[:8]}"
    argv = [job["analysis"], *job["argv"], "-o", str(staging), "--quiet"]
    code, message = engine(job.get("logs")).run(argv, float(job["timeout"]))
    outcome = {"study": job["study"], "analysis": job["analysis"], "exit_code": code, "pid": os.getpid(),
               "seconds": time.perf_counter() - started}
    if code == 0:
        swap_in(staging, Path(job["final"]))
        return {**outcome, "status": "done", "error": ""}
    shutil.rmtree(staging, ignore_errors=True)
    return {**outcome, "status": "failed", "error": message, "retry": code not in (0, 2)}


def swap_in(staging: Path, final: Path) -> None:
    """The staged result folder becomes `final` by renames only (atomic on one file system)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        final.rename(final.with_name(f"{final.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"))
    staging.rename(final)


def _serve() -> None:
    """The engine process: read a command line, run it, answer with [exit code, message]."""
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what the analyses print goes to the log, never into the protocol
    parent = os.getppid()

    def orphaned():  # the worker was killed: do not run on without it
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=orphaned, daemon=True).start()
    from ..cli import build_parser, run_parsed

    for line in sys.stdin:
        argv = json.loads(line)
        try:
            options = build_parser(argv[0]).parse_args(argv)
            code, message = run_parsed(options)
        except SystemExit:  # argparse: a bad option (the batch checked them, so this is a bug or a race)
            code, message = 2, f"bad options for {argv[0]}: {' '.join(argv[1:])}"
        protocol.write(json.dumps([code, message]) + "\n")
        protocol.flush()


if __name__ == "__main__":
    from ..launcher import leave_objects_to_the_system_at_exit

    leave_objects_to_the_system_at_exit()
    _serve()
