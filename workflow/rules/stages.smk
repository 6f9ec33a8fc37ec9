# One rule per stage, all made from the stage records (src/diffcredit/stages/__init__.py):
# output, threads, resources, conda env, log and report caption come from the record,
# a job's inputs and settings from its node in the plan. The summary is a stage with
# one node, whose outputs are the run's fixed-name tables besides its keyed stamp.


for _stage in STAGES.values():
    if _stage.checkpoint:
        continue

    rule:
        name:
            _stage.name
        input:
            unpack(node_inputs(_stage.name)),
        output:
            *stage_outputs(_stage),
            **stage_named_outputs(_stage),
        params:
            job=node_job(_stage.name),
            py=PY,
        threads: plan.threads_of(_stage.name)
        resources:
            **stage_resources(_stage),
        conda:
            stage_env(_stage)
        log:
            stage_log(_stage),
        shell:
            "{params.py} job {params.job:q} > {log:q} 2>&1"


# The same for checkpoints (Snakemake's keyword, not a setting, makes one): what a
# checkpoint writes adds nodes to the plan (the counterfactual's retrains).
for _stage in STAGES.values():
    if not _stage.checkpoint:
        continue

    checkpoint:
        name:
            _stage.name
        input:
            unpack(node_inputs(_stage.name)),
        output:
            *stage_outputs(_stage),
        params:
            job=node_job(_stage.name),
            py=PY,
        threads: plan.threads_of(_stage.name)
        resources:
            **stage_resources(_stage),
        conda:
            stage_env(_stage)
        log:
            stage_log(_stage),
        shell:
            "{params.py} job {params.job:q} > {log:q} 2>&1"
