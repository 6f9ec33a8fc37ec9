# Input functions shared by every rule: a job's inputs, spec and resources are its
# node's in the plan (src/diffcredit/plan/); keys not in the plan are refused.


def _node(wc, rule):
    try:
        node = plan.node(wc.key, rule)
    except KeyError as exc:
        raise WorkflowError(f"diffcredit: {exc}") from None
    if "mkey" in wc.keys() and not node.path.startswith(os.path.join(R, "coalitions", wc.mkey, "")):
        raise WorkflowError(f"diffcredit: {rule} {wc.key} does not belong to model {wc.mkey}")
    return node


def node_inputs(rule, key=None):
    """The node's parents' paths; ancient: keys, not times, decide what reruns.
    `key`: the node of a rule without wildcards. A stage that waits for a checkpoint
    learns the rest of its inputs once that checkpoint's output exists."""
    waits_for = STAGES[rule].waits_for

    def inputs(wc):
        node = plan.node(key, rule) if key else _node(wc, rule)
        if waits_for:
            for parent in node.parents.values():
                if isinstance(parent, str) and parent in plan.keys(waits_for):
                    getattr(checkpoints, waits_for).get(key=parent)
            plan.load_checkpoints()
        return {
            role: [ancient(p) for p in path] if isinstance(path, list) else ancient(path)
            for role, path in plan.inputs(node.key).items()
        }

    return inputs


def node_job(rule):
    return lambda wc: json.dumps(plan.job(_node(wc, rule).key))


def stage_output(stage):
    """The record's output pattern under the results folder; a folder's plots go to the report."""
    path = f"{R}/{stage.output}"
    if not stage.folder:
        return path
    if not stage.report:
        return directory(path)
    caption, category, subcategory = stage.report
    return report(directory(path), patterns=["{name}.png"], caption=f"../report/{caption}", category=category,
                  subcategory=subcategory)


def stage_resources(stage):
    """mem_mb (doubled on the first retry, tripled on the second), gpu and the SLURM wall
    time of a stage's jobs; the SLURM profile may override any of them."""
    res = plan.resources(stage.name)
    out = {"gpu": res["gpu"], "runtime": lambda wc, attempt: stage.runtime * attempt}
    if res["mem_mb"] is not None:
        out["mem_mb"] = lambda wc, attempt: res["mem_mb"] * attempt
    return out


def missing_targets():
    """What the run was asked for and does not exist: Snakemake may end a run
    "successfully" without it (a forced job's ancient() consumers are skipped)."""
    if workflow.dag_settings.until or workflow.dag_settings.omit_from:
        return []
    files = [f for job in workflow.dag.targetjobs for f in (job.input if job.rule.norun else job.output)]
    return [str(f) for f in files if not os.path.exists(f)]
