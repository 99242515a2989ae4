"""W&B dashboards: a training run's metric declarations and a sweep's report run, both logged for real
by offline W&B and read back from their transaction logs with ``wandb leet inspect --json``."""

import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from conftest import ROOT, run_cli  # noqa: E402

from curvlab.run.store import read_summary  # noqa: E402
from curvlab.run.wandb_dashboard import log_sweep  # noqa: E402
from curvlab.run.wandb_runs import STEP_KEY  # noqa: E402

WANDB = str(Path(sys.executable).with_name("wandb"))
OFFLINE = {"WANDB_MODE": "offline", "WANDB_START_METHOD": "thread", "WANDB_SILENT": "true"}


def _inspect(offline: Path, *args: str) -> str:
    return subprocess.run([WANDB, "leet", "inspect", *args, str(offline)], capture_output=True, text=True,
                          check=True, timeout=120).stdout


def _read(offline: Path) -> tuple[list[dict], dict]:
    """(the records of an offline run's .wandb log, its final state: summary, config, name, ...)."""
    records = [json.loads(line) for line in _inspect(offline, "--json").splitlines()]
    return records, json.loads(_inspect(offline, "--summary", "--json"))


def _of_type(records: list[dict], kind: str) -> list[dict]:
    return [r[kind] for r in records if r.get("type") == kind]


def test_training_run_declares_step_metric_and_min_max_summaries(tmp_path):
    proc = run_cli("curvlab.train", "experiment=fig1_mnist", "data=mnist_offline", "data.n=32", "model.width=8",
                   "trainer.max_steps=5", "checks=default", "progress_bar=false", f"hydra.run.dir={tmp_path}",
                   env=OFFLINE)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    records, state = _read(offline)
    metrics = _of_type(records, "metric")
    named = {m["name"]: m for m in metrics if "name" in m}
    assert STEP_KEY in named and any(m.get("glob_name") == "*" and m["step_metric"] == STEP_KEY for m in metrics)
    for name, summary in [("gbar_norm", "min"), ("loss", "min"), ("check/hessian/pred_norm_max", "max"),
                          ("check/hessian/loss_lambda_max", "max")]:
        assert named[name]["step_metric"] == STEP_KEY and named[name]["summary"] == {summary: True}, name
    local, summary = read_summary(tmp_path), state["summary"]
    # the declared summaries sit beside curvlab's own fields, which keep their values
    assert summary["gbar_norm"] == {"min": local["min_gbar_norm"]}
    assert summary["min_gbar_norm"] == local["min_gbar_norm"]
    assert summary["final_loss"] == local["final_loss"] and set(summary["check/hessian/pred_norm_max"]) == {"max"}


def _png(path: Path, slope: float) -> Path:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, slope])
    fig.savefig(path)
    plt.close(fig)
    return path


ROWS = [
    {"claim": "min gbar", "statistic": "slope", "value": -0.5, "ci_low": -0.6, "ci_high": -0.4,
     "threshold": "< 0", "verdict": "holds"},
    {"claim": "hessian", "statistic": "slope", "value": -0.45, "ci_low": -0.55, "ci_high": -0.35,
     "threshold": "~ -0.5", "verdict": "holds"},
    {"claim": "rsc", "statistic": "share", "value": 0.9, "ci_low": 0.8, "ci_high": 0.95,
     "threshold": "> 0.5", "verdict": "holds"},
]


def test_log_sweep_logs_figures_and_report_in_the_group(tmp_path, monkeypatch):
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    figs = [_png(tmp_path / "fig1_mnist.png", 1.0), _png(tmp_path / "fig1_cifar10.png", -1.0)]
    report = tmp_path / "report.md"
    report.write_text("# report\n")
    offline = log_sweep("fig1", figs, ROWS, out_dir=tmp_path / "wb", report_md=report)
    assert offline is not None and offline.parent == tmp_path / "wb" / "wandb"
    assert offline.name.startswith("offline-run-")
    records, state = _read(offline)
    (run,) = _of_type(records, "run")
    assert run["run_group"] == "fig1" and run["job_type"] == "report" and run["display_name"] == "fig1-report"
    summary = state["summary"]
    assert all(summary[f"figures/{p.stem}"]["_type"] == "image-file" for p in figs)
    table = json.loads((offline / "files" / summary["report"]["path"]).read_text())
    assert table["columns"] == list(ROWS[0]) and table["data"] == [list(r.values()) for r in ROWS]
    assert any(a["type"] == "report" and a["manifest"]["contents"][0]["path"] == "report.md"
               for a in _of_type(records, "artifact"))


def test_log_sweep_disabled_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    figs = [_png(tmp_path / "fig1_mnist.png", 1.0)]
    assert log_sweep("fig1", figs, ROWS, out_dir=tmp_path / "wb") is None
    assert not (tmp_path / "wb").exists()


def test_the_dashboard_module_imports_no_lightning():
    code = "import sys, curvlab.run.wandb_dashboard; print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
