# Contributors' data (one shard per contributor, keyed by its content) and the
# reference images.


rule prepare_shard:
    output:
        f"{R}/data/shards/{{key}}.npz",
    params:
        job=node_job("prepare_shard"),
        py=PY,
    conda:
        "../../envs/estimate.yaml"
    log:
        f"{R}/logs/prepare_shard/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"


rule prepare_data:
    input:
        unpack(node_inputs("prepare_data")),
    output:
        f"{R}/data/{{key}}/manifest.parquet",
    params:
        job=node_job("prepare_data"),
        py=PY,
    conda:
        "../../envs/estimate.yaml"
    log:
        f"{R}/logs/prepare_data/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"


rule reference_data:
    input:
        unpack(node_inputs("reference_data")),
    output:
        f"{R}/data/reference/{{key}}.npz",
    params:
        job=node_job("reference_data"),
        py=PY,
    conda:
        "../../envs/estimate.yaml"
    log:
        f"{R}/logs/reference_data/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"


rule encode:
    input:
        unpack(node_inputs("encode")),
    output:
        f"{R}/data/encoded/{{key}}.npz",
    params:
        job=node_job("encode"),
        py=PY,
    threads: plan.threads
    resources:
        mem_mb=mem_mb("encode"),
        gpu=gpu("encode"),
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/encode/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"
