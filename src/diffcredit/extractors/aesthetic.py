"""The LAION aesthetic predictor: a linear head on L2-normalised CLIP image
embeddings (OpenAI ViT-L/14 for the published head, `sa_0_4_vit_l_14_linear.pth`).
`features.aesthetic.head` is a local file holding the state dict of an
nn.Linear(d, 1) (keys weight (1, d) and bias (1,)); d must be the CLIP model's
embedding width, so a smaller CLIP with a matching head also works. Derived from
the clip extractor's embeddings: CLIP runs once for every property that uses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Extractor


class Aesthetic(Extractor):
    name = "aesthetic"
    stats_reference = True
    has_reference = False

    def resolve(self, cfg: dict, reference: dict, cache=None) -> dict:
        from ..artifacts import file_sha256

        head = cfg.get("head")
        if not head:
            raise ValueError("features.aesthetic.head is not set: give the local file of the linear head "
                             "(e.g. sa_0_4_vit_l_14_linear.pth of LAION's improved aesthetic predictor)")
        path = Path(head).expanduser()
        if not path.is_file():
            raise ValueError(f"features.aesthetic.head {path} does not exist")
        digest = cache.get_or_compute(path, lambda: file_sha256(path), tag="sha256") if cache else file_sha256(path)
        return {"head_sha256": digest}

    def runtime(self, cfg: dict) -> dict:
        return {"head_path": str(Path(cfg["head"]).expanduser().resolve())} if cfg.get("head") else {}

    def uses(self, spec: dict) -> str:
        return "clip"

    def load(self, spec: dict, network: str | None, device):
        import torch

        state = torch.load(spec["head_path"], map_location="cpu", weights_only=True)
        if isinstance(state, torch.nn.Module):
            state = state.state_dict()
        keys = {k.rsplit(".", 1)[-1]: v for k, v in state.items()}
        if "weight" not in keys or keys["weight"].ndim != 2 or keys["weight"].shape[0] != 1:
            raise ValueError(f"{spec['head_path']} is not the state dict of a linear head nn.Linear(d, 1) "
                             f"(keys {sorted(state)})")
        bias = keys.get("bias", torch.zeros(1))
        return {"weight": keys["weight"].double().numpy()[0], "bias": float(bias.reshape(-1)[0])}

    def derive(self, state, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        e = np.asarray(arrays["embeds"], dtype=np.float64)
        if e.shape[1] != len(state["weight"]):
            raise ValueError(f"the aesthetic head takes {len(state['weight'])}-d embeddings; the CLIP model gives "
                             f"{e.shape[1]}-d: use the CLIP model the head was trained on")
        e = e / np.linalg.norm(e, axis=1, keepdims=True).clip(1e-12)
        return {"scores": e @ state["weight"] + state["bias"]}
