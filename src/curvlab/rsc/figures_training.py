"""Figures of training beyond the paper's GD on the square loss (step size, optimizers, losses):

* :func:`sharpness`     Lemma 5.2's step omega / beta against the edge of stability: lr * lambda_max(theta_t)
                        next to 2, ||g_bar_t|| and the loss, per width, one curve per step rule (omega
                        or a constant lr), and the largest single-step loss increase of each
* :func:`optimizers`    min_t ||g_bar_t|| vs width for GD, SGD and Adam, one panel per optimizer and
                        one band per batch size
* :func:`loss_terms`    Theorem B.1's terms along GD per width: ||g_bar_t||, lambda_t and alpha_t
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from curvlab.plotting import claim, legend, save, seeds_note
from curvlab.rsc.figures import (
    check_band,
    check_series,
    gbar_curves,
    group_by,
    mark_diverged,
    series,
    series_band,
    width_band,
    width_of,
)
from curvlab.run.store import DIVERGED, PLOTTED, Run


def _step_rule(r: Run) -> str:
    """``ω = x`` for lr = auto (omega / beta_0), else ``lr = x``."""
    o = r.config.optimizer
    return f"ω = {float(o.omega):g}" if o.lr == "auto" else f"lr = {float(o.lr):g}"


def largest_loss_increase(run: Run) -> float:
    """max_t (L_{t+1} - L_t), 0 for a loss that never rises: the size of GD's loss spikes."""
    loss = series(run, "loss")
    return float(max(np.diff(loss).max(initial=0.0), 0.0)) if len(loss) > 1 else 0.0


def _rule_curves(axes, runs: list[Run], color, label: str) -> None:
    """One step rule's curves on :func:`sharpness`'s panels: a band over the runs that did not diverge,
    and each diverged run dashed up to where it blew up."""
    ok = [r for r in runs if r.status != DIVERGED]
    ax_a, ax_b, ax_c = axes
    check_band(ax_a, ok, "hessian", "lr_times_lambda_max", marker=".", color=color, label=label)
    series_band(ax_b, ok, "gbar_norm", color=color, label=label)
    series_band(ax_c, ok, "loss", color=color, label=label)
    for i, r in enumerate(r for r in runs if r.status == DIVERGED):
        style = dict(color=color, ls="--", alpha=0.8, label=f"{label} (diverged)" if i == 0 and not ok else None)
        ax_a.plot(*check_series(r, "hessian", "lr_times_lambda_max"), marker=".", **style)
        ax_b.plot(series(r, "gbar_norm"), **style)
        ax_c.plot(series(r, "loss"), **style)


def sharpness(runs: list[Run], out_dir: Path) -> list[Path]:
    """Per width: (a) lr * lambda_max(theta_t) against t (where the Hessian check ran), one colour per
    step rule (lr = omega / beta_0 starts at omega), with GD's stability limit 2; (b) ||g_bar_t||;
    (c) the loss; bands over the seeds that did not diverge, diverged runs dashed to where they blew
    up. Writes the largest single-step loss increase per width and step rule (max over seeds) to
    ``sharpness_spikes.json``."""
    paths, spikes = [], {}
    for m, group in group_by(runs, width_of).items():
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
        by_rule = group_by(group, _step_rule)
        spikes[m] = {rule: max(largest_loss_increase(r) for r in rs) for rule, rs in by_rule.items()}
        cmap = plt.get_cmap("plasma", max(len(by_rule), 2) + 1)
        for j, (rule, rs) in enumerate(by_rule.items()):
            _rule_curves(axes, rs, cmap(j), rule)
        ax_a, ax_b, ax_c = axes
        ax_a.axhline(2.0, color="k", ls=":")
        ax_a.set(yscale="log", xlabel="iteration t", ylabel=r"$\eta\,\lambda_{\max}(\nabla^2 L(\theta_t))$",
                 title=f"(a) m = {m}: sharpness (dotted: GD's stability limit 2)")
        ax_b.set(xlabel="iteration t", ylabel=r"$\|\bar g_t\|_2$", title=r"(b) $\|\bar g_t\|_2$")
        ax_c.set(yscale="log", xlabel="iteration t", ylabel="training loss", title="(c) loss")
        for ax in axes:
            ax.grid(alpha=0.3)
        legend(ax_c, fontsize=8)
        claim(fig, f"Lemma 5.2 at m = {m}: η = ω/β, ω ∈ (0, 2), is stable when β bounds λmax(∇²L) along the path; "
                   f"here β = λmax at θ0, and GD stays stable while η λmax(θ_t) < 2 (dotted) ({seeds_note(group)})")
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


def _last_gbar(r: Run) -> float:
    return float(series(r, "gbar_norm")[-1])


def _batch_bands(ax, runs: list[Run], value, marked: bool) -> None:
    """:func:`optimizers`' bands vs width, one per batch size; with ``marked`` diverged runs marked."""
    for b, rs in group_by(runs, _batch).items():
        width_band(ax, [r for r in rs if r.status in PLOTTED], value, marker="o",
                   label=_batch_label(b, int(rs[0].config.data.get("n", 0) or 0)))
        if marked:
            mark_diverged(ax, rs)
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    legend(ax, fontsize=8)


def optimizers(runs: list[Run], out_dir: Path) -> list[Path]:
    """||g_bar_t|| (on the full training set) vs width: one column per optimizer, one band per batch
    size (mean over seeds, min-max); top row min_t (Fig. 1(b)'s statistic), bottom row the last
    iterate's (the minimum often sits at theta_0, where every optimizer starts); diverged runs marked."""
    by_opt = group_by(runs, _optimizer_name)
    fig, axes = plt.subplots(2, len(by_opt), figsize=(5 * len(by_opt), 8), sharey="row", squeeze=False)
    stats = (("min_t", lambda r: r.summary["min_gbar_norm"]), ("last iterate", _last_gbar))
    for col, (name, group) in enumerate(by_opt.items()):
        for row, (what, value) in enumerate(stats):
            _batch_bands(axes[row][col], group, value, marked=row == 0)
            axes[row][col].set(xlabel="width m", title=f"{name}: {what}")
    axes[0][0].set_ylabel(r"$\min_t \|\bar g_t\|_2$ (full training set)")
    axes[1][0].set_ylabel(r"$\|\bar g_T\|_2$ at the last iterate")
    claim(fig, "RSC beyond full-batch GD: min_t ‖ḡ_t‖ on the full training set increases with m for SGD and "
               f"Adam at every batch size, as Fig. 1(b) shows for GD ({seeds_note(runs)})")
    return [save(fig, out_dir / "optimizers.png")]


def loss_terms(runs: list[Run], out_dir: Path) -> list[Path]:
    """Per loss: (a) ||g_bar_t||, (b) lambda_t = (1/n) sum_i ||l'_i||^2 and (c) the restricted
    curvature alpha_t (min over the sampled cone directions) along GD, one band per width (mean over
    seeds, min-max): Theorem B.1's alpha_t = a kappa^2 ||g_bar_t||^2 - (c_4 + c_H sqrt(lambda_t)) / sqrt(m)."""
    paths = []
    for loss, group in group_by(runs, lambda r: str(r.config.loss.name)).items():
        fig, (ax_a, ax_b, ax_c) = plt.subplots(1, 3, figsize=(15, 4.6))
        gbar_curves(ax_a, group)
        by_w = group_by(group, width_of)
        cmap = plt.get_cmap("viridis", max(len(by_w), 2))
        for j, (m, rs) in enumerate(by_w.items()):
            check_band(ax_b, rs, "loss_curvature", "lambda_t", marker=".", color=cmap(j), label=f"m = {m}")
            check_band(ax_c, rs, "restricted_curvature", "alpha", marker=".", color=cmap(j), label=f"m = {m}")
        ax_a.set_title(f"(a) {loss}: " + r"$\|\bar g_t\|_2$")
        ax_b.set(yscale="log", xlabel="iteration t", ylabel=r"$\lambda_t$", title=r"(b) $\lambda_t$ (Thm B.1)")
        ax_c.axhline(0.0, color="k", lw=0.8)
        ax_c.set(xlabel="iteration t", ylabel=r"$\alpha_t$", title=r"(c) restricted curvature $\alpha_t$")
        for ax in (ax_b, ax_c):
            ax.grid(alpha=0.3)
        claim(fig, f"Theorem B.1 ({loss} loss): RSC holds along GD, α_t = aκ²‖ḡ_t‖² − (c4 + cH √λ_t)/√m > 0, "
                   f"when ‖ḡ_t‖² outweighs (c4 + cH √λ_t)/√m ({seeds_note(group)})")
        paths.append(save(fig, out_dir / f"loss_terms_{loss}.png"))
    return paths
