"""One run per workdir: `workdir/lock.json` names the process that trains there (host, pid, its start time).

A second `mmjax train` on a workdir in use fails at once naming the holder. A lock whose holder is gone is taken
over with a warning: on the same host when that pid no longer runs (or is another process with the same pid: its
start time differs); from another host when the holder stopped refreshing the lock (it does every
`HEARTBEAT_S` seconds while it trains) for `STALE_S`, since a pid cannot be checked across hosts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time

from etils import epath

logger = logging.getLogger(__name__)

LOCK_FILE = "lock.json"
HEARTBEAT_S = 60.0
STALE_S = 600.0


class WorkdirInUse(RuntimeError):
    """Another live run holds the workdir."""


def process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid from the holder."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _running(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it runs
        return True
    return start is None or process_start_time(pid) in (None, start)


def holder_alive(holder: dict, now: float | None = None) -> bool:
    """Whether the run that wrote `holder` (a lock's content) still runs."""
    if holder.get("host") == socket.gethostname():
        return _running(int(holder.get("pid", -1)), holder.get("start"))
    return (now or time.time()) - float(holder.get("time", 0)) < STALE_S


class WorkdirLock:
    """Held by process 0 of a run for as long as it trains in `workdir`."""

    def __init__(self, workdir: str | os.PathLike):
        self.path = epath.Path(workdir) / LOCK_FILE
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start_time(os.getpid())}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _content(self) -> str:
        return json.dumps({**self.me, "time": time.time()})

    def _create(self) -> bool:
        """Write the lock if there is none; False if there is one. Atomic on local disks (O_EXCL); on object
        stores, where there is no exclusive create, the last writer wins a race of starts within milliseconds."""
        if "://" in str(self.path):
            if self.path.exists():
                return False
            self.path.write_text(self._content())
            return True
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(self._content())
        return True

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):  # gone meanwhile, or half-written by a killed run: not a live holder's
            return {}

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while not self._create():
            holder = self._holder()
            if holder and holder_alive(holder):
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("time", 0))))
                raise WorkdirInUse(
                    f"workdir {self.path.parent} is in use by pid {holder.get('pid')} on host {holder.get('host')} "
                    f"(lock refreshed {since}); stop that run or use another --workdir"
                )
            logger.warning(
                "taking over the lock of %s left by pid %s on host %s, which no longer runs",
                self.path.parent,
                holder.get("pid", "?"),
                holder.get("host", "?"),
            )
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._thread = threading.Thread(target=self._heartbeat, name="mmjax-workdir-lock", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                self.path.write_text(self._content())

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        holder = self._holder()
        if holder.get("pid") == self.me["pid"] and holder.get("host") == self.me["host"]:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
