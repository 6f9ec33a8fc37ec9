# diffcredit: Shapley values of data contributors for a global property of a
# diffusion model, with sparsified fine-tuning. See README.md and docs/.
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

_src = str(Path(workflow.basedir) / "src")
sys.path.insert(0, _src)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_src, os.environ.get("PYTHONPATH")]))

from diffcredit.config import ConfigError
from diffcredit.plan import Plan


# The embedded default; --configfile files override it key by key.
configfile: os.path.join(workflow.basedir, "config.yaml")


try:
    plan = Plan(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
except ConfigError as exc:
    raise WorkflowError(f"diffcredit: {exc}") from None

R = str(plan.results)
# torch is pinned to the configured thread counts, not to Snakemake's (which it
# lowers to --cores), so results do not depend on the machine's core count.
THREADS, TRAIN_THREADS = plan.threads, plan.train_threads
# With --sdm conda, rules use the env's python; otherwise this interpreter.
_conda = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
PY = "python -m diffcredit" if _conda else f"{sys.executable} -m diffcredit"


wildcard_constraints:
    key="[0-9a-f]{16}",
    shard="[0-9a-f]{16}",
    mkey="[0-9a-f]{16}",
    gkey="[0-9a-f]{16}",
    skey="[0-9a-f]{16}",
    dkey="[0-9a-f]{16}",
    prop="[a-z][a-z0-9_]*",
    ekey="[0-9a-f]{16}",


rule all:
    default_target: True
    input:
        plan.targets(),


include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/coalitions.smk"
include: "workflow/rules/evaluate.smk"


onsuccess:
    from diffcredit.summary import write_summary

    write_summary(plan)
