"""Attribution baselines: gradient features against direct autograd, the kernel against
a direct inverse and the `traker` package, projections against exact features,
aggregation to contributors, and each family's trainable parameters."""

import numpy as np
import pytest
import torch

from diffcredit.attribution import get_method
from diffcredit.attribution.base import aggregate
from diffcredit.attribution.gradients import GradientFeaturizer, featurize, fixed_noise, timestep_grid
from diffcredit.attribution.linear import Kernel
from diffcredit.families import get_family
from diffcredit.families.base import Model, diffusion_loss
from diffcredit.families.ddpm import build_unet, scheduler_config, unet_config

DDPM = get_family("ddpm")
CPU = torch.device("cpu")
MODEL = {"block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4, "num_train_timesteps": 50}


def tiny_model(seed=0, **overrides):
    spec = {**MODEL, **overrides}
    return Model(build_unet(unet_config(spec, resolution=8, channels=1), seed), scheduler_config(spec))


def pixels(n, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 1, 8, 8), dtype=np.uint8))


def grad_spec(output="loss", normalize=False, k=5, dim=None, seeds=(0,)):
    return {"kind": "gradient", "output": output, "normalize": normalize, "residual": normalize, "timesteps": k,
            "projection_dim": dim, "projection_seed": 0, "seeds": list(seeds)}


def direct_features(model, x0, spec, seed):
    """Per item: K noised copies, a plain forward and backward per timestep."""
    sched = DDPM.noise_scheduler(model)
    ts = timestep_grid(DDPM.num_timesteps(model), spec["timesteps"])
    eps = fixed_noise(tuple(x0.shape[1:]), seed, ts)
    params = [p for p in model.net.parameters() if p.requires_grad]
    rows = []
    for x in x0:
        per_t = []
        for k, t in enumerate(ts):
            tt = torch.tensor([t])
            xt = sched.add_noise(x[None], eps[k:k + 1], tt)
            pred = model.net(xt, tt).sample
            if spec["output"] == "loss":
                f = diffusion_loss(pred, x[None], eps[k:k + 1], tt, sched).mean()
            elif spec["output"] == "sq_norm":
                f = pred.pow(2).mean()
            else:
                f = pred.mean()
            g = torch.cat([gi.flatten() for gi in torch.autograd.grad(f, params)])
            per_t.append(g / g.norm() if spec["normalize"] else g)
        rows.append(torch.stack(per_t).mean(0))
    return torch.stack(rows).numpy()


@pytest.mark.parametrize("output,normalize", [("loss", False), ("sq_norm", False), ("mean", True)])
def test_features_equal_direct_autograd(output, normalize):
    model = tiny_model()
    x0 = pixels(5).float() / 127.5 - 1
    spec = grad_spec(output, normalize)
    ours = featurize(DDPM, model, {"images": pixels(5)}, spec, CPU, batch_size=2, progress=False)["features"][0]
    np.testing.assert_allclose(ours, direct_features(model, x0, spec, 0), rtol=2e-4, atol=1e-6)


def test_noise_is_fixed_per_seed_and_timestep():
    a, b = fixed_noise((1, 4, 4), 0, [0, 10]), fixed_noise((1, 4, 4), 0, [10, 20])
    assert torch.equal(a[1], b[0])
    assert not torch.equal(fixed_noise((1, 4, 4), 1, [10])[0], b[0])


def test_timestep_grid_is_uniform_and_checked():
    assert timestep_grid(1000, 10) == [0, 100, 200, 300, 400, 500, 600, 700, 800, 900]
    with pytest.raises(ValueError, match="training timesteps"):
        timestep_grid(50, 100)


def test_kernel_dual_and_primal_equal_a_direct_inverse():
    rng = np.random.default_rng(0)
    for n, d in ((12, 30), (30, 12)):
        phi, t = rng.normal(size=(n, d)), rng.normal(size=(3, d))
        k = Kernel(phi, 0.1)
        assert k.dual == (n <= d)
        lam = 0.1 * (phi ** 2).sum() / n
        inv = np.linalg.inv(phi.T @ phi + lam * np.eye(d))
        np.testing.assert_allclose(k.scores(t), t @ inv @ phi.T, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(k.inverse_norms(), np.linalg.norm(inv @ phi.T, axis=0), rtol=1e-8)
        np.testing.assert_allclose(k.leverage(), np.diag(phi @ inv @ phi.T), rtol=1e-8)


def test_kernel_agrees_with_traker():
    from trak.score_computers import BasicScoreComputer  # traker, installed with the test extras

    rng = np.random.default_rng(1)
    phi, t = rng.normal(size=(40, 16)).astype(np.float32), rng.normal(size=(5, 16)).astype(np.float32)
    lam = 0.3
    absolute = lam * float((phi.astype(np.float64) ** 2).sum()) / 40  # ours is relative to the mean squared norm
    sc = BasicScoreComputer(torch.float32, CPU, lambda_reg=absolute)
    feats = torch.from_numpy(phi)
    x_xtx_inv = sc.get_x_xtx_inv(feats, sc.get_xtx(feats))
    theirs = (torch.from_numpy(t) @ x_xtx_inv.T).numpy()  # traker rescales (X^T X)^-1 by its mean |entry|
    ours = Kernel(phi, lam).scores(t)
    ratio = float((theirs * ours).sum() / (ours * ours).sum())
    np.testing.assert_allclose(theirs, ratio * ours, rtol=1e-3, atol=1e-4 * np.abs(theirs).max())


def test_projection_with_a_large_dimension_reproduces_exact_scores():
    model = tiny_model()
    data = {"images": pixels(24)}
    exact = featurize(DDPM, model, data, grad_spec("sq_norm"), CPU, 8, progress=False)["features"][0]
    dim = 8192
    assert exact.shape[1] > dim
    proj = featurize(DDPM, model, data, grad_spec("sq_norm", dim=dim), CPU, 8, progress=False)["features"][0]
    # Inner products kept (Johnson-Lindenstrauss): relative error ~ 1/sqrt(d).
    g, gp = exact @ exact.T, proj @ proj.T
    assert np.abs(gp - g).max() / np.abs(g).max() < 4 / np.sqrt(dim)
    t_exact = Kernel(exact[:20], 0.1).scores(exact[20:].mean(0, keepdims=True))[0]
    t_proj = Kernel(proj[:20], 0.1).scores(proj[20:].mean(0, keepdims=True))[0]
    assert np.corrcoef(t_exact, t_proj)[0, 1] > 0.98


def test_projection_is_seeded_and_chunking_free():
    model = tiny_model()
    data = {"images": pixels(6)}
    spec = grad_spec(dim=64)
    a = featurize(DDPM, model, data, spec, CPU, 6, progress=False)["features"]
    b = featurize(DDPM, model, data, spec, CPU, 4, progress=False)["features"]
    c = featurize(DDPM, model, data, {**spec, "projection_seed": 1}, CPU, 6, progress=False)["features"]
    # float32 sums regroup with the batch (more so on one thread): 1e-5 of the features' scale
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(a).max())
    assert not np.allclose(a, c)


def test_a_killed_featurization_resumes_from_its_chunks(tmp_path):
    model = tiny_model()
    data = {"images": pixels(6)}
    spec = grad_spec(dim=32)
    full = featurize(DDPM, model, data, spec, CPU, 2, progress=False, scratch=tmp_path)["features"]
    chunks = sorted(tmp_path.glob("*.npz"))
    assert len(chunks) == 3
    chunks[-1].unlink()  # killed before its last chunk
    np.savez(chunks[0], features=np.full((2, 32), 7.0, np.float32), residual=np.zeros(2, np.float32))
    again = featurize(DDPM, model, data, spec, CPU, 2, progress=False, scratch=tmp_path)["features"]
    assert np.all(again[0, :2] == 7.0)  # the kept chunk was read, not recomputed
    np.testing.assert_allclose(again[0, 2:], full[0, 2:], rtol=1e-6)


def test_trak_and_dtrak_scores_equal_a_direct_computation():
    model = tiny_model()
    sizes = [5, 3, 4]
    spec = grad_spec("loss", dim=48)  # more dimensions than items: the kernel is solved in its dual form
    train = [{"features": featurize(DDPM, model, {"images": pixels(n, seed=i)}, spec, CPU, 4,
                                    progress=False)["features"]} for i, n in enumerate(sizes)]
    target = {"features": featurize(DDPM, model, {"images": pixels(6, seed=9)}, spec, CPU, 4,
                                    progress=False)["features"]}
    phi = np.concatenate([t["features"][0] for t in train]).astype(np.float64)
    tgt = target["features"][0].astype(np.float64)
    lam = 0.05 * (phi ** 2).sum() / len(phi)
    inv = np.linalg.inv(phi.T @ phi + lam * np.eye(phi.shape[1]))
    tau = (tgt @ inv @ phi.T).mean(0)
    bounds = np.cumsum([0, *sizes])
    want = np.array([tau[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])])
    got = get_method("trak").scores(train, target, {"lambda": 0.05, "aggregate": "sum"})
    np.testing.assert_allclose(got[0], want, rtol=1e-6)
    rel = get_method("relative_if").scores(train, target, {"lambda": 0.05, "aggregate": "sum"})
    norms = np.linalg.norm(inv @ phi.T, axis=0)
    np.testing.assert_allclose(rel[0], [(tau / norms)[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])],
                               rtol=1e-6)


def test_das_scores_equal_a_direct_computation():
    model = tiny_model()
    sizes = [4, 3]
    spec = grad_spec("mean", normalize=True, dim=32)
    train = [featurize(DDPM, model, {"images": pixels(n, seed=i)}, spec, CPU, 4, progress=False, residual=True)
             for i, n in enumerate(sizes)]
    target = featurize(DDPM, model, {"images": pixels(5, seed=7)}, spec, CPU, 4, progress=False)
    phi = np.concatenate([t["features"][0] for t in train]).astype(np.float64)
    r = np.concatenate([t["residual"][0] for t in train]).astype(np.float64)
    lam = 0.1 * (phi ** 2).sum() / len(phi)
    inv = np.linalg.inv(phi.T @ phi + lam * np.eye(phi.shape[1]))
    h = np.diag(phi @ inv @ phi.T)
    a = (target["features"][0] @ inv @ phi.T) * (r / (1 - h))
    want = [np.mean(a[:, :4].sum(1) ** 2), np.mean(a[:, 4:].sum(1) ** 2)]
    got = get_method("das").scores(train, target, {"lambda": 0.1, "aggregate": "sum"})
    np.testing.assert_allclose(got[0], want, rtol=1e-5)
    # r_i: the root mean squared loss over the timesteps
    x = pixels(1, seed=0).float() / 127.5 - 1
    f = GradientFeaturizer(DDPM, model, spec, 0, CPU, (1, 8, 8))
    losses = [DDPM.loss(model, x, f.eps[k:k + 1], f.t[k:k + 1]) for k in range(len(f.t))]
    assert float(train[0]["residual"][0, 0]) == pytest.approx(float(torch.cat(losses).mean().sqrt()), rel=1e-5)


def test_duplicating_a_contributors_images_doubles_its_summed_score():
    model = tiny_model()
    a, b = pixels(4, seed=1), pixels(4, seed=2)
    target = featurize(DDPM, model, {"images": pixels(6, seed=3)}, grad_spec("sq_norm"), CPU, 8, progress=False)
    feats = lambda x: featurize(DDPM, model, {"images": x}, grad_spec("sq_norm"), CPU, 8, progress=False)  # noqa
    once = [feats(a), feats(b)]
    assert once[0]["features"].shape[2] > 12  # more dimensions than items
    twice = [feats(torch.cat([a, a])), feats(b)]
    # With a large lambda the kernel is a scaled identity, the same for both runs up to
    # that scale: the ratio of the two contributors' scores isolates the aggregation.
    spec = {"lambda": 1e6, "aggregate": "sum"}
    s1, s2 = get_method("dtrak").scores(once, target, spec)[0], get_method("dtrak").scores(twice, target, spec)[0]
    assert (s2[0] / s2[1]) / (s1[0] / s1[1]) == pytest.approx(2.0, rel=1e-4)
    m1 = get_method("dtrak").scores(once, target, {**spec, "aggregate": "mean"})[0]
    m2 = get_method("dtrak").scores(twice, target, {**spec, "aggregate": "mean"})[0]
    assert (m2[0] / m2[1]) / (m1[0] / m1[1]) == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_allclose(aggregate(np.array([1.0, 2.0, 3.0]), [2, 1], "sum"), [3.0, 3.0])


def test_pixel_similarity_against_a_direct_cosine():
    method = get_method("pixel_similarity")
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8) for n in (3, 5)]
    targets = rng.integers(0, 256, (4, 1, 8, 8), dtype=np.uint8)
    spec = method.featurizer({}, {})
    emb = lambda x: {"features": method.embed(x, spec, {}, CPU, 8)[None]}  # noqa: E731
    unit = lambda x: (v := x.reshape(len(x), -1) / 127.5 - 1) / np.linalg.norm(v, axis=1, keepdims=True)  # noqa
    for reduce in ("mean", "max"):
        got = method.scores([emb(i) for i in imgs], emb(targets), {"reduce": reduce})[0]
        sims = [unit(targets) @ unit(i).T for i in imgs]
        want = [(s.max(1) if reduce == "max" else s.mean(1)).mean() for s in sims]
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_sd_lora_features_cover_only_the_adapter(tmp_path):
    from tiny_models import sd_pipeline

    fam = get_family("sd_lora")
    spec = fam.resolve({"family": "sd_lora", "pretrained": str(sd_pipeline(tmp_path / "sd")), "prompt": "a painting",
                        "lora": {"rank": 2}, "seed": 0}, {"resolution": 32, "channels": 3, "captions": False})
    runtime = fam.runtime({"pretrained": str(tmp_path / "sd")})
    model = fam.init(spec, runtime)
    with torch.no_grad():  # a non-zero adapter, so that gradients reach every LoRA matrix
        for n, p in fam.trainable(model).items():
            p.normal_(0, 0.1)
    data = {"latents": torch.randn(3, 4, 4, 4), "text_index": torch.zeros(3, dtype=torch.long),
            "text": torch.randn(1, 16, 32)}
    out = featurize(fam, model, data, grad_spec("sq_norm", k=2), CPU, 2, progress=False)["features"]
    n_lora = sum(p.numel() for p in fam.trainable(model).values())
    assert out.shape == (1, 3, n_lora)
    assert n_lora < sum(p.numel() for p in model.net.parameters()) / 5
    assert np.abs(out).sum(axis=2).min() > 0


# ---------------------------------------------------------------- the plan


def attribution_plan(tmp_path, entries, **override):
    from conftest import REPO, TINY

    from diffcredit.config import deep_update, load_yaml
    from diffcredit.plan import Plan

    cfg = deep_update(deep_update(load_yaml(REPO / "config.yaml"), load_yaml(TINY)), override)
    cfg["attributions"] = entries
    cfg["results"] = str(tmp_path / "results")
    return Plan(cfg, REPO / "workflow" / "schemas" / "config.schema.yaml")


def test_methods_reading_the_same_features_share_them(tmp_path):
    plan = attribution_plan(tmp_path, [{"method": "trak"}, {"method": "relative_if"}, {"method": "dtrak"},
                                       {"method": "pixel_similarity"}])
    feats = plan.keys("attribution_features")
    assert len(feats) == 3 * (plan.n + 1)  # trak's features serve relative_if too
    assert [a.label for a in plan.attributions] == ["trak", "relative_if", "dtrak", "pixel_similarity-mean",
                                                    "pixel_similarity-max"]
    assert {a.key for a in plan.attributions} <= set(plan.nodes[plan.evaluations.get("lds", plan.summary_key)]
                                                     .parents["values"])
    # gradient features are of the full model; similarity needs no model
    for k in feats:
        node = plan.nodes[k]
        assert node.parents.get("model") == (plan.full_key if node.spec["kind"] == "gradient" else None)


def test_adding_a_contributor_adds_one_similarity_shard_and_the_targets(tmp_path):
    entries = [{"method": "pixel_similarity"}]
    before = attribution_plan(tmp_path, entries, data={"classes": [0, 1, 2, 3]})
    after = attribution_plan(tmp_path, entries, data={"classes": [0, 1, 2, 3, 4]})
    new = set(after.keys("attribution_features")) - set(before.keys("attribution_features"))
    roles = sorted(after.nodes[k].spec["role"] for k in new)
    assert roles == ["target", "train"]  # digit4's images, and the new full model's samples


@pytest.mark.parametrize("entry,message", [
    ({"method": "clip_similarity"}, "needs a CLIP model"),
    ({"method": "trak", "projection_dim": "small"}, "projection_dim 'small'"),
    ({"method": "dtrak", "timesteps": 1000}, "timesteps 1000 must lie in 1 .. 100"),
    ({"method": "trak", "lambda": -1}, "attributions.0.lambda"),
    ({"method": "tracin"}, "attributions.0.method"),
])
def test_bad_attribution_settings_are_refused_before_any_job(tmp_path, entry, message):
    from diffcredit.config import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        attribution_plan(tmp_path, [entry])


def test_a_repeated_attribution_is_refused(tmp_path):
    from diffcredit.config import ConfigError

    with pytest.raises(ConfigError, match=r"attributions\[1\] \(trak\) repeats"):
        attribution_plan(tmp_path, [{"method": "trak"}, {"method": "trak", "timesteps": 10}])
