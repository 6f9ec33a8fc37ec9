# The field's attribution baselines on the full model (attributions: in the config),
# written in the estimators' values format. See docs/attribution.md.


rule attribution_features:
    input:
        unpack(node_inputs("attribution_features")),
    output:
        f"{R}/attributions/features/{{key}}.npz",
    params:
        job=node_job("attribution_features"),
        py=PY,
    threads: plan.threads
    resources:
        mem_mb=mem_mb("attribution_features"),
        gpu=gpu("attribution_features"),
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/attribution_features/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"


rule attribute:
    input:
        unpack(node_inputs("attribute")),
    output:
        report(directory(f"{R}/attributions/{{key}}"), patterns=["{name}.png"], caption="../report/attribution.rst",
               category="Values", subcategory="attribution baselines"),
    params:
        job=node_job("attribute"),
        py=PY,
    conda:
        "../../envs/estimate.yaml"
    log:
        f"{R}/logs/attribute/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"
