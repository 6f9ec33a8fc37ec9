# Contributors' data: one shard per contributor, keyed by its content.


rule prepare_shard:
    output:
        f"{R}/data/shards/{{shard}}.npz",
    params:
        spec=lambda wc: json.dumps(plan.shard_spec(wc.shard)),
    conda:
        "../../envs/estimate.yaml"
    log:
        f"{R}/logs/prepare_shard/{{shard}}.log",
    shell:
        "{PY} prepare-shard --spec {params.spec:q} --out {output} > {log} 2>&1"


rule prepare_data:
    input:
        [ancient(plan.shard_path(n)) for n in plan.names],
    output:
        plan.manifest_path(),
    params:
        spec=json.dumps(plan.manifest_spec()),
    conda:
        "../../envs/estimate.yaml"
    log:
        f"{R}/logs/prepare_data/{plan.data_key}.log",
    shell:
        "{PY} prepare-data --spec {params.spec:q} --out {output} > {log} 2>&1"
