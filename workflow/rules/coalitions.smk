# Coalition designs and the estimates made from their scores.


rule coalition_sample:
    output:
        f"{R}/designs/{{key}}.parquet",
    params:
        job=node_job("coalition_sample"),
        py=PY,
    conda:
        "../../envs/estimate.yaml"
    log:
        f"{R}/logs/coalition_sample/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"


rule shapley_estimate:
    input:
        unpack(node_inputs("shapley_estimate")),
    output:
        report(directory(f"{R}/values/{{key}}"), patterns=["{name}.png"], caption="../report/values.rst",
               category="Values"),
    params:
        job=node_job("shapley_estimate"),
        py=PY,
    conda:
        "../../envs/estimate.yaml"
    log:
        f"{R}/logs/shapley_estimate/{{key}}.log",
    shell:
        "{params.py} job {params.job:q} > {log:q} 2>&1"
