# Is the credit right? Retraining ground truth (evaluations: in the config), and the
# run's fixed-name tables. See docs/evaluation.md.


rule fidelity:
    input:
        unpack(node_inputs("fidelity")),
    output:
        report(directory(f"{R}/evaluation/fidelity/{{key}}"), patterns=["{name}.png"],
               caption="../report/fidelity.rst", category="Evaluation", subcategory="fidelity"),
    params:
        job=node_job("fidelity"),
        py=PY,
    conda:
        "../../envs/estimate.yaml"
    log:
        f"{R}/logs/fidelity/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"


rule lds:
    input:
        unpack(node_inputs("lds")),
    output:
        report(directory(f"{R}/evaluation/lds/{{key}}"), patterns=["{name}.png"],
               caption="../report/lds.rst", category="Evaluation", subcategory="LDS"),
    params:
        job=node_job("lds"),
        py=PY,
    conda:
        "../../envs/estimate.yaml"
    log:
        f"{R}/logs/lds/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"


# The removal sets depend on computed values: a checkpoint, after which the
# counterfactual's retrains join the DAG (and every later parse of the plan).
checkpoint removal_sets:
    input:
        unpack(node_inputs("removal_sets")),
    output:
        f"{R}/evaluation/removal/{{key}}.json",
    params:
        job=node_job("removal_sets"),
        py=PY,
    conda:
        "../../envs/estimate.yaml"
    log:
        f"{R}/logs/removal_sets/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"


rule counterfactual:
    input:
        unpack(counterfactual_inputs),
    output:
        report(directory(f"{R}/evaluation/counterfactual/{{key}}"), patterns=["{name}.png"],
               caption="../report/counterfactual.rst", category="Evaluation", subcategory="counterfactual"),
    params:
        job=node_job("counterfactual"),
        py=PY,
    conda:
        "../../envs/estimate.yaml"
    log:
        f"{R}/logs/counterfactual/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"


rule summary:
    input:
        unpack(node_inputs("summary", plan.summary_key)),
    output:
        report(plan.summary_outputs["values"], caption="../report/values_table.rst", category="Values"),
        report(plan.summary_outputs["samples"], caption="../report/samples.rst", category="Samples"),
        *[report(plan.summary_outputs[n], caption=f"../report/{n}.rst", category="Evaluation",
                 subcategory="tables") for n in plan.evaluations],
        # Named by the plan's key: another config's run leaves it missing, so the tables
        # are rewritten (the job removes the stamps of other configs).
        stamp=plan.nodes[plan.summary_key].path,
    params:
        job=lambda wc: json.dumps(plan.job(plan.summary_key)),
        py=PY,
    conda:
        "../../envs/estimate.yaml"
    log:
        f"{R}/logs/summary.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"
