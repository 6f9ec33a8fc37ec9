"""Contributors, content hashes and shards."""

import hashlib
import os
import time

import numpy as np
import pytest
from PIL import Image

from diffcredit.data import (
    DataError,
    HashCache,
    combine_hashes,
    describe,
    load_digits_arrays,
    load_items,
    read_shards,
    write_shard,
)
from diffcredit.artifacts import CorruptArtifactError
from diffcredit.data.images import FACTS_TAG


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


def test_digits_are_scikit_learns_load_digits(tmp_path, monkeypatch):
    from sklearn.datasets import load_digits

    from diffcredit.data.sources import digits

    bunch = load_digits()
    # Pixel counts 0..16 scaled to 0..255, rounded; one channel; scikit-learn's order.
    expected = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 1, 8, 8)
    images, labels = load_digits_arrays()
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    assert np.array_equal(images, expected) and np.array_equal(labels, bunch.target)
    assert images.min() == 0 and images.max() == 255
    spec = {"source": "digits"}
    contributors = describe(spec, HashCache(tmp_path / "cache.json"))
    assert sorted(i for c in contributors for i in c.sources) == list(range(len(expected)))
    for c in contributors:
        x, y = load_items(spec, c)
        rows = np.asarray(c.sources)[np.argsort(c.item_hashes, kind="stable")]
        assert np.array_equal(x, expected[rows]) and np.array_equal(y, bunch.target[rows])
    # Describing again reads the hashes from the cache, without loading the digits.
    monkeypatch.setattr(digits, "load_digits_arrays", lambda: pytest.fail("the digits were loaded again"))
    again = describe(spec, HashCache(tmp_path / "cache.json"))
    assert [c.content_hash for c in again] == [c.content_hash for c in contributors]


def test_every_registered_source_answers_the_interface(tmp_path):
    import importlib

    from synthetic import write_cifar100

    from diffcredit.data import describe_reference, image_shape
    from diffcredit.data.sources import SOURCES, get_source, source_names
    from diffcredit.data.sources.base import Source

    examples = {
        "digits": {"source": "digits", "classes": [0, 1], "per_class": 3},
        "cifar100": {"source": "cifar100", "root": str(write_cifar100(tmp_path / "cifar", per_class=2,
                                                                        classes=range(40, 45))),
                     "classes": [40, 41]},
        "folder": {"source": "folder", "root": str(make_folders(tmp_path / "folders", n_per=2)),
                   "resolution": 8, "channels": 3},
    }
    assert set(examples) == set(source_names()), "give every registered source an example spec here"
    for name in source_names():
        module, cls = SOURCES.entries[name].split(":")
        assert isinstance(getattr(importlib.import_module(module), cls)(), Source)
        source = get_source(name)
        for method in ("describe", "describe_reference", "image_shape", "load_items"):
            assert getattr(type(source), method) is not getattr(Source, method), f"{name} lacks {method}"
        spec = examples[name]
        shape = image_shape(spec)
        assert set(shape) == {"resolution", "channels"}
        contributors = describe(spec, HashCache(None))
        images, labels = load_items(spec, contributors[0])
        assert images.dtype == np.uint8 and labels.dtype == np.int64
        assert images.shape == (contributors[0].n_items, shape["channels"], shape["resolution"], shape["resolution"])
        groups, labelled = describe_reference(spec, HashCache(None))
        assert groups and isinstance(labelled, bool)


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
    cache.get_or_compute(target, lambda: calls.append(1) or {"hash": "x"}, tag=FACTS_TAG)
    assert calls == []  # served from the cache
    cache.get_or_compute(target, lambda: calls.append(0) or {"hash": "x"}, tag="image")
    assert calls == [0]  # facts of another version are computed again
    cache.get_or_compute(target, lambda: calls.append(2) or {"hash": "x"})
    assert calls == [0, 2]  # a result of another kind is not served
    os.utime(target, (time.time() + 10, time.time() + 10))
    cache.get_or_compute(target, lambda: calls.append(3) or {"hash": "x"})
    assert calls == [0, 2, 3]


def test_an_image_replaced_with_its_size_and_mtime_kept_is_hashed_again(tmp_path):
    """cp -p, rsync -t or a restore can put other pixels in a file of the same size and
    mtime: the cache must not serve the old hash (that would key new data as old)."""
    import shutil

    root = make_folders(tmp_path / "a")
    spec = {"source": "folder", "root": str(root)}
    cache_path = tmp_path / "cache.json"
    cache = HashCache(cache_path)
    before = {c.name: c.content_hash for c in describe(spec, cache)}
    cache.flush()
    target, other = root / "ann" / "0.png", tmp_path / "other.png"
    Image.fromarray(np.full((12, 10, 3), 9, np.uint8)).save(other)
    pad = target.stat().st_size - other.stat().st_size  # same size: pad the PNG after its end chunk
    assert pad > 0
    other.write_bytes(other.read_bytes() + b"\0" * pad)
    st = target.stat()
    shutil.copyfile(other, target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    after = {c.name: c.content_hash for c in describe(spec, HashCache(cache_path))}
    assert after["ann"] != before["ann"] and after["bob"] == before["bob"]
    cache_path.write_text('{"truncated": ')  # a cache cut short (a kill, a full disk) is rebuilt
    assert {c.name: c.content_hash for c in describe(spec, HashCache(cache_path))} == after


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
    bad = make_folders(tmp_path / "b", names=("x  y", "z"))
    with pytest.raises(DataError, match="name 'x  y' is not allowed"):
        describe({"source": "folder", "root": str(bad)}, HashCache(None))


def test_names_people_write_are_contributor_names(tmp_path):
    """Spaces between words, accents, apostrophes and other scripts name contributors
    (artists' folders); a name decomposed as macOS stores it matches the composed one a
    config names; what cannot be a name is refused."""
    import unicodedata

    names = ("Claude Monet", unicodedata.normalize("NFD", "Zoë"), "O'Keeffe", "葛飾北斎", "C.-M. (1840)")
    root = make_folders(tmp_path / "a", names=names)
    found = describe({"source": "folder", "root": str(root)}, HashCache(None))
    assert sorted(c.name for c in found) == sorted(unicodedata.normalize("NFC", n) for n in names)
    assert "Zoë" in [c.name for c in found]
    for bad in (" lead", "trail ", "tab\tname", "_under", "semi;colon"):
        folders = make_folders(tmp_path / f"b{len(bad)}{bad.strip()[:2]}", names=(bad, "ok"))
        with pytest.raises(DataError, match="is not allowed: use letters and digits"):
            describe({"source": "folder", "root": str(folders)}, HashCache(None))


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
    try:
        from diffcredit.stages import reference_data
    except ImportError:  # the stages as a package
        from diffcredit.stages.data import reference_data

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


# ---------------------------------------------------------------- image modes


def folder_of(tmp_path, images: dict, n_other=1, **spec):
    """A folder dataset: contributor 'x' holds `images` (file name -> PIL image),
    contributor 'other' holds opaque random RGB images."""
    root = tmp_path / "data"
    (root / "x").mkdir(parents=True)
    for name, im in images.items():
        im.save(root / "x" / name)
    make_folders(root, n_per=n_other, names=("other",))
    return {"source": "folder", "root": str(root), **spec}


def decoded(spec):
    """The items of contributor 'x', decoded."""
    x = {c.name: c for c in describe(spec, HashCache(None))}["x"]
    return load_items(spec, x)[0]


def over(rgb, alpha, background):
    """Alpha compositing of uint8 colours over a background colour, rounded."""
    a = alpha[..., None].astype(float) / 255
    return np.rint(rgb * a + np.asarray(background, float) * (1 - a)).astype(np.uint8)


def test_16_bit_grayscale_is_scaled_by_its_bit_depth(tmp_path):
    values = np.linspace(0, 65535, 64).round().astype(np.uint16).reshape(8, 8)
    spec = folder_of(tmp_path, {"g.png": Image.fromarray(values)}, resolution=8, channels=1)
    assert Image.open(tmp_path / "data" / "x" / "g.png").mode == "I;16"
    expected = np.floor(values.astype(float) / 257 + 0.5).astype(np.uint8)
    assert np.array_equal(decoded(spec)[0, 0], expected)
    rgb = decoded({**spec, "channels": 3})[0]
    assert all(np.array_equal(rgb[i], expected) for i in range(3))
    # The hash covers the scaling, not only the bytes (which a clipping decoder read as white).
    x = {c.name: c for c in describe(spec, HashCache(None))}["x"]
    file_hash = hashlib.sha256((tmp_path / "data" / "x" / "g.png").read_bytes()).hexdigest()
    assert x.content_hash != combine_hashes([file_hash])
    # A transparent 16-bit value is composited like any other transparent pixel.
    Image.fromarray(values).save(tmp_path / "data" / "x" / "g.png", transparency=int(values[0, 1]))
    expected[0, 1] = 0
    assert np.array_equal(decoded({**spec, "background": 0})[0, 0], expected)


def test_palette_images_decode_through_their_palette_and_transparent_entry(tmp_path):
    rng = np.random.default_rng(3)
    pal = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).quantize(16)
    index, palette = np.asarray(pal), np.asarray(pal.getpalette()).reshape(-1, 3)[:16]
    clear = int(index[0, 0])
    images = {"p.png": pal}
    spec = folder_of(tmp_path, images, resolution=8, channels=3)
    assert np.array_equal(decoded(spec)[0].transpose(1, 2, 0), palette[index])
    # The same palette image with one entry marked transparent, over black.
    pal.save(tmp_path / "data" / "x" / "p.png", transparency=clear)
    alpha = np.where(index == clear, 0, 255)
    got = decoded({**spec, "background": 0})[0].transpose(1, 2, 0)
    assert np.array_equal(got, over(palette[index], alpha, (0, 0, 0)))
    assert (got[index == clear] == 0).all() and (palette[clear] != 0).any()


def test_transparent_images_are_composited_over_the_background(tmp_path):
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    alpha = rng.choice(np.array([0, 1, 77, 128, 254, 255], dtype=np.uint8), (8, 8))
    spec = folder_of(tmp_path, {"a.png": Image.fromarray(np.dstack([rgb, alpha]))}, resolution=8, channels=3)
    white = decoded(spec)[0].transpose(1, 2, 0)  # unset: white
    assert np.array_equal(white, over(rgb, alpha, (255, 255, 255)))
    tinted = decoded({**spec, "background": [10, 200, 30]})[0].transpose(1, 2, 0)
    assert np.array_equal(tinted, over(rgb, alpha, (10, 200, 30)))
    # Grayscale: the luma of the composited colour.
    gray = decoded({**spec, "channels": 1, "background": 40})[0, 0]
    mixed = over(rgb, alpha, (40, 40, 40)).astype(int)
    luma = (mixed[..., 0] * 299 + mixed[..., 1] * 587 + mixed[..., 2] * 114) / 1000
    assert np.abs(gray.astype(int) - luma).max() <= 1


def test_grayscale_with_alpha_is_composited_over_a_grey_level(tmp_path):
    rng = np.random.default_rng(5)
    v = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    a = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    spec = folder_of(tmp_path, {"la.png": Image.fromarray(np.dstack([v, a]))}, resolution=8, channels=1)
    assert Image.open(tmp_path / "data" / "x" / "la.png").mode == "LA"
    expected = np.rint((v * (a / 255)) + 100 * (1 - a / 255)).astype(np.uint8)
    assert np.array_equal(decoded({**spec, "background": 100})[0, 0], expected)


def test_the_background_changes_only_the_hashes_of_contributors_with_transparency(tmp_path, monkeypatch):
    from diffcredit.data.sources import folder

    rng = np.random.default_rng(6)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    half = np.dstack([rgb, np.full((8, 8), 128, np.uint8)])
    opaque = np.dstack([rgb[::-1], np.full((8, 8), 255, np.uint8)])
    root = tmp_path / "data"
    for name, arr in {"clear": half, "solid": opaque, "plain": rgb}.items():
        (root / name).mkdir(parents=True)
        Image.fromarray(arr).save(root / name / "0.png")
    spec = {"source": "folder", "root": str(root), "resolution": 8, "channels": 3}
    cache_path = tmp_path / "cache.json"

    def hashes(**more):
        return {c.name: c.content_hash for c in describe({**spec, **more}, HashCache(cache_path))}

    white = hashes()
    assert hashes(background=255) == hashes(background=[255, 255, 255]) == white
    # Transparency is cached with the file's hash: a new background reads no image.
    monkeypatch.setattr(folder, "image_facts", lambda path: pytest.fail(f"{path} was read again"))
    black = hashes(background=0)
    assert black["clear"] != white["clear"]
    # Opaque contributors (an RGBA image whose alpha is all 255 included) keep the
    # hash of their files' bytes, the hash they had before backgrounds existed.
    for name in ("solid", "plain"):
        file_hash = hashlib.sha256((root / name / "0.png").read_bytes()).hexdigest()
        assert black[name] == white[name] == combine_hashes([file_hash])


def test_modes_without_a_fixed_scale_are_refused_when_describing(tmp_path):
    from diffcredit.data.images import resized as _resized

    # Pillow reads files by content, so a TIFF named .png is read as what it is.
    floats = Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8))
    spec = folder_of(tmp_path, {}, resolution=8)
    floats.save(tmp_path / "data" / "x" / "f.png", format="TIFF")
    with pytest.raises(DataError, match=r"contributor 'x': image .*f\.png: its pixels are 32-bit floats"):
        describe(spec, HashCache(None))
    (tmp_path / "data" / "x" / "f.png").unlink()
    wide = np.array([[0, 65535], [257, 70000]], dtype=np.int32)
    Image.fromarray(wide).save(tmp_path / "data" / "x" / "i.png", format="TIFF")
    with pytest.raises(DataError, match=r"image .*i\.png: its 32-bit integer pixels range over 0\.\.70000"):
        describe(spec, HashCache(None))
    # 32-bit integers within 0..65535 are read as 16-bit values.
    wide[1, 1] = 514
    assert np.array_equal(_resized(Image.fromarray(wide), 2, 1)[0], [[0, 255], [1, 2]])
    with pytest.raises(DataError, match="32-bit floats"):
        _resized(floats, 8, 1)


# ---------------------------------------------------------------- duplicates


def test_identical_images_are_refused_within_and_across_contributors(tmp_path):
    root = make_folders(tmp_path / "a", names=("ann", "bob", "cy"))
    spec = {"source": "folder", "root": str(root)}
    (root / "bob" / "copy.png").write_bytes((root / "ann" / "1.png").read_bytes())
    with pytest.raises(DataError, match="1 image") as info:
        describe(spec, HashCache(None))
    message = str(info.value)
    assert f"'ann' {root / 'ann' / '1.png'} = 'bob' {root / 'bob' / 'copy.png'}" in message
    assert "data.allow_duplicates: true" in message
    (root / "bob" / "copy.png").unlink()
    (root / "cy" / "again.png").write_bytes((root / "cy" / "0.png").read_bytes())
    with pytest.raises(DataError, match=f"'cy' {root / 'cy' / '0.png'} = 'cy' {root / 'cy' / 'again.png'}"):
        describe(spec, HashCache(None))
    kept = describe({**spec, "allow_duplicates": True}, HashCache(None))
    assert [c.n_items for c in kept] == [3, 3, 4]


def test_identical_items_of_a_built_in_dataset_are_named_by_index(monkeypatch):
    from diffcredit.data.sources import digits

    images, labels = load_digits_arrays()
    # The digits hold no two identical items: the default config describes.
    pairs = images.reshape(len(images), -1)
    assert len(np.unique(np.column_stack([pairs, labels]), axis=0)) == len(images)
    copied = images.copy()
    copied[100] = images[5]
    relabelled = labels.copy()
    relabelled[100] = labels[5]
    monkeypatch.setattr(digits, "load_digits_arrays", lambda: (copied, relabelled))
    with pytest.raises(DataError, match=f"'digit{labels[5]}' item 5 = 'digit{labels[5]}' item 100"):
        describe({"source": "digits"}, HashCache(None))
    # The same pixels under another label are another item.
    relabelled[100] = (labels[5] + 1) % 10
    assert sum(c.n_items for c in describe({"source": "digits"}, HashCache(None))) == len(images)


# ---------------------------------------------------------------- impossible splits


def test_splits_that_would_leave_a_contributor_empty_are_refused():
    _, labels = load_digits_arrays()
    largest, smallest = np.bincount(labels).max(), np.bincount(labels).min()
    # by: split fills group g from part g of every class: empty once groups exceeds the largest class.
    groups = describe({"source": "digits", "by": "split", "groups": int(largest)}, HashCache(None))
    assert len(groups) == largest and min(c.n_items for c in groups) >= 1
    with pytest.raises(DataError, match=rf"groups: {largest + 1} .* has {largest} .* at most {largest}"):
        describe({"source": "digits", "by": "split", "groups": int(largest) + 1}, HashCache(None))
    with pytest.raises(DataError, match=r"groups: 300 .*at most"):
        describe({"source": "digits", "by": "split", "groups": 300}, HashCache(None))
    # by: class splits every class: the smallest class bounds the groups.
    split = describe({"source": "digits", "by": "class", "groups": int(smallest)}, HashCache(None))
    assert len(split) == 10 * smallest and min(c.n_items for c in split) == 1
    with pytest.raises(DataError, match=rf"1 class\(es\) have fewer .*: digit\d has {smallest}"):
        describe({"source": "digits", "by": "class", "groups": int(smallest) + 1}, HashCache(None))
    small = {"source": "digits", "by": "class", "classes": [0, 1], "per_class": 5}
    assert len(describe({**small, "groups": 5}, HashCache(None))) == 10
    with pytest.raises(DataError, match=r"digit0 has 5, digit1 has 5; lower data.groups to at most 5"):
        describe({**small, "groups": 6}, HashCache(None))
    with pytest.raises(DataError, match=r"the largest, digit\d, has 5 .*at most 5"):
        describe({**small, "by": "split", "groups": 6}, HashCache(None))


def test_every_still_image_format_pillow_reads_is_a_training_image_and_an_animation_is_refused(tmp_path):
    """PNG beside WebP, BMP, GIF and TIFF: all five are read; an animated GIF is refused with its name."""
    from PIL import Image

    from diffcredit.data import DataError, HashCache, describe

    rng = np.random.default_rng(0)
    for who in ("a", "b"):
        (tmp_path / who).mkdir()
        for i, ext in enumerate(("png", "webp", "bmp", "gif", "tif")):
            img = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8))
            img.save(tmp_path / who / f"{i}.{ext}", **({"lossless": True} if ext == "webp" else {}))
    spec = {"source": "folder", "root": str(tmp_path), "resolution": 8, "channels": 1, "background": 255}
    contributors = describe(spec, HashCache(tmp_path / "cache.json"))
    assert [c.n_items for c in contributors] == [5, 5]
    frames = [Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(tmp_path / "a" / "moving.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(DataError, match=r"moving\.gif.*3 frames"):
        describe(spec, HashCache(tmp_path / "cache2.json"))


def test_unreadable_images_and_folders_are_named(tmp_path, monkeypatch):
    """Permissions are not enforced for root, so the denial is simulated where the data
    code meets it: a folder it may not list, an image whose bytes it may not read."""
    from pathlib import Path

    from diffcredit.data import DataError, HashCache, describe

    rng = np.random.default_rng(1)
    for who in ("a", "b"):
        (tmp_path / who).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / who / f"{i}.png")
    spec = {"source": "folder", "root": str(tmp_path), "resolution": 8, "channels": 1, "background": 255}
    real_access, real_read = os.access, Path.read_bytes
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p).name != "b" and real_access(p, mode))
    with pytest.raises(DataError, match=r"contributor 'b': folder .*/b cannot be read \(permission denied\)"):
        describe(spec, HashCache(None))
    monkeypatch.setattr(os, "access", real_access)

    def read_bytes(self):
        if self.name == "1.png" and self.parent.name == "a":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(DataError, match=r"contributor 'a': cannot read image .*a/1\.png .*Permission denied"):
        describe(spec, HashCache(None))


def test_a_root_beside_a_contributor_list_is_refused(tmp_path):
    """Was: the list won and data.root was ignored without a word."""
    from diffcredit.data import DataError, HashCache, describe

    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "a" / "0.png")
    spec = {"source": "folder", "root": str(tmp_path), "contributors": [{"name": "a", "path": str(tmp_path / "a")}],
            "resolution": 8, "channels": 1, "background": 255}
    with pytest.raises(DataError, match="data.root and data.contributors are both set"):
        describe(spec, HashCache(None))


def test_split_shares_size_the_groups_within_every_class():
    from diffcredit.data.sources.base import split_labelled

    labels = np.repeat(np.arange(4), 90)
    hashes = [f"h{i}" for i in range(len(labels))]
    groups = split_labelled({"by": "split", "groups": 3, "shares": [2, 1, 0.5]}, hashes, labels, 4, str)
    sizes = {g.name: np.bincount(g.labels, minlength=4) for g in groups}
    for name, share in (("group0", 2 / 3.5), ("group1", 1 / 3.5), ("group2", 0.5 / 3.5)):
        assert np.all(np.abs(sizes[name] - share * 90) <= 1), (name, sizes[name])  # every class in proportion
    rows = [r for g in groups for r in g.sources]
    assert sorted(rows) == list(range(len(labels)))  # disjoint, and every image in one group
    with pytest.raises(DataError, match="one per group; got 2 shares"):
        split_labelled({"by": "split", "groups": 3, "shares": [1, 1]}, hashes, labels, 4, str)
    with pytest.raises(DataError, match="for by: class"):
        split_labelled({"by": "class", "groups": 1, "shares": [1]}, hashes, labels, 4, str)
    with pytest.raises(DataError, match="group1 without images"):
        split_labelled({"by": "split", "groups": 2, "shares": [1000, 1]}, hashes, labels, 4, str)


def test_hidden_files_and_tool_folders_are_not_images(tmp_path):
    """What macOS, Jupyter and unzipping leave beside the images is skipped: a "._x.png"
    resource fork (not an image at all), a checkpoint copy in ".ipynb_checkpoints" (a
    duplicate), a "__MACOSX" folder at the root (it would be a contributor)."""
    root = make_folders(tmp_path / "d")
    clean = describe({"source": "folder", "root": str(root)}, HashCache(None))
    (root / "ann" / "._0.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (root / "bob" / ".ipynb_checkpoints").mkdir()
    (root / "bob" / ".ipynb_checkpoints" / "1-checkpoint.png").write_bytes((root / "bob" / "1.png").read_bytes())
    (root / "__MACOSX" / "ann").mkdir(parents=True)
    (root / "__MACOSX" / "ann" / "._1.png").write_bytes(b"\x00\x05\x16\x07")
    (root / "ann" / "nested").mkdir()  # an ordinary subfolder still counts
    (root / "ann" / "nested" / "9.png").write_bytes((root / "bob" / "2.png").read_bytes())
    found = describe({"source": "folder", "root": str(root), "allow_duplicates": True}, HashCache(None))
    assert [c.name for c in found] == ["ann", "bob"]
    assert [c.sources for c in found] == [clean[0].sources + [str(root / "ann" / "nested" / "9.png")],
                                          clean[1].sources]


@pytest.mark.parametrize("orientation, turn", [(3, lambda a: a[::-1, ::-1]), (6, lambda a: np.rot90(a, -1)),
                                               (8, lambda a: np.rot90(a, 1)), (2, lambda a: a[:, ::-1])])
def test_exif_orientation_is_applied_as_viewers_do(tmp_path, orientation, turn):
    """Phones store photos unrotated with an EXIF orientation; the pixels trained on are
    the ones a viewer shows (independent check: the array turned by numpy), and the item
    hash names the rule, so the shards of rotated images are remade after this change."""
    rng = np.random.default_rng(orientation)
    pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    root = tmp_path / "d"
    for name in ("ann", "bob"):
        (root / name).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / name / "plain.png")
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(root / "ann" / "photo.png", exif=exif)
    spec = {"source": "folder", "root": str(root), "resolution": 8, "channels": 3}
    ann = describe(spec, HashCache(None))[0]
    images, _ = load_items(spec, ann)
    index = ann.sources.index(str(root / "ann" / "photo.png"))
    position = int(np.flatnonzero(np.argsort(ann.item_hashes, kind="stable") == index)[0])  # canonical order
    assert np.array_equal(images[position], turn(pixels).transpose(2, 0, 1))
    assert ann.item_hashes[index] != hashlib.sha256((root / "ann" / "photo.png").read_bytes()).hexdigest()


def test_every_raster_format_pillow_reads_is_read_and_formats_it_cannot_are_refused_by_name(tmp_path):
    """Was: only eight suffixes were images and every other file was skipped without a word,
    an iPhone's HEIC photo or a camera's raw file included."""
    from diffcredit.data.images import load_image

    rng = np.random.default_rng(3)
    exts = ["ppm", "tga", "qoi", "pcx", "sgi", "jp2", "jfif", "jpe", "avif", "JPG"]
    lossless = {"ppm", "tga", "qoi", "pcx", "sgi"}
    pixels = {}
    for who in ("a", "b"):
        (tmp_path / who).mkdir()
        for i, ext in enumerate(exts):
            pixels[who, ext] = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            fmt = {"jfif": "JPEG", "jpe": "JPEG", "jpg": "JPEG"}.get(ext.lower())
            Image.fromarray(pixels[who, ext]).save(tmp_path / who / f"{i}.{ext}", format=fmt)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    spec = {"source": "folder", "root": str(tmp_path), "resolution": 8, "channels": 3, "background": 255}
    found = describe(spec, HashCache(None))
    assert [c.n_items for c in found] == [len(exts), len(exts)]
    for who in ("a", "b"):
        for i, ext in enumerate(exts):
            if ext in lossless:
                decoded = load_image(str(tmp_path / who / f"{i}.{ext}"), 8, 3, (255, 255, 255))
                assert np.array_equal(decoded, pixels[who, ext].transpose(2, 0, 1)), ext
    (tmp_path / "b" / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (tmp_path / "b" / "DSC_0002.nef").write_bytes(b"II*\x00")
    with pytest.raises(DataError, match=r"contributor 'b': 2 file\(s\) are in formats that cannot be decoded here "
                                        r"\(.*DSC_0002\.nef, .*IMG_0001\.HEIC\); convert them to PNG or JPEG"):
        describe(spec, HashCache(None))


def test_links_are_followed_and_a_link_to_nothing_is_refused(tmp_path):
    """A subfolder linked into a contributor's folder holds its images (was: skipped, as
    pathlib's rglob does not follow links); a link whose target is gone (an unmounted
    drive) is named (was: skipped); a folder linked into itself is read once."""
    root = make_folders(tmp_path / "d")
    make_folders(tmp_path / "elsewhere", names=("more",), n_per=2)
    (root / "ann" / "more").symlink_to(tmp_path / "elsewhere" / "more", target_is_directory=True)
    (root / "ann" / "loop").symlink_to(root / "ann", target_is_directory=True)
    # make_folders draws the same pixels for each call's first folder: change them
    for i in range(2):
        Image.fromarray(np.full((12, 10, 3), 7 * i, np.uint8)).save(tmp_path / "elsewhere" / "more" / f"{i}.png")
    found = describe({"source": "folder", "root": str(root)}, HashCache(None))
    assert found[0].n_items == 5 and found[1].n_items == 3
    assert sum("more" in s for s in found[0].sources) == 2
    (root / "bob" / "9.png").symlink_to(tmp_path / "unmounted" / "9.png")
    with pytest.raises(DataError, match=r"contributor 'bob': 1 image\(s\) are links to files that do not exist "
                                        r"\(.*bob/9\.png\); mount or restore their targets"):
        describe({"source": "folder", "root": str(root)}, HashCache(None))


def test_images_outside_every_contributor_folder_or_an_archive_as_the_root_are_refused(tmp_path):
    """Images loose in data.root belong to no contributor (was: skipped without a word);
    a flat folder of images given as the root is told where they go; a zip is told to
    be unpacked (was: "is not a folder")."""
    import zipfile

    root = make_folders(tmp_path / "d")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "stray.png")
    with pytest.raises(DataError, match=r"data.root .* holds 1 image\(s\) outside any contributor folder \(stray\.png\)"):
        describe({"source": "folder", "root": str(root)}, HashCache(None))
    with pytest.raises(DataError, match=r"holds 3 image\(s\) outside any contributor folder \(0\.png, 1\.png, 2\.png\); "
                                        r"move each into its contributor's folder"):
        describe({"source": "folder", "root": str(root / "ann")}, HashCache(None))
    with zipfile.ZipFile(tmp_path / "art.zip", "w") as z:
        z.write(root / "ann" / "0.png", "ann/0.png")
    with pytest.raises(DataError, match=r"data.root .*art\.zip is an archive; unpack it"):
        describe({"source": "folder", "root": str(tmp_path / "art.zip")}, HashCache(None))


def test_a_metadata_file_must_list_every_image_beside_it(tmp_path):
    """In the imagefolder layout the metadata file describes the folder: an image without
    a row is named (was: left out of training without a word)."""
    root = make_folders(tmp_path / "d")
    rows = ["file_name,artist"] + [f"{who}/{i}.png,{who}" for who in ("ann", "bob") for i in range(3)]
    (root / "metadata.csv").write_text("\n".join(rows[:-1]) + "\n")
    spec = {"source": "folder", "root": str(root), "contributor_column": "artist"}
    with pytest.raises(DataError, match=r"lists no row for 1 image\(s\) under .* \(bob/2\.png\); add their rows"):
        describe(spec, HashCache(None))
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    assert [c.n_items for c in describe(spec, HashCache(None))] == [3, 3]


def test_a_contributor_changed_after_planning_stops_its_shard_job(tmp_path):
    """An image edited, added or removed between the plan and the shard job: the job
    fails naming the contributor (its key would otherwise name content it does not hold)."""
    from diffcredit.stages.data import prepare_shard

    root = make_folders(tmp_path / "d")
    spec = {"source": "folder", "root": str(root), "resolution": 8, "channels": 3, "background": [255, 255, 255]}
    ann = describe(spec, HashCache(None))[0]
    job = {"data": spec, "name": "ann", "content_hash": ann.content_hash, "cache": str(tmp_path / "cache.json"),
           "out": str(tmp_path / "ann.npz")}
    Image.fromarray(np.ones((12, 10, 3), np.uint8)).save(root / "ann" / "new.png")
    with pytest.raises(RuntimeError, match="contributor 'ann' changed after the workflow was planned; run snakemake "
                                           "again"):
        prepare_shard(job, progress=False)
    assert not (tmp_path / "ann.npz").exists()
    (root / "ann" / "new.png").unlink()
    prepare_shard(job, progress=False)
    assert read_shards([tmp_path / "ann.npz"])[0].shape == (3, 3, 8, 8)


def test_photos_of_any_shape_are_centre_cropped_not_squashed(tmp_path):
    """A 4:3 or portrait photo keeps its proportions: the centred square is taken, then
    resized (what diffusers' training scripts do), never the whole frame squeezed."""
    from diffcredit.data.images import load_image

    wide = np.zeros((30, 40, 3), np.uint8)
    wide[:, 5:35] = 200  # the centred 30 x 30 square is all 200; the side bands are 0
    Image.fromarray(wide).save(tmp_path / "wide.png")
    tall = np.zeros((40, 30, 3), np.uint8)
    tall[5:35] = 90
    Image.fromarray(tall).save(tmp_path / "tall.png")
    assert np.all(load_image(str(tmp_path / "wide.png"), 10, 3) == 200)
    assert np.all(load_image(str(tmp_path / "tall.png"), 10, 3) == 90)
    stripes = np.tile(np.array([0, 255], np.uint8), (800, 400))  # one-pixel stripes: a big scan's fine detail
    Image.fromarray(stripes).save(tmp_path / "big.png")
    small = load_image(str(tmp_path / "big.png"), 4, 1)
    assert np.abs(small.astype(int) - 127).max() <= 2  # filtered to their mean; point sampling gives 0 or 255


def test_print_colour_spaces_are_converted_and_a_decompression_bomb_is_named(tmp_path, monkeypatch):
    """A CMYK JPEG (what print workflows export) reads as the RGB a viewer shows; an image
    past Pillow's pixel limit (a decompression bomb, or a huge scan) is refused by name,
    not decoded."""
    from PIL import Image as PILImage

    from diffcredit.data.images import load_image

    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: CMYK (0, 255, 255, 0)
    PILImage.fromarray(rgb).convert("CMYK").save(tmp_path / "red.jpg", quality=100)
    got = load_image(str(tmp_path / "red.jpg"), 8, 3)
    assert np.abs(got.astype(int) - rgb.transpose(2, 0, 1)).max() <= 3
    root = make_folders(tmp_path / "d")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 20)  # each image is 120 pixels: twice past this limit
    with pytest.raises(DataError, match=r"contributor 'ann': cannot read image .*ann/0\.png \(DecompressionBombError"):
        describe({"source": "folder", "root": str(root)}, HashCache(None))


def test_thumbnails_that_would_be_upscaled_are_warned_of(tmp_path, recwarn):
    """A folder of thumbnails trained at a larger resolution is blurred by upscaling: said
    before any job, naming the contributors and counts (was: upscaled without a word)."""
    root = make_folders(tmp_path / "d")  # 12 x 10 images
    describe({"source": "folder", "root": str(root), "resolution": 20}, HashCache(None))
    assert not [w for w in recwarn if "upscaled" in str(w.message)]
    with pytest.warns(UserWarning, match=r"under half of data.resolution 32 on their shorter side are upscaled, which "
                                         r"blurs them \(ann: 3 of 3, bob: 3 of 3\)"):
        describe({"source": "folder", "root": str(root), "resolution": 32}, HashCache(None))


def test_a_missing_relative_path_says_where_it_was_looked_for(tmp_path, monkeypatch):
    """snakemake -d runs/x makes runs/x the working directory, so data.root: images is
    looked for there: the message gives the absolute path and why."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=f"data.root images is not a folder \\(looked for {tmp_path}/images: a relative "
                                        "path is read from the working directory, which snakemake -d sets"):
        describe({"source": "folder", "root": "images"}, HashCache(None))
    with pytest.raises(DataError, match=r"folder /nowhere/b does not exist$"):  # an absolute path needs no note
        describe({"source": "folder", "contributors": [{"name": "a", "path": str(make_folders(tmp_path / "d") / "ann")},
                                                       {"name": "b", "path": "/nowhere/b"}]}, HashCache(None))
