"""Single-node SLURM cluster on localhost for tests marked ``@pytest.mark.slurm``.

The cluster itself is installed, configured and started by ``.ci/slurm-setup.sh``
(root needed). This module only drives that script and asks the cluster about its
state; nothing here submits jobs.

Typical use from ``tests/conftest.py``::

    from slurm_cluster import slurm_cluster, slurm_test_profile  # noqa: F401

(pytest puts ``tests/`` on ``sys.path`` while ``tests/`` has no ``__init__.py``; with
one, import ``tests.slurm_cluster`` instead) and in a test::

    @pytest.mark.slurm
    def test_pipeline_on_slurm(slurm_test_profile, tmp_path):
        subprocess.run(["snakemake", "--profile", str(slurm_test_profile)],
                       cwd=tmp_path, env=snakemake_env(), check=True, timeout=900)

:func:`snakemake_env` puts the virtual environment's ``bin`` first on PATH: jobs
inherit the submitting environment (sbatch --export=ALL), and rule commands find
``python`` there. To stop a run early, send SIGINT once to the snakemake process (it
cancels its SLURM jobs); SIGTERM only stops scheduling and waits for running jobs;
after SIGKILL the jobs keep running (cancel them with ``scancel --name <run id>``, see
:func:`run_id_from_log`).

``slurm_cluster`` (session scope) makes sure the cluster runs and stops it at the end
of the session if it was the one that started it. Without SLURM installed it *fails*
the test (CI installs SLURM, so a missing installation is an error, not a reason to
skip). ``slurm_test_profile`` is ``slurm/``, the profile users use; :func:`cluster_args`
gives the command-line settings the test cluster needs beside it.

Environment variables:
    SLURM_KEEP_CLUSTER=1   leave a cluster that this module started running at the end
                           of the session (saves the ~5 s stop and restart).
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Mapping

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SETUP_SCRIPT = REPO_ROOT / ".ci" / "slurm-setup.sh"
PROFILE_DIR = REPO_ROOT / "slurm"

# Client tools and daemons that must be on PATH for the test cluster.
_CLIENT_TOOLS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel")
_DAEMONS = ("slurmctld", "slurmd", "munged")
# Node states in which jobs can be scheduled (sinfo %T, lower case, maybe with a suffix
# such as "idle*" for "not responding": those are excluded on purpose).
_USABLE_NODE_STATES = ("idle", "mixed", "allocated", "completing")
# Job states (squeue %T) of jobs that still hold or wait for resources.
ACTIVE_JOB_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)


class SlurmUnavailable(RuntimeError):
    """SLURM is not installed, or the local cluster could not be started."""


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    """What the test cluster offers, as reported by ``sinfo``."""

    partition: str
    node: str
    cpus: int
    mem_mb: int
    gpus: int
    started_here: bool  # True if this process started the daemons


@dataclasses.dataclass(frozen=True)
class JobState:
    job_id: str
    state: str
    name: str
    comment: str


# --------------------------------------------------------------------------------------
# queries
# --------------------------------------------------------------------------------------


def _run(args: list[str], timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=check
    )


# The daemons live in sbin directories, which are often not on a normal user's PATH.
_SBIN_PATH = os.pathsep.join(["/usr/local/sbin", "/usr/sbin", "/sbin"])


def _find(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path=_SBIN_PATH)


def _missing_tools() -> list[str]:
    return [tool for tool in _CLIENT_TOOLS + _DAEMONS if not _find(tool)]


def is_installed() -> bool:
    """True if the SLURM client tools, the SLURM daemons and munged are installed."""
    return not _missing_tools()


def _node_lines() -> list[list[str]]:
    """``sinfo`` rows: [partition, node, state, cpus, memory, gres]."""
    try:
        proc = _run(["sinfo", "--noheader", "-N", "--format=%P|%N|%T|%c|%m|%G"], timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode != 0:
        return []
    return [line.split("|") for line in proc.stdout.splitlines() if line.strip()]


def _controller_up() -> bool:
    # `scontrol ping` answers at once; sinfo retries for ~10 s when slurmctld is down.
    if not shutil.which("scontrol"):
        return False
    try:
        proc = _run(["scontrol", "ping"], timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and "is UP" in proc.stdout


def is_available() -> bool:
    """True if slurmctld answers and at least one node can run jobs."""
    if not (_controller_up() and shutil.which("sinfo")):
        return False
    return any(row[2] in _USABLE_NODE_STATES for row in _node_lines() if len(row) >= 3)


def _gpu_count(gres: str) -> int:
    # e.g. "gpu:2", "gpu:a100:4", "gpu:2(S:0)", "(null)"
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and len(parts) >= 2 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def cluster_info(started_here: bool = False) -> ClusterInfo:
    """Describe the first usable node and its (default) partition."""
    for row in _node_lines():
        if len(row) < 6 or row[2] not in _USABLE_NODE_STATES:
            continue
        return ClusterInfo(
            partition=row[0].rstrip("*"),
            node=row[1],
            cpus=int(row[3]),
            mem_mb=int(row[4]),
            gpus=_gpu_count(row[5]),
            started_here=started_here,
        )
    raise SlurmUnavailable("no usable SLURM node found (sinfo shows none idle/mixed/allocated)")


def job_states(name: str | None = None) -> list[JobState]:
    """All jobs squeue knows, including finished ones (the test cluster keeps them for a
    day). ``name`` filters by job name, e.g. the Snakemake run ID."""
    args = ["squeue", "--noheader", "--states=all", "--format=%i|%T|%j|%k"]
    if name:
        args += ["--name", name]
    proc = _run(args, timeout=30, check=True)
    result = []
    for line in proc.stdout.splitlines():
        parts = line.split("|", 3)
        if len(parts) == 4:
            result.append(JobState(*(p.strip() for p in parts)))
    return result


def active_jobs(name: str | None = None) -> list[JobState]:
    """Jobs that are pending, running or otherwise not finished."""
    return [job for job in job_states(name) if job.state in ACTIVE_JOB_STATES]


def wait_for_jobs_gone(
    name: str | None = None, timeout: float = 120, poll: float = 0.5
) -> None:
    """Wait until no job (optionally: with this job name) is pending or running.

    Raises TimeoutError listing the jobs still active."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = active_jobs(name)
        if not remaining:
            return
        if time.monotonic() >= deadline:
            listing = ", ".join(f"{j.job_id}:{j.state}:{j.comment or j.name}" for j in remaining)
            raise TimeoutError(f"SLURM jobs still active after {timeout:.0f} s: {listing}")
        time.sleep(poll)


def run_id_from_log(text: str) -> str | None:
    """The SLURM job name the plugin gave to all jobs of one Snakemake run, read from
    Snakemake's output (line "SLURM run ID: <uuid>"); None if absent."""
    match = re.search(r"^SLURM run ID: (\S+)", text, flags=re.MULTILINE)
    return match.group(1) if match else None


def snakemake_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for launching snakemake: the running interpreter's ``bin`` directory
    (the virtual environment) first on PATH. SLURM jobs inherit this environment, so
    rule commands such as ``python -m diffcredit ...`` find the same interpreter."""
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env


def cancel_all_jobs() -> None:
    """Cancel every job of the current user (the test cluster is not shared)."""
    _run(["scancel", "--user", getpass.getuser()], timeout=30)


# --------------------------------------------------------------------------------------
# start / stop
# --------------------------------------------------------------------------------------


def _setup_command(mode: str) -> list[str]:
    cmd = ["bash", str(SETUP_SCRIPT), mode]
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            raise SlurmUnavailable(
                f"starting the SLURM test cluster needs root; run `sudo {SETUP_SCRIPT}` first"
            )
        cmd = ["sudo", "-n", "--preserve-env=SLURM_NODE_CPUS,SLURM_NODE_MEM_MB,SLURM_FAKE_GPUS"] + cmd
    return cmd


def _run_setup(mode: str, timeout: float) -> None:
    if not SETUP_SCRIPT.is_file():
        raise SlurmUnavailable(f"{SETUP_SCRIPT} is missing")
    try:
        proc = _run(_setup_command(mode), timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SlurmUnavailable(f"`{SETUP_SCRIPT} {mode}` did not finish within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise SlurmUnavailable(
            f"`{SETUP_SCRIPT} {mode}` failed with exit code {proc.returncode}:\n"
            f"{proc.stdout}{proc.stderr}"
        )


def ensure_cluster(timeout: float = 120) -> ClusterInfo:
    """Return the running test cluster, starting it first if needed.

    Raises SlurmUnavailable, with instructions, if SLURM is not installed or the cluster
    does not come up."""
    if is_available():
        return cluster_info(started_here=False)
    if not is_installed():
        raise SlurmUnavailable(
            "SLURM is not installed (missing: " + ", ".join(_missing_tools()) + "). "
            f"Install and start the local test cluster with: sudo {SETUP_SCRIPT}"
        )
    _run_setup("start", timeout=timeout)
    deadline = time.monotonic() + 30
    while not is_available():
        if time.monotonic() >= deadline:
            raise SlurmUnavailable(
                f"{SETUP_SCRIPT} reported success but no SLURM node is usable; "
                "see /var/log/slurm/slurmctld.log and /var/log/slurm/slurmd.log"
            )
        time.sleep(0.5)
    return cluster_info(started_here=True)


def stop_cluster(timeout: float = 60) -> None:
    """Stop munged, slurmctld and slurmd (started by .ci/slurm-setup.sh)."""
    _run_setup("stop", timeout=timeout)


# --------------------------------------------------------------------------------------
# settings for the test cluster
# --------------------------------------------------------------------------------------

# Settings the tests give on the command line beside --profile slurm.
TEST_PROFILE_OVERRIDES: Mapping[str, object] = {
    # The test cluster has no accounting database: sacct exists but only answers
    # "Slurm accounting storage is disabled", and the plugin would never learn that a
    # job finished. squeue works because MinJobAge keeps finished jobs for a day.
    "slurm-status-command": "squeue",
    # First status check after 1 s instead of 40 s (the interval still grows by 10 s
    # per check while nothing finishes, and drops back to 1 s when a job finishes).
    "slurm-init-seconds-before-status-checks": 1,
    # Keep the SLURM log of every job under .snakemake/slurm_logs for debugging.
    "slurm-keep-successful-logs": True,
    # Local file system: outputs are visible at once.
    "latency-wait": 5,
}


# --------------------------------------------------------------------------------------
# pytest fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[ClusterInfo]:
    """The local SLURM cluster, running. Fails (does not skip) without SLURM."""
    info: ClusterInfo | None = None
    problem = ""
    try:
        info = ensure_cluster()
    except SlurmUnavailable as exc:
        problem = str(exc)
    if info is None:
        # Outside the except block, so that pytest shows only this message.
        pytest.fail(f"SLURM test cluster unavailable: {problem}", pytrace=False)
    try:
        yield info
    finally:
        if info.started_here and os.environ.get("SLURM_KEEP_CLUSTER") != "1":
            try:
                cancel_all_jobs()
            finally:
                stop_cluster()


@pytest.fixture(scope="session")
def slurm_test_profile(slurm_cluster: ClusterInfo) -> Path:
    """The profile users use (slurm/): the rules declare memory and GPUs, so nothing
    in it needs adapting to the test cluster. Pass :func:`cluster_args` as well."""
    return PROFILE_DIR


def cluster_args(cluster: ClusterInfo) -> list[str]:
    """Command-line settings for the test cluster (no accounting database, a local
    file system, few CPUs), given beside ``--profile slurm``."""
    args = []
    for key, value in TEST_PROFILE_OVERRIDES.items():
        if value is True:
            args.append(f"--{key}")
        else:
            args += [f"--{key}", str(value)]
    return args + ["--max-threads", str(cluster.cpus)]
