"""Run a CardioQuant pipeline in a separate process so the GUI never freezes; progress and Cancel included.

The input volume is written to a temporary .nrrd, `python -m cardioquant.cli <module> ... --progress-format lines`
runs in Slicer's Python (PythonSlicer), and its `PROGRESS fraction message` lines drive the progress bar.
"""

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading

import qt
import slicer


class BackgroundRun:
    def __init__(self, module_key, input_volume_node, extra_args, on_progress, on_finished, device="auto"):
        self.module_key = module_key
        self.on_progress, self.on_finished = on_progress, on_finished
        self.workdir = tempfile.mkdtemp(prefix=f"cardioquant-{module_key}-")
        self.input_path = os.path.join(self.workdir, "input.nrrd")
        self.output_dir = os.path.join(self.workdir, "out")
        slicer.util.exportNode(input_volume_node, self.input_path)
        command = [self._python(), "-m", "cardioquant.cli", module_key, self.input_path, "-o", self.output_dir,
                   "--device", device, "--progress-format", "lines"] + list(extra_args)
        # launchConsoleProcess merges stderr into stdout; a reader thread keeps the GUI thread from blocking.
        self.process = slicer.util.launchConsoleProcess(command, useStartupEnvironment=False)
        self.lines = queue.Queue()
        self.messages = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.connect("timeout()", self._poll)
        self.timer.start()

    @staticmethod
    def _python():
        return shutil.which("PythonSlicer") or sys.executable

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line)

    def _poll(self):
        while not self.lines.empty():
            line = self.lines.get_nowait().rstrip("\n")
            if line.startswith("PROGRESS "):
                _, fraction, *message = line.split(" ", 2)
                self.on_progress(float(fraction), message[0] if message else "")
            elif line.startswith("cardioquant:"):
                self.messages.append(line)
        if self.process.poll() is not None and not self.reader.is_alive() and self.lines.empty():
            self.timer.stop()
            ok = self.process.returncode == 0
            self.on_finished(ok, self.output_dir if ok else None,
                             "\n".join(self.messages) or f"exit code {self.process.returncode}")

    def cancel(self):
        self.timer.stop()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.cleanup()

    def cleanup(self):
        shutil.rmtree(self.workdir, ignore_errors=True)
