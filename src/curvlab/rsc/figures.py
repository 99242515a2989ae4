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
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from curvlab.claims import loglog_slope
from curvlab.plotting import DIVERGED_STYLE, claim, legend, mean_band, padded, save, seeds_note
from curvlab.run.store import DIVERGED, PLOTTED, Run


def series(run: Run, key: str) -> np.ndarray:
    """A per-step history column of ``run`` without its empty rows (steps logging other keys only)."""
    v = np.asarray(run.history().get(key, []), dtype=float)
    return v[~np.isnan(v)]


def step_band(ax, curves: list[tuple[np.ndarray, np.ndarray]], **style) -> None:
    """(steps, values) curves of several seeds as their mean at each step with a min-max band (a step
    only some seeds reached averages those)."""
    steps = np.unique(np.concatenate([s for s, _ in curves] or [np.array([])]))
    samples = np.full((len(curves), len(steps)), np.nan)
    for row, (s, v) in zip(samples, curves):
        row[np.searchsorted(steps, s)] = v
    mean_band(ax, steps, samples, **style)


def series_band(ax, runs: list[Run], key: str, **style) -> None:
    """:func:`step_band` of the history column ``key`` (see :func:`series`) against the iteration."""
    step_band(ax, [(np.arange(len(v)), v) for v in (series(r, key) for r in runs)], **style)


def check_band(ax, runs: list[Run], name: str, metric: str, **style) -> None:
    """:func:`step_band` of ``check/<name>/<metric>`` at the steps where the check ran."""
    step_band(ax, [check_series(r, name, metric) for r in runs], **style)


def width_band(ax, runs: list[Run], value: Callable[[Run], float], **style) -> None:
    """``value`` of each run against its width m: the mean over seeds with a min-max band."""
    by_w = group_by(runs, width_of)
    mean_band(ax, list(by_w), padded([[value(r) for r in rs] for rs in by_w.values()]).T, **style)


def _min_gbar(r: Run) -> float:
    return float(r.summary.get("min_gbar_norm", math.nan))


def mark_diverged(ax, runs: list[Run], value: Callable[[Run], float] = _min_gbar) -> None:
    """Mark the diverged ones of ``runs`` at (width, ``value``)."""
    bad = [(width_of(r), value(r)) for r in runs if r.status == DIVERGED]
    if bad:
        ax.plot(*zip(*bad), **DIVERGED_STYLE)


def _ok(runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.status in PLOTTED]


def gbar_curves(ax, runs: list[Run]) -> None:
    """||g_bar_t|| along training, one band per width over its finished runs (Fig. 1(a)'s axes)."""
    by_w = group_by(runs, width_of)
    cmap = plt.get_cmap("viridis", max(len(by_w), 2))
    for j, (m, rs) in enumerate(by_w.items()):
        series_band(ax, _ok(rs), "gbar_norm", color=cmap(j), label=f"m = {m}")
    ax.set(xlabel="iteration t", ylabel=r"$\|\bar g_t\|_2$")
    ax.grid(alpha=0.3)
    legend(ax, fontsize=8)


def min_gbar_vs_width(ax, runs: list[Run]) -> None:
    """min_t ||g_bar_t|| against m on a log2 axis, diverged runs marked (Fig. 1(b)'s axes)."""
    width_band(ax, _ok(runs), _min_gbar, marker="o", label="mean over seeds (band: min-max)")
    mark_diverged(ax, runs)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="width m", ylabel=r"$\min_t \|\bar g_t\|_2$")
    ax.grid(alpha=0.3)
    legend(ax, fontsize=8)


def fig1(runs: list[Run], out_dir: Path) -> list[Path]:
    """Fig. 1 per dataset: (a) ||g_bar_t|| vs iteration t, one band per width m; (b) min_t ||g_bar_t||
    vs m on a log2 axis, diverged runs marked; means over seeds with min-max bands."""
    paths = []
    for dataset, group in group_by(runs, lambda r: str(r.config.data.name)).items():
        fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4.6))
        gbar_curves(ax_a, group)
        ax_a.set_title(r"(a) $\|\bar g_t\|_2$ over iterations, per width")
        min_gbar_vs_width(ax_b, group)
        ax_b.set_title(r"(b) $\min_t \|\bar g_t\|_2$ vs width")
        claim(fig, f"Fig. 1, {dataset}: ‖ḡ_t‖ stays away from 0 along GD (the RSC condition), and min_t ‖ḡ_t‖ "
                   f"increases with m: RSC holds more comfortably for wider nets ({seeds_note(group)})")
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


# hessian_width's panels: slope key, title, reference slope (None: no reference line)
_NORM_PANELS = (
    ("hessian_init", r"(a) $\|\nabla^2_\theta f\|_2$ at $\theta_0$", -0.5),
    ("hessian_end", r"(b) $\|\nabla^2_\theta f\|_2$ after GD, $\theta_T$", -0.5),
    ("grad_x_init", r"(c) $\|\nabla_x f\|_2$ at $\theta_0$ (Lemma 4.1: $\sim m^{-1/2}$)", -0.5),
    ("grad_theta_init", r"(d) $\|\nabla_\theta f\|_2$ at $\theta_0$ (Lemma 4.1: $O(1)$)", None),
)


def _norms(r: Run) -> dict[str, float]:
    """The norms :func:`hessian_width` plots (max over inputs), NaN where not measured."""
    return {"hessian_init": at_init(r, "hessian", "pred_norm_max"),
            "hessian_end": at_end(r, "hessian", "pred_norm_max") if r.status in PLOTTED else math.nan,
            "grad_x_init": at_init(r, "lipschitz", "grad_x_max"),
            "grad_theta_init": at_init(r, "lipschitz", "grad_theta_max")}


def _norm_slopes(s1: float, group: list[Run]) -> dict:
    m = [width_of(r) for r in group]
    norms = [_norms(r) for r in group]
    return {"regime (Remark 4.1)": "inside" if s1 <= 1.0 else "outside",
            **{key: loglog_slope(m, [n[key] for n in norms]) for key, _, _ in _NORM_PANELS},
            "widths": sorted(set(m)), "runs": len(group)}


def _ref_line(ax, m: np.ndarray, v0: float, slope: float, label: str) -> None:
    ms = np.array([m.min(), m.max()], dtype=float)
    ax.plot(ms, v0 * (ms / ms[0]) ** slope, "k--", lw=1, label=label)


def _tag(depth: int, s1: float) -> str:
    return f"L={depth}, σ1={s1:g}"


def _norm_row(row, depth: int, groups: dict[float, list[Run]], sigmas: list[float], slopes: dict) -> None:
    """One row of :func:`hessian_width`: depth ``depth``'s norms vs m, one band per sigma_1 (``groups``)."""
    for s1, group in groups.items():
        style = dict(ls="-" if s1 <= 1.0 else ":", marker="o", color=f"C{sigmas.index(s1)}")
        for ax, (key, _, _) in zip(row, _NORM_PANELS):
            width_band(ax, group, lambda r, key=key: _norms(r)[key], **style,
                       label=f"σ1 = {s1:g}: slope {slopes[_tag(depth, s1)][key]:+.2f}")
    widths = np.array(sorted({width_of(r) for g in groups.values() for r in g}), dtype=float)
    for ax, (_, title, ref) in zip(row, _NORM_PANELS):
        starts = [ln.get_ydata()[0] for ln in ax.get_lines()]
        if ref is not None and len(widths) > 1 and starts:
            _ref_line(ax, widths, max(starts), ref, "slope −1/2")
        ax.set(xscale="log", yscale="log", xlabel="width m", title=f"L = {depth}: {title}")
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3, which="both")
        legend(ax, fontsize=7)
    row[0].set_ylabel("max over training inputs")


def hessian_width(runs: list[Run], out_dir: Path) -> list[Path]:
    """Theorem 4.1 / Lemma 4.1 vs width m, one row per depth L and one band per sigma_1 (solid inside
    Remark 4.1's regime sigma_1 <= 1, dotted outside): (a) ||grad^2_theta f(theta_0; x)||_2, (b) the same
    at theta_T, (c) ||grad_x f|| and (d) ||grad_theta f|| at theta_0, with fitted log-log slopes. Writes
    the slopes per (L, sigma_1) to ``hessian_width_slopes.json`` next to the figure."""
    groups = group_by(runs, lambda r: (int(r.config.model.depth), float(r.config.init.sigma1)))
    slopes = {_tag(d, s1): _norm_slopes(s1, g) for (d, s1), g in groups.items()}
    depths, sigmas = sorted({d for d, _ in groups}), sorted({s1 for _, s1 in groups})
    fig, axes = plt.subplots(len(depths), len(_NORM_PANELS), figsize=(18, 0.8 + 3.9 * len(depths)), squeeze=False)
    for row, depth in zip(axes, depths):
        _norm_row(row, depth, {s1: g for (d, s1), g in groups.items() if d == depth}, sigmas, slopes)
    claim(fig, "Theorem 4.1: ‖∇²θ f‖ = O(poly(L)/√m), a log-log slope of −1/2 in m, for σ1 ≤ 1 (Remark 4.1's "
               "regime; dotted: σ1 > 1, outside it). Lemma 4.1: ‖∇x f‖ ~ m^−1/2 and ‖∇θ f‖ = O(1) "
               f"({seeds_note(runs)})")
    path = save(fig, out_dir / "hessian_width.png")
    (out_dir / "hessian_width_slopes.json").write_text(json.dumps(slopes, indent=1))
    return [path]


def _final(r: Run, metric: str) -> float:
    """The last measured ``check/distance/<metric>`` of ``r`` (NaN if never measured)."""
    _, v = check_series(r, "distance", metric)
    return float(v[-1]) if len(v) else math.nan


def _final_vs_width(ax, runs: list[Run], metric: str, label: str, **style) -> None:
    """The final ``metric`` distance vs m with its fitted log-log slope; nothing if never measured."""
    v = [_final(r, metric) for r in runs]
    if np.isfinite(v).any():
        slope = loglog_slope([width_of(r) for r in runs], v)
        width_band(ax, runs, lambda r: _final(r, metric), label=f"{label}, slope {slope:+.2f}", **style)


def ball_distances(runs: list[Run], out_dir: Path) -> list[Path]:
    """Definition 3.1 / Remark 5.4: (a) max_l ||W_t^(l) - W_0^(l)||_2 (solid) and ||v_t - v_0||_2
    (dashed) vs t per width; at the end of GD vs m, next to sqrt(m) (Theorem 4.1 needs rho < sqrt(m)):
    (b) each layer's ||W_T^(l) - W_0^(l)||_2, (c) ||v_T - v_0||_2 and ||theta_T - theta_0||_2; means
    over seeds with min-max bands, fitted log-log slopes."""
    groups = group_by(runs, width_of)
    fig, (ax_a, ax_b, ax_c) = plt.subplots(1, 3, figsize=(17, 4.9))
    cmap = plt.get_cmap("viridis", max(len(groups), 2))
    for j, (m, group) in enumerate(groups.items()):
        check_band(ax_a, group, "distance", "spec_max", color=cmap(j), label=f"m = {m}")
        check_band(ax_a, group, "distance", "head", color=cmap(j), ls="--", alpha=0.6)
    ax_a.set(yscale="log", xlabel="iteration t", ylabel="distance to θ0",
             title=r"(a) $\max_l\|W_t^{(l)}-W_0^{(l)}\|_2$ (solid), $\|v_t-v_0\|_2$ (dashed)")
    for layer in range(1, max(int(r.config.model.depth) for r in runs) + 1):
        _final_vs_width(ax_b, runs, f"spec_l{layer}", f"layer {layer}", marker="o", color=f"C{layer + 1}")
    _final_vs_width(ax_c, runs, "head", r"$\|v_T-v_0\|_2$", marker="s", color="C1")
    _final_vs_width(ax_c, runs, "euclid", r"$\|\theta_T-\theta_0\|_2$ (Euclidean)", marker="^", color="C0")
    widths = np.array(sorted(groups), dtype=float)
    for ax, title in ((ax_b, r"(b) layerwise $\|W_T^{(l)}-W_0^{(l)}\|_2$ vs width"),
                      (ax_c, r"(c) $\|v_T-v_0\|_2$, $\|\theta_T-\theta_0\|_2$ vs width")):
        ax.plot(widths, np.sqrt(widths), "k--", lw=1, label=r"$\sqrt{m}$ (radius limit $\rho<\sqrt{m}$)")
        ax.set(xscale="log", yscale="log", xlabel="width m", ylabel="distance at the end of GD", title=title)
        ax.set_xscale("log", base=2)
    for ax in (ax_a, ax_b, ax_c):
        ax.grid(alpha=0.3, which="both")
        legend(ax, fontsize=7)
    claim(fig, "Definition 3.1 / Remark 5.4: GD stays in a layerwise spectral-norm ball of radius ρ < √m around "
               f"θ0, where Theorem 4.1's Hessian bound holds ({seeds_note(runs)})")
    return [save(fig, out_dir / "ball_distances.png")]


def _data_setting(r: Run) -> tuple[float, float]:
    """(fraction of duplicated inputs, their noise)."""
    dup = float(r.config.data.get("duplicates", 0.0) or 0.0)
    noise = float(r.config.data.get("duplicate_noise", 0.0) or 0.0) if dup > 0 else 0.0
    return dup, noise


def _data_label(key: tuple[float, float]) -> str:
    dup, noise = key
    return "distinct inputs" if dup == 0 else (f"{dup:.0%} exact duplicates" if noise == 0 else
                                               f"{dup:.0%} near-duplicates ({noise:g})")


def _loss_curve(r: Run) -> tuple[np.ndarray, np.ndarray]:
    """(steps, loss) of ``r``'s history, finite values only."""
    loss = np.asarray(r.history().get("loss", []), dtype=float)
    steps = np.asarray(r.history().get("step", []), dtype=float)
    ok = np.isfinite(loss)
    return steps[ok], loss[ok]


def _lambda_min(r: Run) -> tuple[np.ndarray, np.ndarray]:
    """(steps, lambda_min(K_ntk)) with values at or below 1e-12 lambda_max raised to that floor."""
    t, lmin = check_series(r, "ntk", "lambda_min")
    _, lmax = check_series(r, "ntk", "lambda_max")
    return t, np.maximum(lmin, 1e-12 * np.nanmax(lmax) if len(lmax) else 1e-12)


def _min_over_t(curve: tuple[np.ndarray, np.ndarray]) -> float:
    return float(np.nanmin(curve[1])) if len(curve[1]) else math.nan


def _ntk_width(ax_a, ax_b, m: int, group: list[Run], colors: dict) -> None:
    """:func:`rsc_vs_ntk`'s panels (a), (b) of width ``m``: one band per data setting."""
    for key, rs in group_by(group, _data_setting).items():
        check_band(ax_a, rs, "ntk", "quad_rsc", color=colors[key], label=_data_label(key))
        step_band(ax_a, [_lambda_min(r) for r in rs], color=colors[key], ls="--")
        status = "/".join(sorted({r.status for r in rs}))
        step_band(ax_b, [_loss_curve(r) for r in rs], color=colors[key], label=f"{_data_label(key)} [{status}]")
    ax_a.plot([], [], "k--", label=r"$\lambda_{\min}(K)$, floored at $10^{-12}\lambda_{\max}$")
    n = int(group[0].config.data.n)
    ax_a.set(yscale="log", xlabel="iteration t", ylabel=r"quadratic form of $K_{ntk}(\theta_t)$",
             title=rf"(a) m = {m} ({'<' if m < n else '>'} n = {n}): "
                   r"$n\|\bar g_t\|^2$ (solid), $\lambda_{\min}$ (dashed)")
    ax_b.set(yscale="log", xlabel="iteration t", ylabel="training loss", title=f"(b) m = {m}: loss along GD")


def _ntk_minima(ax, runs: list[Run], colors: dict) -> None:
    """:func:`rsc_vs_ntk`'s panel (c): min_t of both quadratic forms vs m, one colour per data setting."""
    for key, rs in group_by(runs, _data_setting).items():
        width_band(ax, rs, lambda r: _min_over_t(check_series(r, "ntk", "quad_rsc")), marker="o",
                   color=colors[key], label=_data_label(key))
        width_band(ax, rs, lambda r: _min_over_t(_lambda_min(r)), marker="v", ls="--", color=colors[key])
    ax.plot([], [], "ko-", label=r"$\min_t n\|\bar g_t\|^2$ (RSC form)")
    ax.plot([], [], "kv--", label=r"$\min_t \lambda_{\min}(K)$ (NTK)")
    ax.set(yscale="log", xlabel="width m", title="(c) minima over t vs width")
    ax.set_xscale("log", base=2)


def rsc_vs_ntk(runs: list[Run], out_dir: Path) -> list[Path]:
    """Remarks 5.5-5.6, per width m: (a) lambda_min(K_ntk(theta_t)) (dashed) and the RSC form v^T K v
    at v = 1/sqrt(n), i.e. n ||g_bar_t||^2 (solid), along GD, one band per data setting (distinct or
    duplicated inputs); (b) the loss on a log scale (a straight line = geometric convergence); (c)
    min_t of both vs m. Values of lambda_min at or below 1e-12 lambda_max are drawn at that floor."""
    by_w = group_by(runs, width_of)
    colors = {key: f"C{j}" for j, key in enumerate(sorted({_data_setting(r) for r in runs}))}
    fig, axes = plt.subplot_mosaic([[f"a{m}" for m in by_w] + ["c"], [f"b{m}" for m in by_w] + ["c"]],
                                   figsize=(5.2 * (len(by_w) + 1), 8.4))
    for m, group in by_w.items():
        _ntk_width(axes[f"a{m}"], axes[f"b{m}"], m, group, colors)
    _ntk_minima(axes["c"], runs, colors)
    for ax in axes.values():
        ax.grid(alpha=0.3)
        legend(ax, fontsize=7)
    claim(fig, "Remarks 5.5-5.6: the RSC form 1ᵀK1/n = n‖ḡ_t‖² stays away from 0 where λmin(K) of the NTK "
               "collapses (duplicated inputs, m < n), and GD still converges geometrically (a straight loss "
               f"on a log axis) ({seeds_note(runs)})")
    return [save(fig, out_dir / "rsc_vs_ntk.png")]


_RC = "restricted_curvature"
# restricted_curvature's series: metric, label, style; (a) the curvature estimates, (b) the contractions
_CURVATURES = (
    ("alpha_random", "α_t (random cone directions)", dict(marker="o", ms=3, color="C0")),
    ("alpha", "α_t incl. the Hessian's hardest cone direction", dict(marker="v", ms=3, ls=":", color="C1")),
    ("alpha_step", "curvature along the GD step", dict(marker="x", ms=4, ls="none", color="C2")),
    ("alpha_upper", r"$2\kappa^2 k\|\bar g_t\|^2$ (Remark 5.2)", dict(lw=3, alpha=0.35, color="C7")),
)
_CONTRACTIONS = (
    ("contraction", "observed", dict(marker="o", ms=4, ls="none", color="C0")),
    ("bound", "Lemma 5.2's factor, α = α_t", dict(marker="s", ms=4, color="C3")),
    ("bound_step", "Lemma 5.2's factor, α = GD-step curvature",
     dict(marker="s", ms=4, mfc="none", ls="--", color="C2")),
    ("contraction_cone", r"gap ratio to estimated $\inf_{B_t}L$ (eq. 13's left side)",
     dict(marker="^", ms=5, mfc="none", ls="none", color="C1")),
)


def _gap_ratios(r: Run) -> tuple[np.ndarray, np.ndarray]:
    """(t, (L_{t+1} - L_min) / (L_t - L_min)) at every step of the loss history."""
    lmin = float(r.config.get("checks", {}).get(_RC, {}).get("loss_min", 0.0))
    steps, loss = _loss_curve(r)
    return steps[:-1], (loss[1:] - lmin) / (loss[:-1] - lmin)


def _curvature_panel(ax, m: int, runs: list[Run]) -> None:
    for metric, label, style in _CURVATURES:
        check_band(ax, runs, _RC, metric, label=label, **style)
    ax.set_yscale("symlog", linthresh=1e-5)
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xlabel="iteration t", ylabel="secant curvature",
           title=rf"(a) m = {m}: curvature on $Q_\kappa\cap B_{{\rho_2}}(\theta_t)$")


def _contraction_panel(ax, m: int, runs: list[Run]) -> None:
    step_band(ax, [_gap_ratios(r) for r in runs], color="C0", alpha=0.3, lw=0.8, label="observed, every step")
    for metric, label, style in _CONTRACTIONS:
        check_band(ax, runs, _RC, metric, label=label, **style)
    ax.axhline(1, color="k", lw=0.5)
    marks = np.concatenate([check_series(r, _RC, k)[1] for r in runs for k in ("contraction", "bound", "bound_step")])
    marks = marks[np.isfinite(marks)]
    if len(marks):
        ax.set_ylim(max(float(marks.min()) - 0.02, 0.0), min(max(float(marks.max()) + 0.02, 1.05), 1.5))
    ax.set(xlabel="iteration t", ylabel=r"$(L_{t+1}-L_{\min})/(L_t-L_{\min})$",
           title=f"(b) m = {m}: contraction vs Lemma 5.2")


def restricted_curvature(runs: list[Run], out_dir: Path) -> list[Path]:
    """Theorem 5.1 / Lemma 5.2, one column per width m: (a) the restricted curvature estimate alpha_t
    (min over sampled cone directions, with and without the Hessian's hardest direction), the
    curvature along the GD step and Remark 5.2's 2 kappa^2 ||g_bar_t||^2 along GD; (b) the observed
    contraction (L_{t+1} - L_min) / (L_t - L_min) (dots; thin line: every step of the loss history)
    and the gap ratio to the estimate of inf_{B_t} L, the left side of eq. (13) (triangles), next to
    Lemma 5.2's factor 1 - alpha omega (2 - omega) / beta with alpha the cone estimate (filled
    squares) and the GD-step curvature (hollow). Only the triangles are bounded by Lemma 5.2; the
    gap to a global L_min also carries Theorem 5.3's (1 - gamma_t)."""
    by_w = {m: g for m, g in group_by(runs, width_of).items() if any(len(check_series(r, _RC, "alpha")[0]) for r in g)}
    fig, axes = plt.subplots(2, max(len(by_w), 1), figsize=(4.8 * max(len(by_w), 1), 8.6), squeeze=False)
    for (m, group), ax_a, ax_b in zip(by_w.items(), axes[0], axes[1]):
        _curvature_panel(ax_a, m, group)
        _contraction_panel(ax_b, m, group)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    legend(axes[0][0], fontsize=7)
    legend(axes[1][0], fontsize=7)
    claim(fig, "Theorem 5.1 / Lemma 5.2: the restricted curvature α_t on the cone Q_κ is positive along GD, "
               "and each step shrinks the loss gap to inf over B_t by at least Lemma 5.2's factor "
               f"1 − α_t ω(2 − ω)/β: the triangles lie below the squares ({seeds_note(runs)})")
    return [save(fig, out_dir / "restricted_curvature.png")]


def _model_name(r: Run) -> str:
    """The model's class name (``model._target_``'s last part), e.g. ConvNet."""
    return str(r.config.model.get("_target_", "DeepMLP")).rsplit(".", 1)[-1]


def _hessian_slopes(group: list[Run], read: Callable[[Run, str, str], float]) -> tuple[float, list[float]]:
    """The log-log slope of the predictor-Hessian norm (``read`` at init or at the end) vs m, pooled
    and per seed."""
    def slope(rs: list[Run]) -> float:
        return loglog_slope([width_of(r) for r in rs], [_hessian_norm(r, read) for r in rs])

    return slope(group), [slope(rs) for rs in group_by(group, _seed).values()]


def _hessian_norm(r: Run, read: Callable[[Run, str, str], float]) -> float:
    return read(r, "hessian", "pred_norm_max") if r.status in PLOTTED else math.nan


def _hessian_vs_width(ax, name: str, group: list[Run], slopes: dict) -> None:
    """:func:`width_scaling`'s panel (b): the predictor-Hessian norm at init and at the end vs m."""
    for when, read, marker in (("init", at_init, "o"), ("end", at_end, "s")):
        slopes[when], slopes[f"{when}_per_seed"] = _hessian_slopes(group, read)
        width_band(ax, group, lambda r, read=read: _hessian_norm(r, read), marker=marker,
                   label=f"at {when}: slope {slopes[when]:.2f}")
    first = min(group, key=width_of)
    if math.isfinite(at_init(first, "hessian", "pred_norm_max")):
        widths = np.array(sorted({width_of(r) for r in group}), dtype=float)
        _ref_line(ax, widths, at_init(first, "hessian", "pred_norm_max"), -0.5, "slope −1/2 (Thm 4.1)")
    ax.set(xscale="log", yscale="log", xlabel="width m", ylabel=r"$\max_i \|\nabla^2_\theta f(\theta; x_i)\|_2$",
           title=f"(b) {name}: predictor-Hessian norm vs width")
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3, which="both")
    legend(ax)


def width_scaling(runs: list[Run], out_dir: Path) -> list[Path]:
    """Per model: (a) min_t ||g_bar_t|| vs width on Fig. 1(b)'s axes (the RSC quantity of Theorem
    5.1), diverged runs marked; (b) the predictor-Hessian norm at theta_0 and at the end vs width on
    log-log axes with the fitted slopes next to Theorem 4.1's -1/2; means over seeds with min-max
    bands. Writes the slopes (pooled and per seed) and the mean min_t ||g_bar_t|| per width to
    ``width_scaling_slopes.json``."""
    paths, slopes = [], {}
    for name, group in group_by(runs, _model_name).items():
        fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4.6))
        min_gbar_vs_width(ax_a, group)
        ax_a.set_title(f"(a) {name}: RSC quantity vs width")
        slopes[name] = {"min_gbar_norm": {w: float(np.mean([_min_gbar(r) for r in rs]))
                                          for w, rs in group_by(_ok(group), width_of).items()}}
        _hessian_vs_width(ax_b, name, group, slopes[name])
        claim(fig, f"{name}: min_t ‖ḡ_t‖ increases with m as in Fig. 1(b) (RSC, Theorem 5.1), and the "
                   f"predictor-Hessian norm falls like m^−1/2 (Theorem 4.1) ({seeds_note(group)})")
        paths.append(save(fig, out_dir / f"width_scaling_{name}.png"))
    (out_dir / "width_scaling_slopes.json").write_text(json.dumps(slopes, indent=1))
    return paths
