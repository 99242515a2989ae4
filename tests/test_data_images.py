import logging
import math

import numpy as np
import pytest
import torch

from curvlab.rsc.data import encode_targets, load_images


def test_offline_mnist_subset_is_normalized_and_seeded(tmp_path):
    a = load_images("mnist_offline", 128, seed=1, root=str(tmp_path))
    b = load_images("mnist_offline", 128, seed=1, root=str(tmp_path))  # second load: from the .npz cache
    c = load_images("mnist_offline", 128, seed=2, root=str(tmp_path))
    assert a.x.shape == (128, 784)
    torch.testing.assert_close(a.x.norm(dim=1), torch.full((128,), math.sqrt(784)))
    assert torch.equal(a.x, b.x) and torch.equal(a.indices, b.indices)
    assert not torch.equal(a.indices, c.indices)
    assert len(a.labels.unique()) >= 8  # the subset is random, not the label-sorted head of the file


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_corrupt_offline_cache_is_named_and_rebuilt(damage, tmp_path, caplog):
    want = load_images("mnist_offline", 64, seed=3, root=str(tmp_path))
    cache = tmp_path / "mnist_offline_5k.npz"
    blob = cache.read_bytes()
    cache.write_bytes(blob[: len(blob) // 2] if damage == "truncate" else b"not a zip file at all" * 100)
    with caplog.at_level(logging.WARNING):
        got = load_images("mnist_offline", 64, seed=3, root=str(tmp_path))
    assert f"rebuilding {cache}" in caplog.text
    assert torch.equal(got.x, want.x) and torch.equal(got.indices, want.indices)
    with np.load(cache) as f:  # the cache is whole again
        assert f["x"].shape == (5000, 784)


def test_target_encodings():
    labels = torch.tensor([0, 9, 3])
    onehot = encode_targets(labels, "onehot")
    assert onehot.shape == (3, 10) and torch.equal(onehot.argmax(1), labels)
    scalar = encode_targets(labels, "scalar")
    torch.testing.assert_close(scalar[:, 0], torch.tensor([-1.0, 1.0, -1.0 / 3.0]))
    with pytest.raises(ValueError, match="unknown data.target 'ordinal'"):
        encode_targets(labels, "ordinal")


def test_bad_requests_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        load_images("imagenet", 10, 0)
    with pytest.raises(ValueError, match="exceeds the 5000 training points"):
        load_images("mnist_offline", 6000, 0, root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="MNIST/raw/train-images-idx3-ubyte") as err:
        load_images("mnist", 10, 0, root=str(tmp_path / "nowhere"), download=False)
    assert str(tmp_path / "nowhere") in str(err.value)


@pytest.mark.parametrize("name,d", [("mnist", 784), ("fashion_mnist", 784), ("cifar10", 3072)])
def test_torchvision_formats(vision_root, trust_cifar, name, d):
    data = load_images(name, 50, seed=0, target="onehot", root=str(vision_root), download=False)
    assert data.x.shape == (50, d) and data.y.shape == (50, 10)
    torch.testing.assert_close(data.x.norm(dim=1), torch.full((50,), math.sqrt(d)))


def test_fashion_mnist_is_read_from_debians_gzipped_copy(vision_root, tmp_path):
    """Debian's dataset-fashion-mnist ships gzipped idx files: they are unpacked into the data root
    once, where torchvision reads them, and give the same images as the unpacked originals."""
    import gzip
    import shutil

    from curvlab.rsc.data import _unpack_debian

    source = tmp_path / "debian"
    source.mkdir()
    for f in (vision_root / "FashionMNIST" / "raw").glob("*-ubyte"):
        with open(f, "rb") as src, gzip.open(source / f"{f.name}.gz", "wb") as out:
            shutil.copyfileobj(src, out)
    root = tmp_path / "root"
    _unpack_debian("fashion_mnist", str(root), source)
    assert sorted(p.name for p in (root / "FashionMNIST" / "raw").iterdir()) == sorted(
        p.name for p in (vision_root / "FashionMNIST" / "raw").glob("*-ubyte"))
    ours = load_images("fashion_mnist", 8, 0, root=str(root), download=False)
    ref = load_images("fashion_mnist", 8, 0, root=str(vision_root), download=False)
    assert torch.equal(ours.x, ref.x) and torch.equal(ours.labels, ref.labels)
    _unpack_debian("fashion_mnist", str(tmp_path / "none"), tmp_path / "missing")  # no copy: nothing happens
    assert not (tmp_path / "none").exists()
