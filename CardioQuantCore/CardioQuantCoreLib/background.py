"""Run a CardioQuant pipeline in a separate process so the GUI never freezes; progress and Cancel included.

The input volume is written into the run's folder, the command line of logic.backgroundCommand (the settings as
options) runs in Slicer's Python (PythonSlicer), and its `PROGRESS fraction message` lines drive the progress bar.
"""

import os
import queue
import shutil
import subprocess
import threading

import qt

from cardioquant.processes import end_process_tree, own_group


class BackgroundRun:
    def __init__(self, module_key, loaded, settings, workdir, on_progress, on_finished):
        """`loaded`, `settings`: what Logic.prepareRun gives, the same input and settings the scripting path runs
        on (the volume's DICOM attributes travel as NRRD keys: scene.write_run_input). `workdir`: the run's folder,
        which holds the files written for the reader's nodes; it is removed with the run (cleanup)."""
        from cardioquant import scene

        from .logic import backgroundCommand

        self.module_key = module_key
        self.on_progress, self.on_finished = on_progress, on_finished
        self.workdir = workdir
        self.input_path = os.path.join(self.workdir, "input.nrrd")
        self.output_dir = os.path.join(self.workdir, "out")
        scene.write_run_input(loaded, self.input_path)
        command = backgroundCommand(module_key, self.input_path, self.output_dir, settings)
        # stderr merged into stdout; a reader thread keeps the GUI thread from blocking. The run gets a process
        # group of its own, so Cancel ends PythonSlicer's launcher and the Python it starts alike.
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        bufsize=1, env=os.environ.copy(), **own_group())
        self.lines = queue.Queue()
        self.messages = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.connect("timeout()", self._poll)
        self.timer.start()

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
            end_process_tree(self.process)
        self.cleanup()

    def cleanup(self):
        shutil.rmtree(self.workdir, ignore_errors=True)

