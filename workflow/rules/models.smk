# The untrained model, the full model, the pruned model and the classifier.


def all_shards():
    return [ancient(plan.shard_path(n)) for n in plan.names]


rule init_model:
    output:
        directory(plan.model_dir(plan.init_key)),
    params:
        spec=json.dumps(plan.init_spec),
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/init_model/{plan.init_key}.log",
    shell:
        "{PY} init-model --spec {params.spec:q} --out {output} > {log} 2>&1"


rule train_full:
    input:
        start=ancient(plan.model_dir(plan.init_key)),
        shards=all_shards(),
        manifest=ancient(plan.manifest_path()),
    output:
        directory(plan.model_dir(plan.full_key)),
    params:
        spec=json.dumps(plan.train_job_spec(plan.full_key)),
        scratch=plan.scratch_dir(plan.full_key),
    threads: plan.train_threads
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/train_full/{plan.full_key}.log",
    shell:
        "{PY} train --spec {params.spec:q} --start {input.start} --shards {input.shards}"
        " --out {output} --scratch {params.scratch} --threads {TRAIN_THREADS} > {log} 2>&1"


rule prune:
    input:
        start=ancient(plan.model_dir(plan.full_key)),
        shards=all_shards(),
    output:
        directory(plan.model_dir(plan.pruned_key)),
    params:
        spec=json.dumps(plan.train_job_spec(plan.pruned_key)),
        scratch=plan.scratch_dir(plan.pruned_key),
    threads: plan.train_threads
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/prune/{plan.pruned_key}.log",
    shell:
        "{PY} prune --spec {params.spec:q} --start {input.start} --shards {input.shards}"
        " --out {output} --scratch {params.scratch} --threads {TRAIN_THREADS} > {log} 2>&1"


rule train_classifier:
    input:
        shards=all_shards(),
    output:
        directory(plan.classifier_dir()),
    params:
        spec=json.dumps({**plan.classifier_spec, "min_accuracy": plan.cfg["classifier"]["min_accuracy"]}),
    threads: plan.train_threads
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/train_classifier/{plan.classifier_key}.log",
    shell:
        "{PY} train-classifier --spec {params.spec:q} --shards {input.shards}"
        " --out {output} --threads {TRAIN_THREADS} > {log} 2>&1"
