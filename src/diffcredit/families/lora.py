"""LoRA adapters on a diffusers UNet or transformer: which modules take one, the peft config, the
adapter's state, and rank pruning (see sd_lora.py for how the family uses them)."""

from __future__ import annotations


def denoiser_inventory(config: dict, cls: str = "UNet2DConditionModel") -> dict:
    """Names of the Linear/Conv modules of the diffusers model `cls` and its parameter
    count, from its config alone (built on the meta device: no weights are read)."""
    import diffusers
    import torch

    cfg = {k: v for k, v in config.items() if not k.startswith("_")}
    with torch.device("meta"):
        unet = getattr(diffusers, cls).from_config(cfg)
    sizes = {}  # module -> in + out features (a rank-r LoRA adds r * (in + out) parameters)
    for n, m in unet.named_modules():
        if isinstance(m, torch.nn.Linear):
            sizes[n] = m.in_features + m.out_features
        elif isinstance(m, torch.nn.Conv2d):
            sizes[n] = m.in_channels * m.kernel_size[0] * m.kernel_size[1] + m.out_channels
    return {"modules": list(sizes), "sizes": sizes, "n_parameters": sum(p.numel() for p in unet.parameters())}


def matches(target: str, name: str) -> bool:
    """peft's rule for a target in a list: the module's name or its last dotted parts."""
    return name == target or name.endswith("." + target)


def lora_config(spec: dict, ranks: dict | None = None):
    """The peft LoraConfig of `spec["lora"]`; `ranks` (module -> r) after pruning."""
    from peft import LoraConfig

    lora = spec["lora"]
    r, alpha = lora["rank"], lora["alpha"]
    if ranks is None:
        return LoraConfig(r=r, lora_alpha=alpha, target_modules=list(lora["targets"]),
                          init_lora_weights="gaussian", lora_dropout=0.0)
    kept = {m: k for m, k in ranks.items() if k > 0}
    return LoraConfig(r=r, lora_alpha=alpha, target_modules=sorted(kept), init_lora_weights="gaussian",
                      lora_dropout=0.0, rank_pattern=kept, alpha_pattern={m: alpha * k / r for m, k in kept.items()})


def float_adapter(net) -> None:
    """The adapter's parameters in float32 (peft makes them in the base weights' dtype)."""
    import torch

    for name, p in net.named_parameters():
        if "lora_" in name and p.dtype != torch.float32:
            p.data = p.data.float()


def adapter_state(unet) -> dict:
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(unet).items()}


def set_adapter(unet, config, state: dict) -> None:
    """Replace the UNet's adapter with `config` and its weights `state` (checked)."""
    from peft.utils import set_peft_model_state_dict

    if getattr(unet, "_hf_peft_config_loaded", False) and "default" in unet.peft_config:
        unet.delete_adapters("default")
    unet.add_adapter(config)
    float_adapter(unet)
    result = set_peft_model_state_dict(unet, state)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing = [k for k in (getattr(result, "missing_keys", []) or []) if "lora_" in k]
    if unexpected or missing:
        raise RuntimeError(f"adapter weights do not fit the adapter: unexpected {unexpected[:3]}, "
                           f"missing {missing[:3]}")


def rank_components(state: dict) -> list[tuple[float, str, int, int]]:
    """(score, module, component, parameters) of every rank component of an adapter state."""
    out = []
    for key, a in state.items():
        if not key.endswith("lora_A.weight"):
            continue
        module = key[: -len(".lora_A.weight")]
        b = state[f"{module}.lora_B.weight"]
        score = (b.float().norm(dim=0) * a.float().norm(dim=1)).tolist()
        for k, s in enumerate(score):
            out.append((float(s), module, k, a.shape[1] + b.shape[0]))
    return out


def prune_ranks(state: dict, keep: float, importance: str = "magnitude", seed: int = 0) -> tuple[dict, dict]:
    """Drop the lowest-scored rank components until `keep` of the adapter's parameters
    are left; returns (module -> kept rank, pruned state)."""
    import torch

    comps = rank_components(state)
    if importance == "random":
        g = torch.Generator().manual_seed(seed)
        scores = torch.rand(len(comps), generator=g).tolist()
        comps = [(s, m, k, p) for s, (_, m, k, p) in zip(scores, comps)]
    elif importance != "magnitude":
        raise ValueError(f"unknown prune.importance {importance!r}: use 'magnitude' or 'random'")
    total = sum(p for *_, p in comps)
    budget = keep * total
    order = sorted(comps, key=lambda c: (-c[0], c[1], c[2]))
    kept: dict[str, list[int]] = {}
    used = 0
    for _, module, k, p in order:  # the best components, as many as fit
        if used + p > budget + 1e-9:
            break
        kept.setdefault(module, []).append(k)
        used += p
    ranks = {module: 0 for _, module, _, _ in comps}
    new = {}
    for module, ks in kept.items():
        idx = torch.tensor(sorted(ks))
        ranks[module] = len(ks)
        new[f"{module}.lora_A.weight"] = state[f"{module}.lora_A.weight"][idx].clone()
        new[f"{module}.lora_B.weight"] = state[f"{module}.lora_B.weight"][:, idx].clone()
    return ranks, new
