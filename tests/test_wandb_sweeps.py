"""Each W&B sweep file is valid, and every command the agent would run composes with Hydra: the grid
points that cover every swept value are composed, and every other command is checked to be made of
their overrides."""

from pathlib import Path

import pytest
import sweeps
import yaml
from conftest import CONF, ROOT
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

SWEEP_FILES = sorted((ROOT / "sweeps").glob("*.yaml"))


def _grid(cfg: dict, size: int) -> list[dict]:
    """Enumerate the grid as the sweep controller does: ``sweeps.next_runs`` asked for one run more
    than the grid holds answers every grid point, then None (exhausted)."""
    runs = sweeps.next_runs(cfg, [], validate=True, n=size + 1)
    assert runs[-1] is None
    return [{k: v["value"] for k, v in r.config.items()} for r in runs[:-1]]


@pytest.mark.parametrize("path", SWEEP_FILES, ids=[p.stem for p in SWEEP_FILES])
def test_sweep_file(path: Path):
    cfg = yaml.safe_load(path.read_text())
    assert sweeps.schema_violations_from_proposed_config(cfg) == []
    expected = 1
    for spec in cfg["parameters"].values():
        expected *= len(spec["values"])
    grid = _grid(cfg, expected)
    assert len(grid) == expected and len({repr(sorted(p.items())) for p in grid}) == expected
    GlobalHydra.instance().clear()
    composed: dict[tuple, set[str]] = {}  # per choice of the swept config groups
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):  # once for the whole grid
        for params in _covering(cfg, grid):
            overrides = _command(cfg, params)
            _check_command(cfg, params, overrides)
            composed.setdefault(_group_choice(params), set()).update(overrides)
    for params in grid:  # every command the agent would run is made of overrides composed above
        assert set(_command(cfg, params)) <= composed[_group_choice(params)]


def _group_choice(params: dict) -> tuple:
    """The grid point's choices of swept config groups (they decide which keys exist)."""
    return tuple((k, repr(v)) for k, v in params.items() if (CONF / k).is_dir())


def _covering(cfg: dict, grid: list[dict]) -> list[dict]:
    """Grid points in which, for each choice of the swept config groups (which decides the keys that
    exist), every value of every other swept key occurs at least once. Hydra applies value overrides
    one by one on the composed groups, so a command whose overrides each composed in some command
    with the same group choices composes too."""
    chosen, seen = [], set()
    for params in grid:
        pairs = {(_group_choice(params), k, repr(v)) for k, v in params.items()}
        if pairs - seen:
            chosen.append(params)
            seen |= pairs
    return chosen


def _command(cfg: dict, params: dict) -> list[str]:
    """The Hydra overrides of the agent's command for one grid point."""
    args = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    expanded = []
    for token in create_sweep_command(cfg["command"]):
        if token == "${args_no_hyphens}":
            expanded += args["args_no_hyphens"]
        elif token not in ("${env}", "${interpreter}"):
            expanded.append(token)
    assert expanded[:2] == ["-m", "curvlab.train"]
    return expanded[2:]


def _check_command(cfg: dict, params: dict, overrides: list[str]) -> None:
    """The agent's command for one grid point composes, and sets each swept key to its value."""
    assert not any(o.startswith("+") for o in overrides)
    groups = [k for k in params if (CONF / k).is_dir()]  # swept config groups: compare their choice
    cfg_run = compose(config_name="config", overrides=overrides, return_hydra_config=bool(groups))  # raises on unknown keys
    for key, value in params.items():
        assert (cfg_run.hydra.runtime.choices[key] if key in groups else OmegaConf.select(cfg_run, key)) == value


EXPERIMENTS = sorted((ROOT / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_experiment_has_a_matching_sweep_file(path: Path):
    """sweeps/<experiment>.yaml runs that experiment over exactly its hydra.sweeper.params grid."""
    sweep_file = ROOT / "sweeps" / f"{path.stem}.yaml"
    assert sweep_file.exists(), f"no W&B sweep file for experiment {path.stem}"
    sweep = yaml.safe_load(sweep_file.read_text())
    assert f"experiment={path.stem}" in sweep["command"]
    params = ((yaml.safe_load(path.read_text()).get("hydra") or {}).get("sweeper") or {}).get("params") or {"seed": "0"}
    grid = {k: [yaml.safe_load(v) for v in str(vals).split(",")] for k, vals in params.items()}
    assert {k: v["values"] for k, v in sweep["parameters"].items()} == grid
