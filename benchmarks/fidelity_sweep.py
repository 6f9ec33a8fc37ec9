"""Fidelity of sparsified fine-tuning against retraining, for a grid of sFT recipes.

Every setting is the workflow itself: the base config plus `fine_tune.training` and
`prune` overrides and a fidelity evaluation of sft. The retrained coalitions do not
depend on the sFT recipe, so they are trained once and shared by every setting;
each setting only fine-tunes, samples and scores its own coalitions.

    python benchmarks/fidelity_sweep.py --workdir W [--configfile configs/digits-eval.yaml]
        [--setting steps=400,lr=0.001 ...] [--cores 2]

Writes W/fidelity_sweep.csv: one row per setting and property (the fidelity.csv
columns of the sft row, plus the setting).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

DEFAULT_SETTINGS = ["steps=100", "steps=300", "steps=1000", "steps=300,ema_decay=0.99,lr=0.002"]
PRUNE_KEYS = {"ratio", "prune_steps"}


def parse(setting: str) -> dict:
    out = {}
    for part in setting.split(","):
        k, v = part.split("=")
        out[k] = yaml.safe_load(v)
    return out


def overlay(base: dict, setting: dict, budget: int) -> dict:
    ft = {k: v for k, v in setting.items() if k not in PRUNE_KEYS}
    cfg = {"fine_tune": {"training": {**base.get("fine_tune", {}).get("training", {}), **ft}},
           "evaluations": {"fidelity": {"strategies": ["sft"], "budget": budget}}}
    prune = {}
    if "ratio" in setting:
        prune["ratio"] = setting["ratio"]
    if "prune_steps" in setting:
        prune["training"] = {**base.get("prune", {}).get("training", {}), "steps": setting["prune_steps"]}
    if prune:
        cfg["prune"] = {**base.get("prune", {}), **prune}
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, type=Path)
    ap.add_argument("--configfile", nargs="*", default=[])
    ap.add_argument("--setting", nargs="*", default=DEFAULT_SETTINGS)
    ap.add_argument("--budget", type=int, default=32)
    ap.add_argument("--cores", default="2")
    args = ap.parse_args()
    from diffcredit.config import deep_update, load_yaml

    args.workdir.mkdir(parents=True, exist_ok=True)
    base = load_yaml(REPO / "config.yaml")
    for f in args.configfile:
        base = deep_update(base, load_yaml(f))
    rows = []
    for i, text in enumerate(args.setting):
        setting = parse(text)
        path = args.workdir / f"setting-{i}.yaml"
        path.write_text(yaml.safe_dump(overlay(base, setting, args.budget)))
        files = [str(Path(f).resolve()) for f in args.configfile] + [str(path)]
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(args.workdir),
               "--cores", args.cores, "--configfile", *files]
        print(f"[{i + 1}/{len(args.setting)}] {text}", flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        table = pd.read_csv(args.workdir / "results" / "evaluation" / "fidelity.csv")
        for r in table[table["strategy"] == "sft"].to_dict("records"):
            rows.append({"setting": text, **r})
        out = pd.DataFrame(rows)
        out.to_csv(args.workdir / "fidelity_sweep.csv", index=False)
        cols = ["setting", "property", "value_pearson", "value_rel_error", "coverage", "interval_scale", "cost_ratio"]
        print(out[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)


if __name__ == "__main__":
    main()
