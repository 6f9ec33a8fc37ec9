# Coalition designs and one fine-tune per coalition.


rule coalition_sample:
    output:
        f"{R}/designs/{{dkey}}.parquet",
    params:
        spec=lambda wc: json.dumps(plan.design_spec(wc.dkey)),
    conda:
        "../../envs/estimate.yaml"
    log:
        f"{R}/logs/coalition_sample/{{dkey}}.log",
    shell:
        "{PY} design --spec {params.spec:q} --out {output} > {log} 2>&1"


def _fine_tune_inputs(wc):
    return {
        "start": ancient(plan.start_dir(wc.key)),
        "shards": [ancient(plan.shard_path(n)) for n in plan.members_of(wc.key)],
    }


rule fine_tune:
    input:
        unpack(_fine_tune_inputs),
    output:
        directory(f"{R}/coalitions/{{key}}/model"),
    params:
        spec=lambda wc: json.dumps(plan.train_job_spec(wc.key)),
    threads: plan.threads
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/fine_tune/{{key}}.log",
    shell:
        "{PY} train --spec {params.spec:q} --start {input.start} --shards {input.shards}"
        " --out {output} --scratch {R}/scratch/{wildcards.key} --threads {THREADS} > {log} 2>&1"
