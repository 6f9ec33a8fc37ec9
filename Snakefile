# diffcredit: Shapley values of data contributors for a global property of a
# diffusion model, with sparsified fine-tuning. See README.md and docs/.
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import min_version

min_version("9.0")

_src = str(Path(workflow.basedir) / "src")
sys.path.insert(0, _src)

from diffcredit.config import ConfigError, load_yaml
from diffcredit.devices import visible_gpus
from diffcredit.plan import Plan
from diffcredit.plan import cache as plan_cache
from diffcredit.stages import STAGES


# The embedded default; --configfile files override it key by key.
configfile: os.path.join(workflow.basedir, "config.yaml")


# Snakemake keeps only the last of repeated --configfile options; a user who repeats it
# means every file, so refuse rather than plan without the earlier ones.
_repeats = [a for a in sys.argv if a in ("--configfile", "--configfiles") or a.startswith("--configfile=")]
if len(_repeats) > 1:
    raise WorkflowError(
        "diffcredit: --configfile is given more than once, and Snakemake would keep only the last; "
        "list every file after one option: --configfile A.yaml B.yaml"
    )

try:
    # Snakemake has read these already, silently keeping the last of a repeated key.
    for _file in [Path(workflow.basedir) / "config.yaml", *workflow.config_settings.configfiles]:
        load_yaml(_file)
    # A cluster job takes the plan of the process that scheduled it (diffcredit.plan.cache).
    plan = None
    if workflow.remote_exec:
        _saved = os.environ.get(plan_cache.ENV)
        plan = plan_cache.load(_saved, plan_cache.fingerprint(config, workflow.basedir))
        print(f"diffcredit: job uses the run's saved plan {_saved}" if plan else
              f"diffcredit: no usable saved plan ({_saved or 'none'}); building the plan", file=sys.stderr)
    if plan is None:
        plan = Plan(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
except ConfigError as exc:
    raise WorkflowError(f"diffcredit: {exc}") from None

# Keys are the only rerun trigger: profiles/default/config.yaml sets
# rerun-triggers to mtime, and every input is ancient().
# A local run never starts more GPU jobs than this machine has GPUs.
if "gpu" not in workflow.global_resources and visible_gpus():
    workflow.register_resource("gpu", visible_gpus())

R = str(plan.results)
held = {}  # open handles that must live as long as this process
# With --sdm conda, rules use the env's python, otherwise this interpreter; either way
# this checkout's library, first on the path (another diffcredit on PYTHONPATH, or an
# older install, would run jobs the plan did not make).
_conda = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
_pinned = f"PYTHONPATH={shlex.quote(_src)}${{PYTHONPATH:+:$PYTHONPATH}}"
PY = f"{_pinned} {'python' if _conda else shlex.quote(sys.executable)} -m diffcredit"


report: "workflow/report/workflow.rst"


wildcard_constraints:
    key="[0-9a-f]{16}",
    mkey="[0-9a-f]{16}",


include: "workflow/rules/common.smk"


rule all:
    default_target: True
    input:
        plan.targets(),


include: "workflow/rules/stages.smk"


# A dry-run starts no job, so onstart's check below never runs; warn here (Snakemake
# chooses its dry-run executor after reading this file, so the flag is read from argv).
_dry_run = any(a in ("-n", "--dry-run", "--dryrun") or re.fullmatch(r"-[A-Za-z]*n[A-Za-z]*", a) for a in sys.argv[1:])
# workflow.local_exec is not known yet either: a profile or executor may send the jobs elsewhere.
_elsewhere = any(a.startswith(("--executor", "--profile")) or a == "-e" for a in sys.argv[1:])
if not _dry_run and workflow.is_main_process:
    os.environ[plan_cache.ENV] = plan_cache.save(plan, plan_cache.fingerprint(config, workflow.basedir))
if plan.device == "cuda" and _dry_run and not _elsewhere and not visible_gpus():
    print("diffcredit: warning: device is 'cuda' but this machine has no GPU: a run here would be refused before "
          "any job; run on a GPU cluster (--profile slurm), or set device: cpu or auto", file=sys.stderr)


onstart:
    # Here, not at parse time: only now is it known where jobs run.
    _executor = getattr(workflow.executor_plugin, "name", "")
    _missing = [c for c in ("sbatch", "squeue") if shutil.which(c) is None] if _executor == "slurm" else []
    if _missing:
        raise WorkflowError(
            f"diffcredit: the SLURM executor submits and watches jobs with sbatch and squeue, and "
            f"{' and '.join(_missing)} {'is' if len(_missing) == 1 else 'are'} not on PATH here; run from the "
            "cluster's login node (a dry-run works anywhere), or drop --profile slurm to run on this machine"
        )
    if plan.device == "cuda" and workflow.local_exec and not visible_gpus():
        raise WorkflowError(
            "diffcredit: device is 'cuda' but this machine has no GPU; set device: cpu or auto, "
            "or run on a GPU cluster (--profile slurm)"
        )
    # Snakemake locks its working directory; this locks the results folder, which
    # runs from other directories may share.
    if workflow.is_main_process and workflow.execution_settings.lock:
        from diffcredit.lock import ResultsLocked, lock_results

        try:
            held["results_lock"] = lock_results(plan.results)
        except ResultsLocked as exc:
            raise WorkflowError(f"diffcredit: {exc}") from None


onsuccess:
    from diffcredit.summary import print_summary

    missing = missing_targets()
    if missing:
        raise WorkflowError(
            f"diffcredit: the run ended without {len(missing)} of its targets (first: {missing[0]}); "
            "run the same command again to make them"
        )
    print_summary(plan)
