"""Every paper claim checked on the runs at hand: ``python -m curvlab.report DIR... [--out report.md]``.

Each DIR is a results folder (``results/<experiment>/``, :mod:`curvlab.run.table`), a folder of
them (``results/``), or a sweep folder. Runs are grouped by the experiment that produced them
(``experiment_name`` in their config) and each experiment's claims (:data:`CLAIMS`) are checked on
its finished runs: one row per claim with the statistic that tests it, a 95% bootstrap CI over
seeds or training sets, the threshold and the verdict (holds / does not hold / inconclusive / not
run). The report is a markdown table, also logged to W&B (a table and an artifact) when W&B is on.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

from curvlab.claims import NOT_RUN, Row
from curvlab.recovery import claims as recovery
from curvlab.rsc import claims as rsc
from curvlab.run.store import FINISHED, Run
from curvlab.run.table import RUNS, load
from curvlab.run.wandb_dashboard import log_sweep

ClaimFn = Callable[[list[Run], str], list[Row]]

# experiment -> the claims its runs test
CLAIMS: dict[str, tuple[ClaimFn, ...]] = {
    "fig1_mnist": (rsc.min_gbar_increases,),
    "fig1_fashion_mnist": (rsc.min_gbar_increases,),
    "fig1_cifar10": (rsc.min_gbar_increases,),
    "hessian_vs_width": (rsc.hessian_scaling,),
    "rsc_vs_ntk": (rsc.rsc_without_ntk,),
    "geometry_vs_width": (rsc.positive_curvature,),
    "rsc_convnet_width": (rsc.min_gbar_increases,),
    "rsc_resnet_width": (rsc.min_gbar_increases,),
    "fig2_rho": (recovery.rho_increasing,),
    "fig3a_fcn_success": (partial(recovery.success_transition, kind="fcn", d=15, n_low=2000, n_high=5000),
                          recovery.transition_scaling),
    "fig3b_fcn_error": (partial(recovery.error_decreases, kind="fcn", paper="Fig. 3(b), Thm 2"),),
    "fig4a_cnn_success": (partial(recovery.success_transition, kind="cnn", d=15, n_low=None, n_high=200),),
    "fig4b_cnn_error": (partial(recovery.error_decreases, kind="cnn", paper="Fig. 4(b), Thm 2"),),
    "lsc_vs_n": (recovery.local_convexity,),
    "tensor_init_error": (partial(recovery.error_decreases, kind="fcn", key="init_error", paper="Thm 3"),),
}
# experiments whose data has no offline copy here: their rows say so, with the command that runs them
UNAVAILABLE = {"fig1_cifar10": "not run (CIFAR-10 has no offline copy here): "
                               "`python -m curvlab.train -m experiment=fig1_cifar10 data.download=true`"}


def _folders(path: Path) -> list[Path]:
    """A results or sweep folder itself, or the results folders inside it."""
    if (path / RUNS).exists() or not any(path.glob(f"*/{RUNS}")):
        return [path]
    return sorted(p.parent for p in path.glob(f"*/{RUNS}"))


def load_experiments(dirs: list[Path]) -> dict[str, list[Run]]:
    """{experiment: its runs} from every folder given; exits if none holds a run."""
    runs: dict[str, list[Run]] = {}
    for d in dirs:
        if not Path(d).exists():
            raise SystemExit(f"report: {d} does not exist")
        for folder in _folders(Path(d)):
            for run in load(folder):
                runs.setdefault(str(run.config.get("experiment_name")), []).append(run)
    if not runs:
        raise SystemExit(f"report: no finished run under {', '.join(map(str, dirs))}")
    return runs


def experiment_rows(experiment: str, runs: list[Run]) -> list[Row]:
    """The rows of ``experiment``'s claims (:data:`CLAIMS`) on its finished ``runs``; one "not run"
    row when there are none."""
    runs = [r for r in runs if r.status in FINISHED]
    if runs:
        return [row for fn in CLAIMS.get(experiment, ()) for row in fn(runs, experiment)]
    why = UNAVAILABLE.get(experiment, f"not run: `python -m curvlab.reproduce --only {experiment}`")
    return [Row(f"claims of {experiment}", "", experiment, "", threshold=why, verdict=NOT_RUN)]


def check_claims(runs: dict[str, list[Run]]) -> list[Row]:
    """The rows of every claim of :data:`CLAIMS`, "not run" where its experiment has no runs."""
    return [row for experiment in CLAIMS for row in experiment_rows(experiment, runs.get(experiment, []))]


def _num(v: float) -> str:
    return "" if not math.isfinite(v) else f"{v:.3g}"


def markdown(rows: list[Row]) -> str:
    """The report's table, one row per claim."""
    head = "| claim | paper | experiment | statistic | value [95% CI] | threshold | verdict | units |"
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        ci = f" [{_num(r.ci_low)}, {_num(r.ci_high)}]" if math.isfinite(r.ci_low) else ""
        cells = (r.claim, r.paper, f"`{r.experiment}`", r.statistic, _num(r.value) + ci, r.threshold,
                 f"**{r.verdict}**", r.units)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(dirs: list[Path], out: Path, wandb_dir: Path = Path(".")) -> Path:
    """Check every claim on the runs under ``dirs``, write the markdown report to ``out`` and, when
    W&B is on, log it (rows as a table, the file as an artifact) in the W&B group ``report``."""
    rows = check_claims(load_experiments(dirs))
    verdicts = {v: sum(r.verdict == v for r in rows) for v in dict.fromkeys(r.verdict for r in rows)}
    summary = ", ".join(f"{n} {v}" for v, n in verdicts.items())
    text = (f"# curvlab report\n\nEvery paper claim checked on {', '.join(f'`{d}`' for d in dirs)}: {summary}.\n"
            "CIs are 95% percentile bootstraps over the units named in the last column.\n\n" + markdown(rows))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    log_sweep("report", [], [asdict(r) for r in rows], out_dir=wandb_dir, report_md=out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m curvlab.report", description=__doc__)
    parser.add_argument("dirs", type=Path, nargs="+", help="results or sweep folders")
    parser.add_argument("--out", type=Path, default=Path("report.md"))
    args = parser.parse_args(argv)
    print(write_report(args.dirs, args.out))


if __name__ == "__main__":
    main()
