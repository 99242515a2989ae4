"""Safe instantiate: configs build classes from curvlab, torch and lightning only (issue 5)."""

import lightning as L
import pytest
import torch
from conftest import compose_cfg, run_cli
from omegaconf import OmegaConf

from curvlab.instantiate import UnsafeTargetError, check_targets, safe_instantiate
from curvlab.store import is_complete
from curvlab.train import make_callbacks, run

BASE = ["logger=csv", "data.n=32", "model.width=8", "progress_bar=false", "data.root=data_cache"]


def test_allowed_classes_are_built_with_nested_targets_and_kwargs():
    net = safe_instantiate(
        {"_target_": "torch.nn.Sequential",
         "_args_": [{"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2}, {"_target_": "torch.nn.Tanh"}]}
    )
    assert isinstance(net[0], torch.nn.Linear) and net[0].weight.shape == (2, 3)
    model = safe_instantiate({"_target_": "curvlab.models.DeepMLP", "width": 4, "depth": 2}, in_dim=5, out_dim=1)
    assert model(torch.zeros(7, 5)).shape == (7, 1)


@pytest.mark.parametrize(
    "target,message",
    [
        ("subprocess.Popen", "only instantiate classes from curvlab, torch, lightning"),
        ("torchevil.Thing", "is not allowed"),  # a look-alike package is refused before any import
        ("torch.utils.cpp_extension.subprocess.Popen", "loads code"),
        # re-exports reached through an allowed module are refused by the class's defining module
        ("torch.multiprocessing.Process", "it is multiprocessing.context.Process"),
        ("torch.utils.data.dataloader.threading.Thread", "it is threading.Thread"),
        ("torch.load", "not a class"),
        ("torch.hub.load", "loads code"),
        ("lightning.pytorch.cli.LightningCLI", "loads code"),
        ("torch.no_such_thing", "does not name an importable object"),
    ],
)
def test_refused_targets(target, message, tmp_path):
    marker = tmp_path / "ran"
    cfg = {"outer": [{"_target_": "torch.nn.Identity"}, {"_target_": target, "args": ["touch", str(marker)]}]}
    with pytest.raises(UnsafeTargetError, match=message) as info:
        safe_instantiate(cfg)
    assert "outer[1]._target_" in str(info.value)  # names where it is
    assert not marker.exists()


def test_interpolated_targets_are_checked_after_resolution():
    cfg = OmegaConf.create({"name": "subprocess.Popen", "cb": {"_target_": "${name}"}})
    with pytest.raises(UnsafeTargetError, match="cb._target_='subprocess.Popen'"):
        safe_instantiate(cfg)


def test_callbacks_group_adds_lightning_callbacks_to_the_trainer(tmp_path):
    cfg = compose_cfg(BASE + ["callbacks=device_stats", "optimizer.max_steps=3"])
    (cb,) = make_callbacks(cfg)
    assert type(cb).__name__ == "DeviceStatsMonitor" and isinstance(cb, L.Callback)
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed"


def test_a_callback_that_stops_early_leaves_the_run_stopped(tmp_path):
    """A Timer that ends training before max_steps must not be mistaken for a finished run."""
    timer = "+callbacks.timer={_target_: lightning.pytorch.callbacks.Timer, duration: '00:00:00:%02d', interval: step}"
    for seconds in (0, 1):  # stopped before the first step (on_fit_start), and mid-run
        cfg = compose_cfg(BASE + ["optimizer.max_steps=1000000", "optimizer.loss_tol=0", timer % seconds])
        summary = run(cfg, tmp_path)
        assert summary["status"] == "stopped" and (summary["steps"] > 0) == (seconds > 0)
        assert summary["steps"] < 1000000
        assert not is_complete(tmp_path)  # so a resumed sweep runs it again


def test_non_callback_target_is_refused(tmp_path):
    cfg = compose_cfg(BASE + ["+callbacks.lin={_target_: torch.nn.Identity}"])
    with pytest.raises(ValueError, match="callbacks.lin must be a Lightning Callback"):
        make_callbacks(cfg)


def test_unsafe_override_fails_before_training_with_one_clear_line(tmp_path):
    marker = tmp_path / "ran"
    out = tmp_path / "out"
    proc = run_cli("curvlab.train", *BASE, f"hydra.run.dir={out}",
                   f"+callbacks.x={{_target_: subprocess.Popen, args: [touch, {marker}]}}")
    assert proc.returncode != 0
    assert "callbacks.x._target_='subprocess.Popen' is not allowed" in proc.stderr
    assert not marker.exists() and not (out / "metrics.csv").exists()
