"""A warm worker for local runs: one background process imports torch and diffusers
once and forks a child per job, so a job starts in milliseconds instead of the 5-8 s
those imports take (most of a small job's time).

`python -m diffcredit job ...` (the rules' command) asks the worker to run it: the
client passes its argv, working directory, environment and its stdin/stdout/stderr
(so output goes to the rule's log), waits, and exits with the child's status. When
the client is killed (Snakemake cancelling the job), the child kills itself, as the
job would have died. With no worker running, the client starts one in the
background and runs its own job in-process; the worker leaves after `IDLE_SECONDS`
without a job.

A worker serves only clients of the same Python, the same diffcredit sources, the
same installed torch/diffusers and the same environment (apart from the per-job
variables in PER_JOB_ENV); anything else gets a worker of its own. It is never used
inside a SLURM job (the child would run outside the job's cgroup), for jobs that may use
CUDA, off Linux, or with DIFFCREDIT_WORKER=0.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .artifacts import current_umask

IDLE_SECONDS = 90
# Set per job by Snakemake (threads) or the scheduler (GPUs); the child takes them
# from its client, and nothing read at import time depends on them.
PER_JOB_ENV = {
    "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "OLDPWD", "PWD", "SHLVL", "_",
}
PRELOAD = ("numpy", "torch", "diffusers.models.unets.unet_2d", "diffusers.schedulers", "diffcredit.runner",
           "diffcredit.stages.models", "diffcredit.stages.scoring", "diffcredit.families.ddpm", "diffcredit.training",
           "diffcredit.extractors.classifier")
_STATUS = struct.Struct("!i")
_ACK = b"+"


def enabled() -> bool:
    return (sys.platform.startswith("linux") and os.environ.get("DIFFCREDIT_WORKER", "1") != "0"
            and "SLURM_JOB_ID" not in os.environ)


def _fingerprint() -> str:
    """Python, sources, installed torch/diffusers and environment, in one digest."""
    h = hashlib.sha256(sys.executable.encode())
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        st = path.stat()
        h.update(f"{path}:{st.st_mtime_ns}:{st.st_size}".encode())
    for name in ("torch", "diffusers"):
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec and spec.origin else ""
        h.update(f"{name}:{origin}:{os.stat(origin).st_mtime_ns if origin else 0}".encode())
    h.update(json.dumps(sorted((k, v) for k, v in os.environ.items() if k not in PER_JOB_ENV)).encode())
    return h.hexdigest()[:20]


def socket_path() -> Path:
    name = f"diffcredit-{os.getuid()}/{_fingerprint()}.sock"
    path = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / name
    if len(str(path)) > 100:  # a Unix socket's path has at most 107 bytes
        path = Path("/tmp") / name
    return path


# ---------------------------------------------------------------- client


def cpu_only(device: str) -> bool:
    """Whether a job on `device` stays off CUDA: CUDA cannot start in a process forked
    from one that touched it, and a GPU job is long enough not to need the worker."""
    return device == "cpu" or (device == "auto" and not os.path.exists("/dev/nvidiactl"))


def run_via_worker(argv: list[str], device: str = "cpu") -> int | None:
    """The job's exit status from a worker, or None when there is none to ask (one
    is then started for the jobs that follow) or the job is not for one."""
    if not enabled() or not cpu_only(device):
        return None
    path = socket_path()
    if not _private(path.parent):
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        _start(path)
        return None
    with conn:
        payload = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
                              "umask": current_umask()}).encode()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            socket.send_fds(conn, [struct.pack("!Q", len(payload)) + payload], [0, 1, 2])
            if conn.recv(1) != _ACK:
                return None  # the worker was leaving: nothing ran
        except OSError:
            return None
        data = b""
        while len(data) < _STATUS.size:
            chunk = conn.recv(_STATUS.size - len(data))
            if not chunk:
                print("diffcredit: the job's process died before it finished (killed?)", file=sys.stderr)
                return 1
            data += chunk
        return _STATUS.unpack(data)[0]


def _private(folder: Path) -> bool:
    """Whether `folder` is ours alone (made so if missing): the job's environment and
    file descriptors go to whoever listens there."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(folder, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def _start(path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in PER_JOB_ENV}
    src = str(Path(__file__).resolve().parents[1])  # the worker imports this very diffcredit
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    subprocess.Popen([sys.executable, "-m", "diffcredit.worker", str(path)], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                     close_fds=True, env=env)


# ---------------------------------------------------------------- worker


def serve(path: Path, idle: float = IDLE_SECONDS) -> None:
    lock = open(f"{path}.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another worker for this fingerprint is alive
    lock.write(str(os.getpid()))
    lock.flush()
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(64)
    server.settimeout(idle)
    try:
        while True:
            try:
                conn, _ = server.accept()
            except socket.timeout:
                break
            if os.fork() == 0:
                server.close()
                lock.close()
                _child(conn)  # never returns
            conn.close()
    finally:
        path.unlink(missing_ok=True)
        server.close()


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    (size,) = struct.unpack("!Q", msg[:8])
    body = msg[8:]
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ConnectionError("client went away")
        body += chunk
    return json.loads(body), fds


def _child(conn: socket.socket) -> None:
    code = 1
    try:
        os.setsid()
        request, fds = _receive(conn)
        conn.sendall(_ACK)
        for fd, target in zip(fds, (0, 1, 2)):
            os.dup2(fd, target)
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.umask(request.get("umask", current_umask()))  # the run's, not the worker's
        _thread_limits()
        print(f"diffcredit: job process {os.getpid()}, forked from the warm worker {os.getppid()}",
              file=sys.stderr, flush=True)
        # The client's death (a cancelled job) ends this job too.
        threading.Thread(target=_die_with_client, args=(conn,), daemon=True).start()
        from .runner import main

        try:
            code = main(request["argv"]) or 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        conn.sendall(_STATUS.pack(code))
    finally:
        os._exit(code)


def _thread_limits() -> None:
    """The thread counts a fresh process would take from the job's environment."""
    n = os.environ.get("OMP_NUM_THREADS")
    if n and n.isdigit():
        import torch
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(n))
        torch.set_num_threads(int(n))


def _die_with_client(conn: socket.socket) -> None:
    try:
        while conn.recv(1):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    from diffcredit.worker import serve as _serve  # the module its children's imports will see

    _serve(Path(sys.argv[1]))
