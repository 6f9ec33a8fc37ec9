"""FID in clean-fid's "clean" mode: `features.inception.resize: clean` resizes with
clean-fid's resizer before the Inception network, and the Frechet distance is
clean-fid's. Nothing is downloaded: the network is a random Inception of the real
architecture (synthetic.write_random_inception)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic import write_random_inception

from diffcredit.config import ConfigError, validate
from diffcredit.extractors import get_extractor
from diffcredit.extractors.inception import network_inputs, resized_forward
from diffcredit.properties import compute_all, fid, frechet_distance

CPU = torch.device("cpu")
SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
EXT = get_extractor("inception")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_random_inception(tmp_path_factory.mktemp("inception") / "inception.pth")


@pytest.fixture(scope="module")
def nets(weights):
    return {mode: EXT.load({"weights_path": str(weights), "resize": mode}, None, CPU)
            for mode in ("torch_fidelity", "clean")}


def images(n, channels=3, size=32, seed=0):
    """Smooth random images (blurred noise), so the two resizers see real structure."""
    rng = np.random.default_rng(seed)
    x = rng.normal(128, 60, (n, channels, size // 4, size // 4))
    x = np.repeat(np.repeat(x, 4, axis=2), 4, axis=3) + rng.normal(0, 15, (n, channels, size, size))
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")  # clean-fid's sqrtm call
@pytest.mark.parametrize("n, d", [(400, 64), (60, 128), (200, 256)])
def test_the_frechet_distance_is_clean_fids(n, d):
    from cleanfid.fid import fid_from_feats
    from cleanfid.fid import frechet_distance as clean_frechet

    rng = np.random.default_rng(d)
    gen = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.1
    real = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.1 + 0.3
    ref = EXT.reference({"pool3": real})  # the reference statistics the workflow stores
    theirs = clean_frechet(gen.mean(0), np.cov(gen, rowvar=False), ref["mu"], ref["sigma"])
    assert fid({"pool3": gen}, ref, {}) == pytest.approx(theirs, rel=1e-6)
    assert frechet_distance(gen, ref) == pytest.approx(theirs, rel=1e-6)  # classifier_fd's
    assert fid_from_feats(gen, real) == pytest.approx(theirs, rel=1e-12)


@pytest.mark.parametrize("channels", [3, 1])
def test_clean_inputs_are_clean_fids_resizer_applied_by_hand(channels):
    from cleanfid.resize import make_resizer

    x = images(3, channels, size=24)
    got = network_inputs(x, "clean")
    resize = make_resizer("PIL", False, "bicubic", (299, 299))
    rgb = np.repeat(x, 3, axis=1) if channels == 1 else x
    want = np.stack([resize(img.transpose(1, 2, 0)) for img in rgb])  # uint8 HWC in, float32 HWC out
    assert got.dtype == torch.float32 and tuple(got.shape) == (3, 3, 299, 299)
    assert np.array_equal(got.numpy().transpose(0, 2, 3, 1), want)
    assert not np.array_equal(want, np.round(want))  # floats, not re-quantised
    # The default gives the network the uint8 images; it resizes them itself.
    plain = network_inputs(x, "torch_fidelity")
    assert plain.dtype == torch.uint8 and tuple(plain.shape) == (3, 3, 24, 24)
    with pytest.raises(ValueError, match="resize 'bogus'"):
        network_inputs(x, "bogus")


def test_the_resized_forward_is_torch_fidelitys_on_299_pixel_images(nets):
    """At 299x299 torch-fidelity's own resize leaves the images as they are: its forward
    and the one clean mode uses give the same features."""
    x = torch.from_numpy(images(2, size=299 + 1)[:, :, :299, :299].copy())
    net = nets["torch_fidelity"]
    with torch.no_grad():
        pool, logits = net(x)
        pool2, logits2 = resized_forward(net, x.float())
    assert torch.equal(pool, pool2) and torch.equal(logits, logits2)


def test_both_resizes_run_end_to_end_and_give_different_features(nets):
    gen, real = images(6, seed=1), images(6, seed=2)
    out = {}
    for mode, net in nets.items():
        f_gen, f_real = EXT.extract(net, gen, 4), EXT.extract(net, real, 4)
        assert f_gen["pool3"].shape == (6, 2048) and f_gen["logits"].shape == (6, 1008)
        assert np.isfinite(f_gen["pool3"]).all() and f_gen["pool3"].std() > 1e-3
        # fid on the new path only: a 2048-d Frechet distance costs half a minute of CPU here, and
        # test_cifar20 covers the default's end to end.
        names = ["inception_score", "precision", "recall"] + (["fid"] if mode == "clean" else [])
        values = compute_all(names, {"inception": f_gen}, {"inception": EXT.reference(f_real)}, {"isc_splits": 2})
        assert set(values) == set(names)
        assert all(np.isfinite(v) for v in values.values())
        out[mode] = f_gen["pool3"]
    # The resizers differ (TF1 bilinear inside the network vs PIL bicubic outside), so the features do.
    assert not np.allclose(out["clean"], out["torch_fidelity"], rtol=1e-3, atol=1e-4)
    # Batch size does not change the clean features.
    np.testing.assert_allclose(EXT.extract(nets["clean"], gen, 6)["pool3"], out["clean"], rtol=1e-5, atol=1e-6)


def test_clean_features_equal_clean_fids_own_pipeline(nets, tmp_path):
    """clean-fid's dataset (PNG files, its resizer, ToTensor) into the same network."""
    from cleanfid.fid import get_files_features

    x = images(4, seed=3)
    files = []
    for i, img in enumerate(x):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(img.transpose(1, 2, 0)).save(files[-1])
    net = nets["clean"]
    theirs = get_files_features(files, model=lambda b: resized_forward(net, b)[0], num_workers=0, batch_size=4,
                                device=CPU, mode="clean", verbose=False)
    ours = EXT.extract(net, x, 4)["pool3"]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_the_option_is_keyed_only_when_clean(weights):
    cfg = validate({"features": {"inception": {"weights": str(weights)}}}, SCHEMA)["features"]["inception"]
    assert cfg["resize"] == "torch_fidelity"
    default = EXT.resolve(cfg, {})
    assert "resize" not in default and set(default) == {"weights_sha256"}
    clean = EXT.resolve({"weights": str(weights), "resize": "clean"}, {})
    assert clean == {**default, "resize": "clean"}
    with pytest.raises(ValueError, match="resize 'bilinear'"):
        EXT.resolve({"weights": str(weights), "resize": "bilinear"}, {})


def test_the_schema_takes_the_option():
    assert validate({}, SCHEMA)["features"]["inception"] == {"weights": None, "resize": "torch_fidelity"}
    assert validate({"features": {"inception": {"resize": "clean"}}}, SCHEMA)["features"]["inception"]["resize"] == \
        "clean"
    with pytest.raises(ConfigError, match="features.inception.resize"):
        validate({"features": {"inception": {"resize": "bilinear"}}}, SCHEMA)
