"""Shared fixtures: offline W&B, Hydra composition of the real conf/, tiny torchvision-format data."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("WANDB_START_METHOD", "thread")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from curvlab.tasks import register_schemas  # noqa: E402

register_schemas()

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def compose_cfg(overrides: list[str]) -> DictConfig:
    """Compose conf/config.yaml like the entry point does (hydra resolvers included)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m <args>`` in a subprocess with W&B disabled (plus ``env``); returns the completed process."""
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _idx(path: Path, arr: np.ndarray) -> None:
    """Write an IDX file (the format of MNIST's raw files)."""
    code = 0x08  # unsigned byte
    with open(path, "wb") as fh:
        fh.write(struct.pack(">BBBB", 0, 0, code, arr.ndim))
        fh.write(struct.pack(">" + "I" * arr.ndim, *arr.shape))
        fh.write(arr.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def vision_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding tiny MNIST, Fashion-MNIST and CIFAR-10 in torchvision's on-disk formats."""
    root = tmp_path_factory.mktemp("vision")
    rng = np.random.default_rng(0)
    n = 200
    for folder in ("MNIST", "FashionMNIST"):
        raw = root / folder / "raw"
        raw.mkdir(parents=True)
        for split, count in (("train", n), ("t10k", 20)):
            _idx(raw / f"{split}-images-idx3-ubyte", rng.integers(1, 256, (count, 28, 28)))
            _idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, count))
    cifar = root / "cifar-10-batches-py"
    cifar.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(1, 256, (40, 3072)).astype(np.uint8), "labels": list(rng.integers(0, 10, 40))}
        with open(cifar / name, "wb") as fh:
            pickle.dump(batch, fh)
    with open(cifar / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    return root


@pytest.fixture
def trust_cifar(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision checks CIFAR-10 files against the real archive's md5 sums; the test files are ours."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)
