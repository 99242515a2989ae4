"""A sweep's figures and claim report on its W&B dashboard: one ``report`` run in the sweep's group,
beside the sweep's own runs, holding each figure (``figures/<stem>``), the report rows as a table
(``report``) and the report's markdown as an artifact. Mode as for a run (:func:`wandb_mode`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from curvlab.run.loggers import wandb_mode


def _report_table(rows: list[dict[str, Any]]) -> Any:
    """The rows as a ``wandb.Table``: one column per key in first-seen order, None where a row lacks it."""
    import wandb

    columns = list(dict.fromkeys(k for row in rows for k in row))
    return wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows], allow_mixed_types=True)


def log_sweep(group: str, figures: list[Path], rows: list[dict[str, Any]], *, out_dir: Path,
              report_md: Path | None = None, project: str = "curvlab", entity: str | None = None) -> Path | None:
    """Log the sweep's figures (PNGs) and report rows to a run ``<group>-report`` (job type ``report``)
    written under ``out_dir``; its local run folder, or None when W&B is disabled."""
    mode = wandb_mode("auto")
    if mode == "disabled":
        return None
    import wandb

    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{group}-report"
    with wandb.init(project=project, entity=entity, group=group, job_type="report", name=name, dir=str(out_dir),
                    mode=mode, reinit="create_new") as run:
        run.log({**{f"figures/{p.stem}": wandb.Image(str(p)) for p in figures}, "report": _report_table(rows)})
        if report_md is not None:
            artifact = wandb.Artifact(re.sub(r"[^\w.-]", "-", name), type="report")
            artifact.add_file(str(report_md))
            run.log_artifact(artifact)
        return Path(run.settings.sync_dir)
