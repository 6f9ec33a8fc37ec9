# The untrained, full and pruned models, every coalition's model, and the
# classifier feature extractor.


rule init_model:
    output:
        directory(f"{R}/models/init/{{key}}"),
    params:
        job=node_job("init_model"),
        py=PY,
    resources:
        mem_mb=mem_mb("init_model"),
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/init_model/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"


rule train_full:
    input:
        unpack(node_inputs("train_full")),
    output:
        directory(f"{R}/models/full/{{key}}"),
    params:
        job=node_job("train_full"),
        py=PY,
    threads: plan.train_threads
    resources:
        mem_mb=mem_mb("train_full"),
        gpu=gpu("train_full"),
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/train_full/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"


rule prune:
    input:
        unpack(node_inputs("prune")),
    output:
        directory(f"{R}/models/pruned/{{key}}"),
    params:
        job=node_job("prune"),
        py=PY,
    threads: plan.train_threads
    resources:
        mem_mb=mem_mb("prune"),
        gpu=gpu("prune"),
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/prune/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"


rule fine_tune:
    input:
        unpack(node_inputs("fine_tune")),
    output:
        directory(f"{R}/coalitions/{{key}}/model"),
    params:
        job=node_job("fine_tune"),
        py=PY,
    threads: plan.threads
    resources:
        mem_mb=mem_mb("fine_tune"),
        gpu=gpu("fine_tune"),
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/fine_tune/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"


rule train_classifier:
    input:
        unpack(node_inputs("train_classifier")),
    output:
        directory(f"{R}/models/classifier/{{key}}"),
    params:
        job=node_job("train_classifier"),
        py=PY,
    threads: plan.train_threads
    resources:
        mem_mb=mem_mb("train_classifier"),
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/train_classifier/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"
