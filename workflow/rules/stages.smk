# One rule per stage, all made from the stage records (src/diffcredit/stages/__init__.py):
# output, threads, resources, conda env, log and report caption come from the record,
# a job's inputs and settings from its node in the plan.


for _stage in STAGES.values():
    if _stage.name == "summary" or _stage.checkpoint:
        continue

    rule:
        name:
            _stage.name
        input:
            unpack(node_inputs(_stage.name)),
        output:
            stage_output(_stage),
        params:
            job=node_job(_stage.name),
            py=PY,
        threads: plan.threads_of(_stage.name)
        resources:
            **stage_resources(_stage),
        conda:
            f"../../envs/{_stage.env}.yaml"
        log:
            f"{R}/logs/{_stage.name}/{_stage.log}",
        shell:
            "{params.py} job {params.job:q} > {log:q} 2>&1"


# What a checkpoint writes adds nodes to the plan (the counterfactual's retrains).
for _stage in STAGES.values():
    if not _stage.checkpoint:
        continue

    checkpoint:
        name:
            _stage.name
        input:
            unpack(node_inputs(_stage.name)),
        output:
            stage_output(_stage),
        params:
            job=node_job(_stage.name),
            py=PY,
        threads: plan.threads_of(_stage.name)
        resources:
            **stage_resources(_stage),
        conda:
            f"../../envs/{_stage.env}.yaml"
        log:
            f"{R}/logs/{_stage.name}/{_stage.log}",
        shell:
            "{params.py} job {params.job:q} > {log:q} 2>&1"


# The run's fixed-name tables, named by the plan's summary key: another config's run
# leaves that stamp missing, so the tables are rewritten (the job removes the stamps
# of other configs).
rule summary:
    input:
        unpack(node_inputs("summary", plan.summary_key)),
    output:
        report(plan.summary_outputs["values"], caption="../report/values_table.rst", category="Values"),
        report(plan.summary_outputs["samples"], caption="../report/samples.rst", category="Samples"),
        *[report(plan.summary_outputs[n], caption=f"../report/{n}.rst", category="Evaluation",
                 subcategory="tables") for n in plan.evaluations],
        stamp=plan.nodes[plan.summary_key].path,
    params:
        job=lambda wc: json.dumps(plan.job(plan.summary_key)),
        py=PY,
    threads: plan.threads_of("summary")
    resources:
        **stage_resources(STAGES["summary"]),
    conda:
        f"../../envs/{STAGES['summary'].env}.yaml"
    log:
        f"{R}/logs/summary.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"
