"""An exclusive claim on a run folder, so that one process at a time runs a job.

The claim is an ``fcntl.flock`` on ``RUN_DIR/.claim``, taken without waiting and held while the
job runs. The kernel drops it when the holder exits however it ends (SIGKILL, the OOM killer, a
lost node once NFS's lease expires), so a claim left by a dead process is never in the way: the
next launcher takes it. ``running.json`` beside it names the holder (pid, host, start time) for the
message of a launcher that finds the folder taken; it is removed when the claim is released.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from curvlab.run.store import write_json_atomic

LOCK = ".claim"
RUNNING = "running.json"


class ClaimHeld(Exception):
    """Another live process holds the run folder."""


def _holder(run_dir: Path) -> str:
    try:
        h = json.loads((run_dir / RUNNING).read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["started"]))
        return f"pid {h['pid']} on {h['host']} since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def claim(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for the duration of the block; raise :class:`ClaimHeld` if a live process
    holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClaimHeld(f"{run_dir} is being run by {_holder(run_dir)}") from None
        write_json_atomic(run_dir / RUNNING, {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
        try:
            yield
        finally:
            (run_dir / RUNNING).unlink(missing_ok=True)  # before the lock goes: never the next holder's
    finally:
        os.close(fd)
