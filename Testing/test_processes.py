"""Cancel ends the whole run: the launcher and the process it started (PythonSlicer starts the real Python)."""

import subprocess
import sys
import time

import psutil

from cardioquant.processes import end_process_tree, own_group


def test_ending_a_run_ends_the_process_it_started():
    launcher = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                                 "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
                                 "time.sleep(120)"], **own_group())
    deadline = time.time() + 20
    while not psutil.Process(launcher.pid).children() and time.time() < deadline:
        time.sleep(0.1)
    started = psutil.Process(launcher.pid).children()
    assert len(started) == 1
    end_process_tree(launcher, grace_s=5.0)
    time.sleep(0.5)
    assert launcher.poll() is not None
    assert not started[0].is_running() or started[0].status() == psutil.STATUS_ZOMBIE
