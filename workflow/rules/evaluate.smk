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
        " --threads {threads} > {log} 2>&1"


def _score_property(wc):
    model_key, prop = plan.score_index[wc.skey]
    if model_key != wc.mkey:
        raise WorkflowError(f"score {wc.skey} does not belong to model {wc.mkey}")
    return prop


rule score:
    input:
        samples=lambda wc: ancient(plan.samples_path(wc.mkey)),
        classifier=ancient(plan.classifier_dir()),
    output:
        f"{R}/coalitions/{{mkey}}/scores/{{skey}}.json",
    params:
        spec=lambda wc: json.dumps({"property": _score_property(wc)}),
    threads: plan.threads
    conda:
        "../../envs/torch.yaml"
    log:
        f"{R}/logs/score/{{mkey}}-{{skey}}.log",
    shell:
        "{PY} score --spec {params.spec:q} --samples {input.samples} --classifier {input.classifier}"
        " --out {output} --threads {threads} > {log} 2>&1"


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
