# Input functions shared by every rule: a job's inputs, spec and resources are its
# node's in the plan (src/diffcredit/plan/); keys not in the plan are refused.


def _node(wc, rule):
    """The node of a job: by its wildcards, or the stage's only node (the summary)."""
    if not wc.keys():
        return plan.node(plan.keys(rule)[0], rule)
    try:
        node = plan.node(wc.key, rule)
    except KeyError as exc:
        raise WorkflowError(f"diffcredit: {exc}") from None
    if "mkey" in wc.keys() and not node.path.startswith(os.path.join(R, "coalitions", wc.mkey, "")):
        raise WorkflowError(f"diffcredit: {rule} {wc.key} does not belong to model {wc.mkey}")
    return node


def node_inputs(rule):
    """The node's parents' paths; ancient: keys, not times, decide what reruns. A stage
    that waits for a checkpoint learns the rest of its inputs once that checkpoint's
    output exists (and so on, while outputs make more checkpoints known)."""
    waits_for = STAGES[rule].waits_for

    def inputs(wc):
        node = _node(wc, rule)
        waited = set()
        while waits_for:  # a checkpoint's output may make another known (an adaptive estimate's rounds)
            todo = [k for k in plan.parent_keys(node.key) if k not in waited and k in plan.nodes and plan.nodes[k].rule == waits_for]
            if not todo:
                break
            for k in todo:
                getattr(checkpoints, waits_for).get(key=k)
                waited.add(k)
            plan.load_checkpoints()
        return {
            role: [ancient(p) for p in path] if isinstance(path, list) else ancient(path)
            for role, path in plan.rule_inputs(node.key).items()
        }

    return inputs


def node_job(rule):
    return lambda wc: json.dumps(plan.job(_node(wc, rule).key))


def stage_outputs(stage):
    """The record's output pattern under the results folder (a folder's plots go to the
    report); the summary's: the run's fixed-name tables."""
    if stage.name == "summary":
        tables = [(plan.summary_outputs[n], f"{n}.rst", "Evaluation", "tables") for n in plan.evaluations]
        captions = [(plan.summary_outputs["values"], "values_table.rst", "Values", None),
                     (plan.summary_outputs["samples"], "samples.rst", "Samples", None), *tables]
        if "canaries" in plan.summary_outputs:
            captions.append((plan.summary_outputs["canaries"], "canaries.rst", "Values", "canaries"))
        return [report(path, caption=f"../report/{caption}", category=category, subcategory=sub)
                for path, caption, category, sub in captions]
    path = f"{R}/{stage.output}"
    if not stage.folder:
        return [path]
    if not stage.report:
        return [directory(path)]
    caption, category, subcategory = stage.report
    return [report(directory(path), patterns=["{name}.png"], caption=f"../report/{caption}", category=category,
                   subcategory=subcategory)]


def stage_named_outputs(stage):
    """The summary's stamp, named by the plan's key: another config's run leaves it
    missing, so the tables are rewritten (the job removes other configs' stamps)."""
    return {"stamp": plan.nodes[plan.summary_key].path} if stage.name == "summary" else {}


def stage_env(stage):
    return f"../../envs/{stage.env}.yaml"


def stage_log(stage):
    if stage.name == "summary":
        return f"{R}/logs/summary.log"
    return f"{R}/logs/{stage.name}/{stage.log}"


# A checkpoint runs alone: it takes every slot, so no job is running when Snakemake
# updates the DAG after it (Snakemake 9 can lose a running job's dependents then, and
# end the run without the summary).
CHECKPOINT_SLOTS = 1_000_000
workflow.register_resource("diffcredit_slots", CHECKPOINT_SLOTS)


def stage_resources(stage):
    """mem_mb (doubled on the first retry, tripled on the second), gpu (stages that may
    use one) and the SLURM wall time of a stage's jobs; the profile may override any."""
    res = plan.resources(stage.name)
    out = {"runtime": lambda wc, attempt: stage.runtime * attempt,
           "diffcredit_slots": CHECKPOINT_SLOTS if stage.checkpoint else 1}
    if stage.gpu:
        out["gpu"] = res["gpu"]
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
