"""Safe instantiate: configs build classes from curvlab, torch and lightning only, each group only
its own kind of object, and nothing that starts a process; Hydra's own node builds nothing."""

import sys
import threading
import types

import lightning as L
import pytest
import torch
from conftest import compose_cfg, run_cli
from omegaconf import OmegaConf

from curvlab.run.fit import make_callbacks, run
from curvlab.run.instantiate import UnsafeTargetError, check_target, safe_instantiate
from curvlab.run.store import finished_summary

BASE = ["logger=csv", "data.n=32", "model.width=8", "progress_bar=false", "data.root=data_cache"]


def test_allowed_classes_are_built_with_nested_targets_and_kwargs():
    net = safe_instantiate(
        {"_target_": "torch.nn.Sequential",
         "_args_": [{"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2}, {"_target_": "torch.nn.Tanh"}]}
    )
    assert isinstance(net[0], torch.nn.Linear) and net[0].weight.shape == (2, 3)
    model = safe_instantiate({"_target_": "curvlab.rsc.model.DeepMLP", "width": 4, "depth": 2}, in_dim=5, out_dim=1)
    assert model(torch.zeros(7, 5)).shape == (7, 1)


@pytest.mark.parametrize(
    "target,message",
    [
        ("subprocess.Popen", "only instantiate classes from curvlab, torch, lightning"),
        ("torchevil.Thing", "is not allowed"),  # a look-alike package is refused before any import
        ("torch.utils.cpp_extension.subprocess.Popen", "loads code"),
        # re-exports reached through an allowed module are refused by the class's defining module
        ("torch.multiprocessing.Process", "not from torch.multiprocessing, which starts processes"),
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
    cfg = compose_cfg(BASE + ["callbacks=device_stats", "trainer.max_steps=3"])
    (cb,) = make_callbacks(cfg)
    assert type(cb).__name__ == "DeviceStatsMonitor" and isinstance(cb, L.Callback)
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed"


def test_a_callback_that_stops_early_leaves_the_run_stopped(tmp_path):
    """A Timer that ends training before max_steps must not be mistaken for a finished run."""
    timer = "+callbacks.timer={_target_: lightning.pytorch.callbacks.Timer, duration: '00:00:00:%02d', interval: step}"
    for seconds in (0, 1):  # stopped before the first step (on_fit_start), and mid-run
        cfg = compose_cfg(BASE + ["trainer.max_steps=1000000", "trainer.loss_tol=0", timer % seconds])
        summary = run(cfg, tmp_path)
        assert summary["status"] == "stopped" and (summary["steps"] > 0) == (seconds > 0)
        assert summary["steps"] < 1000000
        assert finished_summary(tmp_path) is None  # so a resumed sweep runs it again


def test_non_callback_target_is_refused_before_it_is_built(monkeypatch):
    built = []
    monkeypatch.setattr(torch.nn.Identity, "__init__", lambda self, *a, **k: built.append(1))
    cfg = compose_cfg(BASE + ["+callbacks.lin={_target_: torch.nn.Identity}"])
    with pytest.raises(UnsafeTargetError, match="_target_='torch.nn.Identity' is not allowed here: it must name a "
                                                "subclass of lightning.pytorch.callbacks.callback.Callback"):
        make_callbacks(cfg)
    assert built == []


SUBPROCESS_HANDLER = ("{_target_: torch.distributed.elastic.multiprocessing.subprocess_handler.SubprocessHandler, "
                      "entrypoint: touch, args: [%s], env: {}, stdout: null, stderr: null, local_rank_id: 0, "
                      "numa_options: null}")


def test_a_torch_class_that_starts_processes_is_refused_in_any_group(tmp_path):
    marker = tmp_path / "pwned"
    for group in ("callbacks", "checks"):
        cfg = compose_cfg(BASE + [f"+{group}.x=" + SUBPROCESS_HANDLER % marker])
        with pytest.raises(UnsafeTargetError, match=f"{group}.x._target_=.*SubprocessHandler' is not allowed"):
            run(cfg, tmp_path)
        assert not marker.exists() and not (tmp_path / "metrics.csv").exists()


def test_a_class_that_starts_threads_or_processes_is_refused_wherever_it_lives(monkeypatch):
    fake = types.ModuleType("curvlab.fake_workers")

    class Worker(threading.Thread):
        pass

    Worker.__module__ = fake.__name__
    fake.Worker = Worker
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    with pytest.raises(UnsafeTargetError, match="it is a threading.Thread, which starts processes"):
        check_target("curvlab.fake_workers.Worker")


@pytest.mark.parametrize("node", ["callbacks", "job_logging.handlers", "hydra_logging.handlers"])
def test_hydra_node_builds_nothing_from_the_command_line(node, tmp_path):
    """Hydra itself builds hydra.callbacks and the logging handlers before curvlab sees the config."""
    marker = tmp_path / "pwned"
    spec = SUBPROCESS_HANDLER % marker
    if node != "callbacks":
        spec = spec.replace("_target_", "class")
    out = tmp_path / "out"
    proc = run_cli("curvlab.train", *BASE, f"hydra.run.dir={out}", f"+hydra.{node}.x={spec}")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"Error: hydra.{node}.x.") and "is not allowed" in proc.stderr
    assert not marker.exists() and not out.exists()


def test_unsafe_override_fails_before_training_with_one_clear_line(tmp_path):
    marker = tmp_path / "ran"
    out = tmp_path / "out"
    proc = run_cli("curvlab.train", *BASE, f"hydra.run.dir={out}",
                   f"+callbacks.x={{_target_: subprocess.Popen, args: [touch, {marker}]}}")
    assert proc.returncode != 0
    assert proc.stderr.startswith("Error: callbacks.x._target_='subprocess.Popen' is not allowed")
    assert not marker.exists() and not (out / "metrics.csv").exists()
