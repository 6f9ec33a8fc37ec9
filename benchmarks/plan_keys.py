"""Every node key of the shipped configs, as {config: {stage: sorted keys}} JSON.

A refactor that must not invalidate any user's cache leaves this output unchanged:

    python benchmarks/plan_keys.py > before.json   # on the old commit
    python benchmarks/plan_keys.py > after.json    # on the new one
    diff before.json after.json

The presets plan against the tests' tiny stand-ins, the digits configs against
scikit-learn's digits. The stand-ins' random weights are part of the presets' keys: give
both runs the same folder (`python benchmarks/plan_keys.py STAND_INS`; made on first use).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

from diffcredit.config import deep_update, load_yaml  # noqa: E402

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def plan_of(cfg: dict):
    from diffcredit.plan import Plan

    return Plan(cfg, SCHEMA)


def keys_of(plan) -> dict:
    out: dict = {}
    for node in plan.nodes.values():
        out.setdefault(node.rule, []).append(node.key)
    return {rule: sorted(keys) for rule, keys in sorted(out.items())}


def stand_ins(root: Path) -> dict:
    """The presets' data and weights under `root`, made when missing."""
    import torch

    from synthetic import write_cifar100, write_random_inception
    from tiny_models import aesthetic_head, blip_model, clip_model, metadata_folder, sd_pipeline, vq_model

    paths = {name: root / name for name in ("faces", "art", "cifar", "vq", "blip", "pipe", "clip")}
    paths.update(head=root / "head.pth", inception=root / "inception.pth")
    if not root.is_dir():
        torch.manual_seed(0)
        people = {f"p{i:02d}": 2 for i in range(10)}
        meta = metadata_folder(paths["faces"], people, size=64, captions=False) / "metadata.csv"
        meta.write_text(meta.read_text().replace("artist", "identity"))
        metadata_folder(paths["art"], people, size=64, captions=False)
        write_cifar100(paths["cifar"], per_class=6)
        for name, make in (("vq", vq_model), ("blip", blip_model), ("pipe", sd_pipeline), ("clip", clip_model),
                           ("head", aesthetic_head), ("inception", write_random_inception)):
            make(paths[name])
    return {k: str(v) for k, v in paths.items()}


def configs(root: Path) -> dict:
    s = stand_ins(root)
    base = load_yaml(REPO / "config.yaml")
    out = {"default": base}
    for name in ("tiny", "digits-eval"):
        out[name] = deep_update(base, load_yaml(REPO / "configs" / f"{name}.yaml"))
    overrides = {
        "celebahq": {"data": {"root": s["faces"]}, "model": {"autoencoder": s["vq"]},
                     "features": {"blip": {"model": s["blip"]}}},
        "artbench": {"data": {"root": s["art"]}, "model": {"pretrained": s["pipe"]},
                     "features": {"clip": {"model": s["clip"]}, "aesthetic": {"head": s["head"]}}},
        "cifar20": {"data": {"root": s["cifar"], "classes": [40, 41, 55, 60]},
                    "features": {"inception": {"weights": s["inception"]}}},
    }
    for name, override in overrides.items():
        out[name] = deep_update(deep_update(base, load_yaml(REPO / "configs" / f"{name}.yaml")), override)
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp)
        result = {}
        for name, cfg in configs(root / "stand-ins").items():
            cfg = deep_update(cfg, {"results": str(Path(tmp) / "results" / name)})
            result[name] = keys_of(plan_of(cfg))
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
