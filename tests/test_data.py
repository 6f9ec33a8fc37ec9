"""Contributors, content hashes and shards."""

import os
import time

import numpy as np
import pytest
from PIL import Image

from diffcredit.data import DataError, HashCache, describe, load_digits_arrays, load_items, read_shards, write_shard
from diffcredit.io import CorruptArtifactError


def make_folders(root, n_per=3, names=("ann", "bob")):
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(n_per):
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_digits_by_class_and_split():
    by_class = describe({"source": "digits", "by": "class"}, HashCache(None))
    assert [c.name for c in by_class] == [f"digit{i}" for i in range(10)]
    assert sum(c.n_items for c in by_class) == 1797
    assert all(set(c.labels) == {int(c.name[-1])} for c in by_class)
    split = describe({"source": "digits", "by": "split", "groups": 3, "split_seed": 1}, HashCache(None))
    assert [c.name for c in split] == ["group0", "group1", "group2"]
    assert sum(c.n_items for c in split) == 1797
    # Stratified: every group holds every class.
    assert all(set(c.labels) == set(range(10)) for c in split)
    # A different seed gives different groups of the same sizes.
    other = describe({"source": "digits", "by": "split", "groups": 3, "split_seed": 2}, HashCache(None))
    assert [c.n_items for c in other] == [c.n_items for c in split]
    assert other[0].content_hash != split[0].content_hash


def test_digits_subsets_are_seeded_and_class_local():
    a = describe({"source": "digits", "classes": [0, 1, 2], "per_class": 20}, HashCache(None))
    b = describe({"source": "digits", "classes": [0, 1, 2, 3], "per_class": 20}, HashCache(None))
    assert [c.n_items for c in a] == [20, 20, 20]
    # Adding class 3 leaves the other contributors' content unchanged.
    assert [c.content_hash for c in a] == [c.content_hash for c in b[:3]]


def test_content_hash_ignores_names_order_and_mtime(tmp_path):
    root = make_folders(tmp_path / "a")
    first = {c.name: c.content_hash for c in describe({"source": "folder", "root": str(root)}, HashCache(None))}
    for i, p in enumerate(sorted((root / "ann").iterdir())):
        p.rename(root / "ann" / f"renamed-{9 - i}.png")
    later = time.time() + 50
    for p in root.rglob("*.png"):
        os.utime(p, (later, later))
    again = {c.name: c.content_hash for c in describe({"source": "folder", "root": str(root)}, HashCache(None))}
    assert again == first
    # Changing one pixel of one image changes only that contributor's hash.
    img = sorted((root / "bob").iterdir())[0]
    arr = np.asarray(Image.open(img)).copy()
    arr[0, 0, 0] ^= 1
    Image.fromarray(arr).save(img)
    changed = {c.name: c.content_hash for c in describe({"source": "folder", "root": str(root)}, HashCache(None))}
    assert changed["ann"] == first["ann"] and changed["bob"] != first["bob"]


def test_hash_cache_is_used_and_invalidated_by_mtime(tmp_path):
    root = make_folders(tmp_path / "a")
    cache_path = tmp_path / "cache.json"
    describe({"source": "folder", "root": str(root)}, HashCache(cache_path))
    cache = HashCache(cache_path)
    calls = []
    target = sorted((root / "ann").iterdir())[0]
    cache.get_or_compute(target, lambda: calls.append(1) or {"hash": "x"})
    assert calls == []  # served from the cache
    os.utime(target, (time.time() + 10, time.time() + 10))
    cache.get_or_compute(target, lambda: calls.append(1) or {"hash": "x"})
    assert calls == [1]


def test_folder_images_are_resized_and_canonically_ordered(tmp_path):
    root = make_folders(tmp_path / "a")
    spec = {"source": "folder", "root": str(root), "resolution": 8, "channels": 3}
    contributors = describe(spec, HashCache(None))
    images, labels = load_items(spec, contributors[0])
    assert images.shape == (3, 3, 8, 8) and images.dtype == np.uint8
    gray, _ = load_items({**spec, "channels": 1}, contributors[0])
    assert gray.shape == (3, 1, 8, 8)


def test_bad_folders_give_specific_errors(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        describe({"source": "folder", "root": str(tmp_path / "missing")}, HashCache(None))
    root = make_folders(tmp_path / "a", names=("only",))
    with pytest.raises(DataError, match="at least 2"):
        describe({"source": "folder", "root": str(root)}, HashCache(None))
    bad = make_folders(tmp_path / "b", names=("x y", "z"))
    with pytest.raises(DataError, match="name 'x y' is not allowed"):
        describe({"source": "folder", "root": str(bad)}, HashCache(None))


def test_shards_round_trip_and_detect_truncation(tmp_path):
    images, labels = load_digits_arrays()
    path = tmp_path / "s.npz"
    write_shard(path, images[:10], labels[:10])
    x, y = read_shards([path])
    assert np.array_equal(x, images[:10]) and np.array_equal(y, labels[:10])
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CorruptArtifactError, match="truncated or altered"):
        read_shards([path])


def test_conform_resizes_and_converts_reference_images():
    from diffcredit.data import conform

    images, _ = load_digits_arrays()
    x = images[:3]
    assert conform(x, 8, 1) is x  # already the data's shape
    rgb = conform(x, 16, 3)
    assert rgb.shape == (3, 3, 16, 16) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[:, 0], rgb[:, 1])  # grey stays grey
    back = conform(rgb, 8, 1)
    assert np.abs(back.astype(int) - x.astype(int)).mean() < 20  # down again: close to the original


def test_a_folder_reference_is_labelled_by_class_folder_and_conformed(tmp_path):
    from diffcredit.stages import reference_data

    images, labels = load_digits_arrays()
    for c in (3, 7):
        (tmp_path / "ref" / f"class{c}").mkdir(parents=True)
        for i, idx in enumerate(np.flatnonzero(labels == c)[:4]):
            Image.fromarray(images[idx, 0]).save(tmp_path / "ref" / f"class{c}" / f"{i}.png")
    out = tmp_path / "reference.npz"
    reference_data({"inputs": {}, "out": str(out), "reference": {"source": "folder", "root": str(tmp_path / "ref")},
                    "resolution": 16, "channels": 3, "cache": str(tmp_path / "cache.json")})
    x, y = read_shards([out])
    assert x.shape == (8, 3, 16, 16) and x.dtype == np.uint8
    assert sorted(y.tolist()) == [0] * 4 + [1] * 4
