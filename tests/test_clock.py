"""The start-up clock: the process's start time against ps, and where a job's clock starts."""

import os
import subprocess
import time

from curvlab.run.clock import StartupClock, process_start


def test_process_start_agrees_with_ps():
    elapsed = int(subprocess.run(["ps", "-o", "etimes=", "-p", str(os.getpid())], capture_output=True,
                                 text=True, check=True).stdout)
    assert abs((time.time() - process_start()) - elapsed) < 1.5


def test_a_job_clock_starts_at_the_process_start_then_at_the_previous_job_end(monkeypatch):
    monkeypatch.setattr(StartupClock, "_previous_job_end", None)
    assert abs(StartupClock().since - process_start()) < 0.05
    StartupClock.job_ended()
    ended = StartupClock._previous_job_end
    clock = StartupClock()
    assert clock.since == ended
    clock.on_train_batch_start(None, None, None, 0)
    first = clock.summary()["startup_seconds"]
    time.sleep(0.01)
    clock.on_train_batch_start(None, None, None, 1)  # later batches do not move it
    assert clock.summary()["startup_seconds"] == first >= 0
