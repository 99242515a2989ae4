"""RSC paper, Figure 1: ||g_bar_t|| along GD for several widths, and min_t ||g_bar_t|| vs width."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import matplotlib.pyplot as plt

from curvlab.figures import DIVERGED_STYLE, OK, save, selected
from curvlab.store import Run


def _padded_mean(curves: list[np.ndarray]) -> np.ndarray:
    """Mean over seeds at each step, over the seeds still running at that step."""
    out = np.full((len(curves), max(len(c) for c in curves)), np.nan)
    for i, c in enumerate(curves):
        out[i, : len(c)] = c
    return np.nanmean(out, axis=0)


def fig1(runs: list[Run], out_dir: Path) -> list[Path]:
    """Fig. 1(a)/(b) per dataset: (a) ||g_bar_t|| vs t, one curve per width (mean over seeds);
    (b) min_t ||g_bar_t|| vs m, mean +- std over seeds, diverged runs marked."""
    by_data: dict[str, list[Run]] = defaultdict(list)
    for r in selected("fig1", runs):
        by_data[r.config.data.name].append(r)
    paths = []
    for dataset, group in sorted(by_data.items()):
        by_width: dict[int, list[Run]] = defaultdict(list)
        for r in group:
            by_width[int(r.config.model.width)].append(r)
        widths = sorted(by_width)
        fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4.2))
        cmap = plt.get_cmap("viridis", max(len(widths), 2))
        means, stds, ok_widths, bad = [], [], [], []
        for j, m in enumerate(widths):
            ok = [r for r in by_width[m] if r.status in OK]
            bad += [(m, r.summary.get("min_gbar_norm", np.nan)) for r in by_width[m] if r.status == "diverged"]
            if not ok:
                continue
            curves = [np.asarray(r.history()["gbar_norm"]) for r in ok]
            curves = [c[~np.isnan(c)] for c in curves]
            ax_a.plot(_padded_mean(curves), color=cmap(j), label=f"m = {m}")
            mins = np.array([r.summary["min_gbar_norm"] for r in ok])
            ok_widths.append(m)
            means.append(mins.mean())
            stds.append(mins.std())
            ax_b.plot([m] * len(mins), mins, ".", color="gray", alpha=0.6)
        ax_a.set(xlabel="iteration t", ylabel=r"$\|\bar g_t\|_2$", title=f"(a) {dataset}: $\\|\\bar g_t\\|_2$ along GD")
        if ok_widths:
            ax_a.legend(fontsize=8)
            ax_b.errorbar(ok_widths, means, yerr=stds, marker="o", capsize=3, label="mean ± std over seeds")
        if bad:
            ax_b.plot([b[0] for b in bad], [b[1] for b in bad], **DIVERGED_STYLE)
        ax_b.set_xscale("log", base=2)
        ax_b.set(xlabel="width m", ylabel=r"$\min_t \|\bar g_t\|_2$", title=f"(b) {dataset}: min over iterations vs width")
        ax_b.legend(fontsize=8)
        paths.append(save(fig, out_dir / f"fig1_{dataset}.png"))
    return paths
