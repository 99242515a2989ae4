"""Figures of training beyond the paper's GD on the square loss (step size, optimizers, losses):

* :func:`sharpness`     Lemma 5.2's step omega / beta against the edge of stability: lr * lambda_max(theta_t)
                        next to 2, ||g_bar_t|| and the loss, per width, one curve per step rule (omega
                        or a constant lr), and the largest single-step loss increase of each
* :func:`optimizers`    min_t ||g_bar_t|| vs width for GD, SGD and Adam, one panel per optimizer and
                        one line per batch size
* :func:`loss_terms`    Theorem B.1's terms along GD per width: ||g_bar_t||, lambda_t and alpha_t
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from curvlab.plotting import DIVERGED_STYLE, save
from curvlab.rsc.figures import check_series, group_by, padded_mean, series, width_of
from curvlab.run.store import DIVERGED, PLOTTED, Run


def _step_rule(r: Run) -> str:
    """``ω = x`` for lr = auto (omega / beta_0), else ``lr = x``."""
    o = r.config.optimizer
    return f"ω = {float(o.omega):g}" if o.lr == "auto" else f"lr = {float(o.lr):g}"


def largest_loss_increase(run: Run) -> float:
    """max_t (L_{t+1} - L_t), 0 for a loss that never rises: the size of GD's loss spikes."""
    loss = series(run, "loss")
    return float(max(np.diff(loss).max(initial=0.0), 0.0)) if len(loss) > 1 else 0.0


def sharpness(runs: list[Run], out_dir: Path) -> list[Path]:
    """Per width: (a) lr * lambda_max(theta_t) against t (where the Hessian check ran), one colour per
    step rule (lr = omega / beta_0 starts at omega), with GD's stability limit 2; (b) ||g_bar_t||;
    (c) the loss. Diverged runs are drawn to where they blew up, dashed. Writes the largest
    single-step loss increase per width and step rule (max over seeds) to ``sharpness_spikes.json``."""
    paths, spikes = [], {}
    for m, group in group_by(runs, width_of).items():
        fig, (ax_a, ax_b, ax_c) = plt.subplots(1, 3, figsize=(15, 4.2))
        by_rule = group_by(group, _step_rule)
        spikes[m] = {rule: max(largest_loss_increase(r) for r in rs) for rule, rs in by_rule.items()}
        cmap = plt.get_cmap("plasma", max(len(by_rule), 2) + 1)
        for j, (rule, rs) in enumerate(by_rule.items()):
            for i, r in enumerate(rs):
                style = {"color": cmap(j), "ls": "--" if r.status == DIVERGED else "-", "alpha": 0.8,
                         "label": rule if i == 0 else None}
                ax_a.plot(*check_series(r, "hessian", "lr_times_lambda_max"), marker=".", **style)
                ax_b.plot(series(r, "gbar_norm"), **style)
                ax_c.plot(series(r, "loss"), **style)
        ax_a.axhline(2.0, color="k", ls=":", label="2: GD's stability limit")
        ax_a.set(yscale="log", xlabel="iteration t", ylabel=r"$\eta\,\lambda_{\max}(\nabla^2 L(\theta_t))$",
                 title=f"(a) m = {m}: sharpness in units of 2/η")
        ax_b.set(xlabel="iteration t", ylabel=r"$\|\bar g_t\|_2$", title=r"(b) $\|\bar g_t\|_2$")
        ax_c.set(yscale="log", xlabel="iteration t", ylabel="training loss", title="(c) loss")
        for ax in (ax_a, ax_b, ax_c):
            ax.grid(alpha=0.3)
        ax_c.legend(fontsize=8)
        paths.append(save(fig, out_dir / f"sharpness_m{m}.png"))
    (out_dir / "sharpness_spikes.json").write_text(json.dumps(spikes, indent=1))
    return paths


def _optimizer_name(r: Run) -> str:
    o = r.config.optimizer
    name = str(o._target_).rsplit(".", 1)[-1]
    momentum = o.get("momentum")
    return f"{name} (momentum {momentum:g})" if momentum else name


def _batch(r: Run) -> float:
    b = r.config.data.get("batch_size")
    return np.inf if b is None else float(b)


def _batch_label(b: float, n: int) -> str:
    return "full batch" if b == np.inf or b >= n else f"batch {b:g}"


def optimizers(runs: list[Run], out_dir: Path) -> list[Path]:
    """||g_bar_t|| (on the full training set) vs width: one column per optimizer, one line per batch
    size, mean +- std over seeds; top row min_t (Fig. 1(b)'s statistic), bottom row the last iterate's
    (the minimum often sits at theta_0, where every optimizer starts); diverged runs marked."""
    by_opt = group_by(runs, _optimizer_name)
    fig, axes = plt.subplots(2, len(by_opt), figsize=(5 * len(by_opt), 7.5), sharey="row", squeeze=False)
    stats = (("min_t", lambda r: r.summary["min_gbar_norm"]), ("last iterate", lambda r: series(r, "gbar_norm")[-1]))
    for col, (name, group) in enumerate(by_opt.items()):
        for row, (what, value) in enumerate(stats):
            ax = axes[row][col]
            for b, rs in group_by(group, _batch).items():
                by_w = group_by([r for r in rs if r.status in PLOTTED], width_of)
                vals = [np.array([value(r) for r in v]) for v in by_w.values()]
                ax.errorbar(list(by_w), [v.mean() for v in vals], yerr=[v.std() for v in vals], marker="o",
                            capsize=3, label=_batch_label(b, int(rs[0].config.data.get("n", 0) or 0)))
                bad = [(width_of(r), r.summary.get("min_gbar_norm", np.nan)) for r in rs if r.status == DIVERGED]
                if bad and row == 0:
                    ax.plot(*zip(*bad), **DIVERGED_STYLE)
            ax.set(xscale="log", xlabel="width m", title=f"{name}: {what}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    axes[0][0].set_ylabel(r"$\min_t \|\bar g_t\|_2$ (full training set)")
    axes[1][0].set_ylabel(r"$\|\bar g_T\|_2$ at the last iterate")
    return [save(fig, out_dir / "optimizers.png")]


def loss_terms(runs: list[Run], out_dir: Path) -> list[Path]:
    """Per loss: (a) ||g_bar_t||, (b) lambda_t = (1/n) sum_i ||l'_i||^2 and (c) the restricted
    curvature alpha_t (min over the sampled cone directions) along GD, one curve per width (mean over
    seeds): Theorem B.1's alpha_t = a kappa^2 ||g_bar_t||^2 - (c_4 + c_H sqrt(lambda_t)) / sqrt(m)."""
    paths = []
    for loss, group in group_by(runs, lambda r: str(r.config.loss.name)).items():
        fig, (ax_a, ax_b, ax_c) = plt.subplots(1, 3, figsize=(15, 4.2))
        by_w = group_by(group, width_of)
        cmap = plt.get_cmap("viridis", max(len(by_w), 2))
        for j, (m, rs) in enumerate(by_w.items()):
            ax_a.plot(padded_mean([series(r, "gbar_norm") for r in rs]), color=cmap(j), label=f"m = {m}")
            for metric, ax in (("lambda_t", ax_b), ("alpha", ax_c)):
                name = "loss_curvature" if metric == "lambda_t" else "restricted_curvature"
                for i, r in enumerate(rs):
                    ax.plot(*check_series(r, name, metric), ".-", color=cmap(j), alpha=0.7,
                            label=f"m = {m}" if i == 0 else None)
        ax_a.set(xlabel="iteration t", ylabel=r"$\|\bar g_t\|_2$", title=f"(a) {loss}: " + r"$\|\bar g_t\|_2$")
        ax_b.set(yscale="log", xlabel="iteration t", ylabel=r"$\lambda_t$", title=r"(b) $\lambda_t$ (Thm B.1)")
        ax_c.axhline(0.0, color="k", lw=0.8)
        ax_c.set(xlabel="iteration t", ylabel=r"$\alpha_t$", title=r"(c) restricted curvature $\alpha_t$")
        for ax in (ax_a, ax_b, ax_c):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        paths.append(save(fig, out_dir / f"loss_terms_{loss}.png"))
    return paths
