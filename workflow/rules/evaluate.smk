# Samples of every model, their features, the reference statistics, and the
# properties (scores) computed from them.


rule generate:
    input:
        unpack(node_inputs("generate")),
    output:
        f"{R}/coalitions/{{mkey}}/samples/{{key}}.npz",
    params:
        job=node_job("generate"),
        py=PY,
    threads: plan.threads
    resources:
        mem_mb=mem_mb("generate"),
        gpu=gpu("generate"),
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/generate/{{mkey}}-{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"


rule features:
    input:
        unpack(node_inputs("features")),
    output:
        f"{R}/coalitions/{{mkey}}/features/{{key}}.npz",
    params:
        job=node_job("features"),
        py=PY,
    threads: plan.threads
    resources:
        mem_mb=mem_mb("features"),
        gpu=gpu("features"),
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/features/{{mkey}}-{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"


rule reference_stats:
    input:
        unpack(node_inputs("reference_stats")),
    output:
        f"{R}/references/{{key}}.npz",
    params:
        job=node_job("reference_stats"),
        py=PY,
    threads: plan.train_threads
    resources:
        mem_mb=mem_mb("reference_stats"),
        gpu=gpu("reference_stats"),
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/reference_stats/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"


rule score:
    input:
        unpack(node_inputs("score")),
    output:
        f"{R}/coalitions/{{mkey}}/scores/{{key}}.json",
    params:
        job=node_job("score"),
        py=PY,
    resources:
        mem_mb=mem_mb("score"),
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/score/{{mkey}}-{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"
