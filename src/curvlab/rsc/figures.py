"""Figures of the RSC paper from a sweep's runs, one per claim.

* :func:`fig1`                 Figure 1: ||g_bar_t|| along GD for several widths, and min_t ||g_bar_t|| vs m
* :func:`hessian_width`        Theorem 4.1: predictor Hessian norm vs m (log-log slope vs -1/2), per
                               (L, sigma_1); Lemma 4.1's ||grad_x f|| and ||grad_theta f|| vs m
* :func:`ball_distances`       Definition 3.1 / Remark 5.4: layerwise spectral distance to theta_0 vs
                               t and vs m, next to sqrt(m) (the radius limit rho < sqrt(m))
* :func:`rsc_vs_ntk`           Remarks 5.5-5.6: lambda_min(K) vs the RSC form 1^T K 1 / n along GD,
                               and the loss (geometric convergence or not)
* :func:`restricted_curvature` Theorem 5.1 / Lemma 5.2: alpha_t along GD and the observed
                               contraction next to the bound 1 - alpha omega (2 - omega) / beta
* :func:`width_scaling`        any model (conv net, ResNet, ...): min_t ||g_bar_t|| and the
                               predictor-Hessian norm vs width, fitted slope vs Theorem 4.1's -1/2

Check metrics come from the history columns ``check/<name>/<metric>``. A check's value is taken
only from the rows where that check actually ran, recognised by a new ``check/<name>/seconds``
value (a logger that repeats the last value on steps without the check, or leaves them empty,
reads the same), plus the end-of-run checks in ``summary["final_checks"]``.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from curvlab.claims import loglog_slope
from curvlab.plotting import DIVERGED_STYLE, save
from curvlab.run.store import DIVERGED, PLOTTED, Run


def series(run: Run, key: str) -> np.ndarray:
    """A per-step history column of ``run`` without its empty rows (steps logging other keys only)."""
    v = np.asarray(run.history().get(key, []), dtype=float)
    return v[~np.isnan(v)]


def padded_mean(curves: list[np.ndarray]) -> np.ndarray:
    """Mean over seeds at each step, over the seeds still running at that step."""
    out = np.full((len(curves), max(len(c) for c in curves)), np.nan)
    for i, c in enumerate(curves):
        out[i, : len(c)] = c
    return np.nanmean(out, axis=0)


def fig1(runs: list[Run], out_dir: Path) -> list[Path]:
    """Fig. 1(a)/(b) per dataset: (a) ||g_bar_t|| vs t, one curve per width (mean over seeds);
    (b) min_t ||g_bar_t|| vs m, mean +- std over seeds, diverged runs marked."""
    by_data: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
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
            ok = [r for r in by_width[m] if r.status in PLOTTED]
            bad += [(m, r.summary.get("min_gbar_norm", np.nan)) for r in by_width[m] if r.status == DIVERGED]
            if not ok:
                continue
            curves = [series(r, "gbar_norm") for r in ok]
            ax_a.plot(padded_mean(curves), color=cmap(j), label=f"m = {m}")
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


def check_series(run: Run, name: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``check/<name>/<metric>`` at the steps where the check ran, the end-of-run
    check included (at the final step)."""
    h = run.history()
    secs, vals = h.get(f"check/{name}/seconds"), h.get(f"check/{name}/{metric}")
    steps_col = h.get("step")
    steps: list[float] = []
    values: list[float] = []
    if secs is not None and vals is not None and steps_col is not None:
        prev = math.nan
        for s, t, v in zip(secs, steps_col, vals):
            if not math.isnan(s) and s != prev and not math.isnan(v):
                steps.append(t)
                values.append(v)
            if not math.isnan(s):
                prev = s
    final = (run.summary.get("final_checks") or {}).get(f"check/{name}/{metric}")
    if final is not None and math.isfinite(final):
        end = float(run.summary.get("steps", steps[-1] + 1 if steps else 0))
        if not steps or steps[-1] != end or values[-1] != final:
            steps.append(end)
            values.append(final)
    return np.asarray(steps, dtype=float), np.asarray(values, dtype=float)


def at_init(run: Run, name: str, metric: str) -> float:
    steps, vals = check_series(run, name, metric)
    return float(vals[0]) if len(steps) and steps[0] == 0 else math.nan


def at_end(run: Run, name: str, metric: str) -> float:
    v = (run.summary.get("final_checks") or {}).get(f"check/{name}/{metric}")
    return float(v) if v is not None else math.nan


def group_by(runs: list[Run], key) -> dict:
    groups: dict = defaultdict(list)
    for r in runs:
        groups[key(r)].append(r)
    return dict(sorted(groups.items()))


def width_of(r: Run) -> int:
    return int(r.config.model.width)


def _seed(r: Run) -> int:
    return int(r.config.seed)


def _ref_line(ax, m: np.ndarray, v0: float, slope: float, label: str) -> None:
    ms = np.array([m.min(), m.max()], dtype=float)
    ax.plot(ms, v0 * (ms / ms[0]) ** slope, "k--", lw=1, label=label)


def hessian_width(runs: list[Run], out_dir: Path) -> list[Path]:
    """(a) ||grad^2 f(theta_0; x)||_2 vs m, (b) the same at theta_T, per (L, sigma_1), with fitted
    log-log slopes; (c) ||grad_x f|| and ||grad_theta f|| at theta_0 vs m (Lemma 4.1). Writes the
    slopes to ``hessian_width_slopes.json`` next to the figure."""
    groups = group_by(runs, lambda r: (int(r.config.model.depth), float(r.config.init.sigma1)))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    cmap = plt.get_cmap("tab10")
    slopes: dict[str, dict[str, float]] = {}
    all_m: list[int] = []
    for j, ((depth, s1), group) in enumerate(groups.items()):
        m = np.array([width_of(r) for r in group], dtype=float)
        all_m += list(m)
        init = np.array([at_init(r, "hessian", "pred_norm_max") for r in group])
        end = np.array([at_end(r, "hessian", "pred_norm_max") if r.status in PLOTTED else math.nan for r in group])
        gx = np.array([at_init(r, "lipschitz", "grad_x_max") for r in group])
        gt = np.array([at_init(r, "lipschitz", "grad_theta_max") for r in group])
        regime = "inside" if s1 <= 1.0 else "outside"
        tag = f"L={depth}, σ1={s1:g}"
        slopes[tag] = {
            "regime (Remark 4.1)": regime,
            "hessian_init": loglog_slope(m, init),
            "hessian_end": loglog_slope(m, end),
            "grad_x_init": loglog_slope(m, gx),
            "grad_theta_init": loglog_slope(m, gt),
            "widths": sorted({int(w) for w in m}),
            "runs": len(group),
        }
        color = cmap(j % 10)
        style = "-" if regime == "inside" else ":"
        for ax, vals, key in ((axes[0], init, "hessian_init"), (axes[1], end, "hessian_end")):
            widths = sorted(set(m[np.isfinite(vals)]))
            if not widths:
                continue
            geo = [np.exp(np.mean(np.log(vals[(m == w) & np.isfinite(vals)]))) for w in widths]
            ax.plot(m, vals, ".", color=color, alpha=0.35)
            ax.plot(widths, geo, style, marker="o", color=color, label=f"{tag}: slope {slopes[tag][key]:+.2f}")
        widths = sorted(set(m[np.isfinite(gx)]))
        if widths:
            axes[2].plot(widths, [np.nanmean(gx[m == w]) for w in widths], style, marker="o", color=color,
                         label=f"‖∇x f‖ {tag}: {slopes[tag]['grad_x_init']:+.2f}")
            axes[2].plot(widths, [np.nanmean(gt[m == w]) for w in widths], style, marker="s", color=color,
                         alpha=0.5, label=f"‖∇θ f‖ {tag}: {slopes[tag]['grad_theta_init']:+.2f}")
    m_all = np.array(sorted(set(all_m)), dtype=float)
    for ax, title in ((axes[0], "(a) at init θ0"), (axes[1], "(b) after GD, θT")):
        ys = [ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_linestyle() != "None"]
        if len(m_all) > 1 and ys:
            _ref_line(ax, m_all, max(ys), -0.5, "slope −1/2 (Thm 4.1)")
        ax.set(xscale="log", yscale="log", xlabel="width m", ylabel=r"$\|\nabla^2_\theta f(\theta;x)\|_2$ (max over inputs)",
               title=f"{title}: predictor Hessian norm")
        ax.legend(fontsize=7)
    if len(m_all) > 1:
        _ref_line(axes[2], m_all, 1.0, -0.5, "slope −1/2")
    axes[2].set(xscale="log", yscale="log", xlabel="width m", ylabel="max over training inputs",
                title="(c) Lemma 4.1 at θ0: ‖∇x f‖ ~ m^-1/2, ‖∇θ f‖ = O(1)")
    axes[2].legend(fontsize=6)
    for ax in axes:
        ax.set_xscale("log", base=2)
    path = save(fig, out_dir / "hessian_width.png")
    (out_dir / "hessian_width_slopes.json").write_text(json.dumps(slopes, indent=1))
    return [path]


def ball_distances(runs: list[Run], out_dir: Path) -> list[Path]:
    """(a) max_l ||W_t^(l) - W_0^(l)||_2 vs t per width (mean over seeds) with ||v_t - v_0|| dashed;
    (b) at the end, each layer's spectral distance, ||v_T - v_0|| and ||theta_T - theta_0|| vs m,
    next to sqrt(m) — Theorem 4.1 needs rho < sqrt(m)."""
    groups = group_by(runs, width_of)
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(12, 4.6))
    cmap = plt.get_cmap("viridis", max(len(groups), 2))
    depth = max(int(r.config.model.depth) for r in runs)
    ends: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for j, (m, group) in enumerate(groups.items()):
        for k, r in enumerate(group):
            t, v = check_series(r, "distance", "spec_max")
            th, vh = check_series(r, "distance", "head")
            lab = f"m = {m}" if k == 0 else None
            ax_a.plot(t, v, "-", color=cmap(j), alpha=0.8, label=lab)
            ax_a.plot(th, vh, "--", color=cmap(j), alpha=0.5)
            for key in [f"spec_l{l}" for l in range(1, depth + 1)] + ["head", "euclid"]:
                _, vals = check_series(r, "distance", key)
                if len(vals):
                    ends[key].append((m, float(vals[-1])))
    ax_a.set(yscale="log", xlabel="iteration t", ylabel="distance to θ0",
             title=r"(a) $\max_l\|W_t^{(l)}-W_0^{(l)}\|_2$ (solid), $\|v_t-v_0\|_2$ (dashed)")
    ax_a.legend(fontsize=8)
    markers = dict(head="s", euclid="^")
    for key, pts in sorted(ends.items()):
        ms = np.array([p[0] for p in pts], dtype=float)
        vs = np.array([p[1] for p in pts])
        widths = sorted(set(ms))
        mean = [vs[ms == w].mean() for w in widths]
        label = {"head": r"$\|v_T-v_0\|_2$", "euclid": r"$\|\theta_T-\theta_0\|_2$ (Euclidean)"}.get(
            key, f"layer {key[6:]}: " + r"$\|W_T-W_0\|_2$")
        ax_b.plot(widths, mean, marker=markers.get(key, "o"), label=f"{label}, slope {loglog_slope(ms, vs):+.2f}")
    widths = np.array(sorted(groups), dtype=float)
    ax_b.plot(widths, np.sqrt(widths), "k--", lw=1, label=r"$\sqrt{m}$ (radius limit $\rho<\sqrt{m}$)")
    ax_b.set(xscale="log", yscale="log", xlabel="width m", ylabel="distance at the end of GD",
             title="(b) final distances vs width (mean over seeds)")
    ax_b.set_xscale("log", base=2)
    ax_b.legend(fontsize=7)
    return [save(fig, out_dir / "ball_distances.png")]


def _setting(r: Run) -> tuple[int, float, float]:
    dup = float(r.config.data.get("duplicates", 0.0) or 0.0)
    noise = float(r.config.data.get("duplicate_noise", 0.0) or 0.0) if dup > 0 else 0.0
    return width_of(r), dup, noise


def _setting_label(key: tuple[int, float, float], n: int) -> str:
    m, dup, noise = key
    data = "distinct inputs" if dup == 0 else (f"{dup:.0%} exact duplicates" if noise == 0 else
                                                f"{dup:.0%} near-duplicates ({noise:g})")
    return f"m={m} ({'<' if m < n else '>'} n), {data}"


def rsc_vs_ntk(runs: list[Run], out_dir: Path) -> list[Path]:
    """(a) lambda_min(K_ntk(theta_t)) (dashed) and the RSC form v^T K v at v = 1/sqrt(n), i.e.
    n ||g_bar_t||^2 (solid), along GD, per setting (first seed); (b) the loss on a log scale
    (a straight line = geometric convergence); (c) min_t lambda_min and min_t n||g_bar_t||^2 per
    setting over seeds. Values of lambda_min at or below 1e-12 lambda_max are drawn at that floor."""
    groups = group_by(runs, _setting)
    fig, (ax_a, ax_b, ax_c) = plt.subplots(1, 3, figsize=(17, 4.8))
    cmap = plt.get_cmap("tab10")
    labels, mins_l, mins_q = [], [], []
    for j, (key, group) in enumerate(groups.items()):
        n = int(group[0].config.data.n)
        label = _setting_label(key, n)
        color = cmap(j % 10)
        r = sorted(group, key=lambda r: r.config.seed)[0]
        t, lmin = check_series(r, "ntk", "lambda_min")
        _, lmax = check_series(r, "ntk", "lambda_max")
        tq, quad = check_series(r, "ntk", "quad_rsc")
        floor = 1e-12 * np.nanmax(lmax) if len(lmax) else 1e-12
        ax_a.plot(tq, quad, "-", color=color, label=label)
        ax_a.plot(t, np.maximum(lmin, floor), "--", color=color)
        loss = np.asarray(r.history().get("loss", []), dtype=float)
        steps = np.asarray(r.history().get("step", []), dtype=float)
        ok = np.isfinite(loss)
        ax_b.plot(steps[ok], loss[ok], color=color, label=f"{label} [{r.status}]")
        labels.append(label)
        mins_l.append([max(float(np.nanmin(check_series(g, "ntk", "lambda_min")[1])), 0.0) for g in group
                       if len(check_series(g, "ntk", "lambda_min")[1])])
        mins_q.append([float(np.nanmin(check_series(g, "ntk", "quad_rsc")[1])) for g in group
                       if len(check_series(g, "ntk", "quad_rsc")[1])])
    ax_a.plot([], [], "k--", label=r"$\lambda_{\min}(K)$; drawn at $10^{-12}\lambda_{\max}$ when below (numerically 0)")
    ax_a.set(yscale="log", xlabel="iteration t", ylabel="quadratic form of K_ntk(θt)",
             title=r"(a) $v^\top K v$ at $v=\mathbf{1}/\sqrt{n}$ = $n\|\bar g_t\|^2$ (solid) vs $\lambda_{\min}(K)$ (dashed)")
    ax_a.legend(fontsize=6)
    ax_b.set(yscale="log", xlabel="iteration t", ylabel="training loss", title="(b) loss along GD")
    ax_b.legend(fontsize=6)
    x = np.arange(len(labels))
    for xi, (ls, qs) in enumerate(zip(mins_l, mins_q)):
        ax_c.plot([xi - 0.1] * len(ls), np.maximum(ls, 1e-18), "v", color="crimson",
                  label=r"$\min_t\lambda_{\min}(K)$" if xi == 0 else None)
        ax_c.plot([xi + 0.1] * len(qs), qs, "o", color="navy", label=r"$\min_t n\|\bar g_t\|^2$" if xi == 0 else None)
    ax_c.set_xticks(x, labels, rotation=35, ha="right", fontsize=6)
    ax_c.set(yscale="log", title="(c) minima over t, all seeds (λmin ≤ 0 at 1e-18)")
    ax_c.legend(fontsize=7)
    return [save(fig, out_dir / "rsc_vs_ntk.png")]


def restricted_curvature(runs: list[Run], out_dir: Path) -> list[Path]:
    """Per width (first seed): (a) the restricted curvature estimate alpha_t (min over sampled cone
    directions, with and without the Hessian's hardest direction), the curvature along the GD step,
    and Remark 5.2's 2 kappa^2 ||g_bar_t||^2, along GD; (b) the observed contraction
    (L_{t+1} - L_min) / (L_t - L_min) (dots; thin line: every step from the loss history) and the
    gap ratio to the estimate of inf_{B_t} L, the left side of eq. (13) (triangles), next to
    Lemma 5.2's factor 1 - alpha omega (2 - omega) / beta with alpha the cone estimate (filled
    squares) and the GD-step curvature (hollow). Only the triangles are bounded by Lemma 5.2; the
    gap to a global L_min also carries Theorem 5.3's (1 - gamma_t)."""
    groups = group_by(runs, width_of)
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(13, 4.8))
    cmap = plt.get_cmap("viridis", max(len(groups), 2))
    marked: list[np.ndarray] = []
    for j, (m, group) in enumerate(groups.items()):
        r = sorted(group, key=lambda r: r.config.seed)[0]
        c = cmap(j)
        t, a = check_series(r, "restricted_curvature", "alpha")
        if not len(t):
            continue
        _, ar = check_series(r, "restricted_curvature", "alpha_random")
        ts, astep = check_series(r, "restricted_curvature", "alpha_step")
        tu, up = check_series(r, "restricted_curvature", "alpha_upper")
        ax_a.plot(t, ar, "o-", color=c, ms=3, label=f"m={m}: α_t (random cone dirs)")
        ax_a.plot(t, a, "v:", color=c, ms=3)
        ax_a.plot(ts, astep, "x", color=c, ms=4)
        ax_a.plot(tu, up, "-", color=c, alpha=0.35, lw=3)
        tc, obs = check_series(r, "restricted_curvature", "contraction")
        tb, bound = check_series(r, "restricted_curvature", "bound")
        _, bstep = check_series(r, "restricted_curvature", "bound_step")
        loss = np.asarray(r.history().get("loss", []), dtype=float)
        steps = np.asarray(r.history().get("step", []), dtype=float)
        ok = np.isfinite(loss)
        lmin = float(r.config.get("checks", {}).get("restricted_curvature", {}).get("loss_min", 0.0))
        l_ok, s_ok = loss[ok], steps[ok]
        if len(l_ok) > 1:
            ratio = (l_ok[1:] - lmin) / (l_ok[:-1] - lmin)
            ax_b.plot(s_ok[:-1], ratio, "-", color=c, alpha=0.25, lw=0.8)
        ax_b.plot(tc, obs, "o", color=c, ms=4, label=f"m={m}: observed")
        ax_b.plot(tb, bound, "s-", color=c, ms=4, mfc=c, label=f"m={m}: bound (α_t)")
        ax_b.plot(tb, bstep, "s--", color=c, ms=4, mfc="none")
        tcc, cc = check_series(r, "restricted_curvature", "contraction_cone")
        ax_b.plot(tcc, cc, "^", color=c, ms=5, mfc="none")
        marked += [obs, bound, bstep]
    ax_a.plot([], [], "kv:", label="α_t incl. Hessian's hardest cone direction")
    ax_a.plot([], [], "kx", label="curvature along the GD step")
    ax_a.plot([], [], "k-", alpha=0.35, lw=3, label=r"$2\kappa^2 k\|\bar g_t\|^2$ (Remark 5.2)")
    ax_a.set(yscale="symlog", xlabel="iteration t", ylabel="secant curvature",
             title=r"(a) restricted curvature on $Q_\kappa\cap B_{\rho_2}(\theta_t)$")
    ax_a.set_yscale("symlog", linthresh=1e-5)
    ax_a.axhline(0, color="k", lw=0.5)
    ax_a.legend(fontsize=6)
    ax_b.plot([], [], "ks--", mfc="none", label="bound with α = GD-step curvature")
    ax_b.plot([], [], "k^", mfc="none", label=r"gap ratio to estimated $\inf_{B_t}L$ (eq. 13's left side)")
    ax_b.axhline(1, color="k", lw=0.5)
    ax_b.set(xlabel="iteration t", ylabel=r"$(L_{t+1}-L_{\min})/(L_t-L_{\min})$",
             title="(b) per-step contraction vs Lemma 5.2's factor")
    marks = np.concatenate([np.asarray(v, dtype=float) for v in marked] or [np.array([0.9])])
    marks = marks[np.isfinite(marks)]
    if len(marks):
        ax_b.set_ylim(max(float(marks.min()) - 0.02, 0.0), min(max(float(marks.max()) + 0.02, 1.05), 1.5))
    ax_b.legend(fontsize=6)
    return [save(fig, out_dir / "restricted_curvature.png")]


def _model_name(r: Run) -> str:
    """The model's class name (``model._target_``'s last part), e.g. ConvNet."""
    return str(r.config.model.get("_target_", "DeepMLP")).rsplit(".", 1)[-1]


def width_scaling(runs: list[Run], out_dir: Path) -> list[Path]:
    """Per model: (a) min_t ||g_bar_t|| vs width, mean +- std over seeds, diverged runs marked (the RSC
    quantity of Theorem 5.1, Fig. 1(b)'s axis); (b) the predictor-Hessian norm at theta_0 and at the
    end vs width on log-log axes with the fitted slopes next to Theorem 4.1's -1/2. Writes the slopes
    (pooled and per seed) and the mean min_t ||g_bar_t|| per width to ``width_scaling_slopes.json``."""
    paths, slopes = [], {}
    for name, group in group_by(runs, _model_name).items():
        fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4.2))
        by_w = group_by(group, width_of)
        ws = np.array(list(by_w), dtype=float)
        g = [np.array([r.summary["min_gbar_norm"] for r in rs if r.status in PLOTTED]) for rs in by_w.values()]
        ok = np.array([len(v) > 0 for v in g])
        ax_a.errorbar(ws[ok], [v.mean() for v in g if len(v)], yerr=[v.std() for v in g if len(v)], marker="o",
                      capsize=3, label=r"min$_t\,\|\bar g_t\|$")
        bad = [(w, r.summary.get("min_gbar_norm", np.nan)) for w, rs in by_w.items() for r in rs if r.status == DIVERGED]
        if bad:
            ax_a.plot(*zip(*bad), **DIVERGED_STYLE)
        ax_a.set(xscale="log", xlabel="width m", ylabel=r"min$_t\,\|\bar g_t\|$", title=f"{name}: RSC quantity vs width")
        ax_a.grid(alpha=0.3)
        ax_a.legend()
        slopes[name] = {"min_gbar_norm": {int(w): float(v.mean()) for w, v in zip(ws, g) if len(v)}}
        for when, read, marker in (("init", at_init, "o"), ("end", at_end, "s")):
            def norms(rs: list[Run]) -> tuple[np.ndarray, np.ndarray]:
                return (np.array([width_of(r) for r in rs], dtype=float),
                        np.array([read(r, "hessian", "pred_norm_max") if r.status in PLOTTED else math.nan for r in rs]))

            m, v = norms(group)
            slope = loglog_slope(m, v)
            slopes[name][when] = slope
            slopes[name][f"{when}_per_seed"] = [loglog_slope(*norms(rs)) for rs in group_by(group, _seed).values()]
            ax_b.plot(m, v, marker, alpha=0.6, label=f"at {when}: slope {slope:.2f}")
        finite = np.array([at_init(r, "hessian", "pred_norm_max") for r in group])
        if np.isfinite(finite).any():
            i = int(np.nanargmin([width_of(r) for r in group]))
            _ref_line(ax_b, ws, float(finite[i]), -0.5, "slope -1/2 (Thm 4.1)")
        ax_b.set(xscale="log", yscale="log", xlabel="width m", ylabel=r"$\max_i \|\nabla^2_\theta f(\theta; x_i)\|_2$",
                 title=f"{name}: predictor-Hessian norm vs width")
        ax_b.grid(alpha=0.3, which="both")
        ax_b.legend()
        paths.append(save(fig, out_dir / f"width_scaling_{name}.png"))
    (out_dir / "width_scaling_slopes.json").write_text(json.dumps(slopes, indent=1))
    return paths
