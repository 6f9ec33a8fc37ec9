"""One running workflow per results folder.

Snakemake locks the folder it runs in; two runs started from different folders on
one results folder would still run the same jobs. The running Snakemake holds a
POSIX lock on `<results>/.lock` (fcntl locks work across NFS clients); the kernel
releases it when the process dies, so a killed run leaves nothing to unlock.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import warnings
from pathlib import Path

LOCK_NAME = ".lock"


class ResultsLocked(RuntimeError):
    """Another process holds the results folder's lock, or it cannot be written."""


def lock_results(results: str | os.PathLike):
    """Take the results folder's lock, or raise ResultsLocked naming the holder.
    Keep the returned file object open for as long as the lock is needed."""
    results = Path(results)
    path = results / LOCK_NAME
    try:
        results.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")
    except OSError as exc:
        raise ResultsLocked(
            f"cannot write to the results folder {results.resolve()} ({exc.strerror}): a run writes every "
            "artifact there; make it writable or choose another results folder"
        ) from None
    try:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EAGAIN):  # a file system without locks
            warnings.warn(f"cannot lock the results folder {results} ({exc.strerror}); "
                          "make sure no other run uses it", stacklevel=2)
            return f
        f.seek(0)
        holder = f.read().strip()
        f.close()
        try:
            who = json.loads(holder)
            who = f"pid {who['pid']} on {who['host']}, started {who['started']} in {who['cwd']}"
        except (ValueError, KeyError, TypeError):
            who = "another process"
        raise ResultsLocked(
            f"results folder {results.resolve()} is in use by {who}: wait for that run to end "
            "(a killed run releases it at once)"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "cwd": os.getcwd(),
                        "started": datetime.datetime.now().isoformat(timespec="seconds")}))
    f.flush()
    return f
