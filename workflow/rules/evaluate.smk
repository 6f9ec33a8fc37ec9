# Generate from every coalition model, score the samples, estimate the values.


def _samples_input(wc):
    if plan.generate_key(wc.mkey) != wc.gkey:
        raise WorkflowError(f"samples {wc.gkey} of model {wc.mkey} are not in this plan")
    return ancient(plan.model_dir(wc.mkey))


rule generate:
    input:
        model=_samples_input,
    output:
        f"{R}/coalitions/{{mkey}}/samples/{{gkey}}.npz",
    params:
        spec=json.dumps(plan.cfg["generate"]),
    threads: plan.threads
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/generate/{{mkey}}-{{gkey}}.log",
    shell:
        "{PY} generate --spec {params.spec:q} --model {input.model} --out {output}"
        " --threads {THREADS} > {log} 2>&1"


def _score_inputs(wc):
    if plan.score_key(wc.mkey, wc.prop) != wc.skey:
        raise WorkflowError(f"score {wc.prop}-{wc.skey} of model {wc.mkey} is not in this plan")
    return {"samples": ancient(plan.samples_path(wc.mkey)), "classifier": ancient(plan.classifier_dir())}


rule score:
    input:
        unpack(_score_inputs),
    output:
        f"{R}/coalitions/{{mkey}}/scores/{{prop}}-{{skey}}.json",
    threads: plan.threads
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/score/{{mkey}}-{{prop}}-{{skey}}.log",
    shell:
        """{PY} score --spec '{{"property": "{wildcards.prop}"}}' --samples {input.samples}"""
        " --classifier {input.classifier} --out {output} --threads {THREADS} > {log} 2>&1"


def _estimate_inputs(wc):
    est = plan.estimator(wc.ekey)
    inputs = {"design": ancient(plan.design_path(est))}
    for name, paths in plan.score_paths(est).items():
        inputs[name] = ancient(paths) if isinstance(paths, str) else [ancient(p) for p in paths]
    return inputs


rule shapley_estimate:
    input:
        unpack(_estimate_inputs),
    output:
        directory(f"{R}/values/{{ekey}}"),
    params:
        spec=lambda wc: plan.estimate_spec(plan.estimator(wc.ekey)),
    conda:
        "../../envs/estimate.yaml"
    log:
        f"{R}/logs/shapley_estimate/{{ekey}}.log",
    script:
        "../scripts/estimate.py"
