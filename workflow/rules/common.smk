# Input functions shared by every rule: a job's inputs, spec and resources are its
# node's in the plan (src/diffcredit/plan.py); keys not in the plan are refused.


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
    `key`: the node of a rule without wildcards."""

    def inputs(wc):
        k = key or _node(wc, rule).key
        return {
            role: [ancient(p) for p in path] if isinstance(path, list) else ancient(path)
            for role, path in plan.inputs(k).items()
        }

    return inputs


def node_job(rule):
    return lambda wc: json.dumps(plan.job(_node(wc, rule).key))


def mem_mb(rule):
    """The rule's memory estimate, doubled on the first retry, tripled on the second."""
    base = plan.resources(rule)["mem_mb"]
    return lambda wc, attempt: base * attempt


def gpu(rule):
    return plan.resources(rule)["gpu"]


def counterfactual_inputs(wc):
    """After the removal_sets checkpoint: its retrains join the plan, then the DAG."""
    node = _node(wc, "counterfactual")
    checkpoints.removal_sets.get(key=node.parents["removal"])
    plan.load_removal_sets()
    return node_inputs("counterfactual")(wc)


def missing_targets():
    """What the run was asked for and does not exist: Snakemake may end a run
    "successfully" without it (a forced job's ancient() consumers are skipped)."""
    if workflow.dag_settings.until or workflow.dag_settings.omit_from:
        return []
    files = [f for job in workflow.dag.targetjobs for f in (job.input if job.rule.norun else job.output)]
    return [str(f) for f in files if not os.path.exists(f)]
