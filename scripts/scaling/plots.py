"""PNG plots of the scaling sweep and the model (matplotlib, Agg backend); called by
perf_model.py. Each returns the path it wrote, or None when the data for it is missing."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 90


def _save(fig, out, name):
    path = os.path.join(out, name)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _finish_loglog(fig, ax, out, name, xlabel, ylabel, title, title_size=10):
    """Log-log axes, labels, legend and grid; saves the figure."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=title_size)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, out, name)


def _avail(m, runs):
    from perf_model import avail_of
    return float(np.median([avail_of(m, r) for r in runs])) if runs else None


def _grid_runs(runs, layers=1, micro=1, skew="real"):
    return [r for r in runs if r["layers"] == layers and r["micro_batches"] == micro and r["router_skew"] == skew]


def strong_scaling(m, runs, out):
    rs = _grid_runs(runs)
    batches = sorted({r["batch"] for r in rs})
    if not rs:
        return None
    preset = rs[0]["preset"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, b in enumerate(batches):
        pts = sorted((r["workers"], r["decode_tok_s"]) for r in rs if r["batch"] == b)
        if len(pts) < 2:
            continue
        c = f"C{i}"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", color=c, label=f"batch {b} measured")
        if preset in m.o_step:
            ws = [0, 1, 2, 4, 8]
            av = _avail(m, rs)
            ax.plot(ws, [b / m.predict(preset, 1, w, b, 1, "real", avail=av) for w in ws], "-", color=c, alpha=0.6,
                    label=f"batch {b} model")
    ax.set_xlabel("worker ranks (0 = one process)")
    ax.set_ylabel("decode tok/s")
    ax.set_yscale("log")
    ax.set_xticks([0, 1, 2, 4, 8])
    ax.set_title(f"Strong scaling, {preset}, 1 layer (2 shared cores; model at the median free cores)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return _save(fig, out, "strong_scaling.png")


def batch_sweep(m, runs, out):
    rs = _grid_runs(runs)
    if not rs:
        return None
    preset = rs[0]["preset"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, w in enumerate(sorted({r["workers"] for r in rs})):
        pts = sorted((r["batch"], r["decode_tok_s"], 1 / r["step_s"]) for r in rs if r["workers"] == w)
        if len(pts) < 2:
            continue
        lab = "1 process" if w == 0 else f"{w} workers"
        ax.plot([p[2] for p in pts], [p[1] for p in pts], "o-", color=f"C{i}", label=lab)
        for b, tps, pu in pts:
            ax.annotate(str(b), (pu, tps), fontsize=6, xytext=(2, 2), textcoords="offset points")
    return _finish_loglog(fig, ax, out, "batch_sweep.png", "tok/s per user (1 / step time)",
                          "aggregate decode tok/s",
                          f"Batch sweep (labels: batch), {preset}, 1 layer")


def exposed_comm(m, runs, out):
    pairs = []
    by = {(r["preset"], r["layers"], r["workers"], r["batch"], r["router_skew"], r["micro_batches"]): r for r in runs}
    for k, r in by.items():
        if k[-1] == 2 and k[:-1] + (1,) in by and k[1] == 1 and k[4] == "real":
            pairs.append((by[k[:-1] + (1,)], r))
    if not pairs:
        return None
    pairs.sort(key=lambda p: (p[0]["batch"], p[0]["workers"]))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.8))
    x = np.arange(len(pairs))
    labels = [f"W{p[0]['workers']}\nB{p[0]['batch']}" for p in pairs]
    a1.bar(x - 0.2, [p[0]["exposed_moe_share"] for p in pairs], 0.4, label="1 micro-batch")
    a1.bar(x + 0.2, [p[1]["exposed_moe_share"] for p in pairs], 0.4, label="2 (ping-pong)")
    a1.set_xticks(x)
    a1.set_xticklabels(labels, fontsize=7)
    a1.set_ylabel("moe_wait / forward")
    a1.set_title("Exposed MoE share (measured)", fontsize=9)
    a1.legend(fontsize=7)
    a2.bar(x - 0.2, [p[0]["step_s"] * 1e3 for p in pairs], 0.4, label="1 micro-batch")
    a2.bar(x + 0.2, [p[1]["step_s"] * 1e3 for p in pairs], 0.4, label="2 (ping-pong)")
    pre = pairs[0][0]["preset"]
    if pre in m.o_step:
        a2.plot(x - 0.2, [m.predict_run(p[0]) * 1e3 for p in pairs], "k_", ms=12, label="model (each run's free cores)")
        a2.plot(x + 0.2, [m.predict_run(p[1]) * 1e3 for p in pairs], "k_", ms=12)
    a2.set_xticks(x)
    a2.set_xticklabels(labels, fontsize=7)
    a2.set_ylabel("step ms")
    a2.set_title("Step time", fontsize=9)
    a2.legend(fontsize=7)
    fig.suptitle(f"Micro-batches 1 vs 2, {pre}, 1 layer", fontsize=10)
    return _save(fig, out, "exposed_comm.png")


def imbalance(m, runs, out):
    rs = [r for r in runs if r["layers"] == 1 and r["micro_batches"] == 1 and r["workers"] in (4, 8)]
    have = {}
    for r in rs:
        have.setdefault((r["workers"], r["batch"]), set()).add(r["router_skew"])
    combos = sorted(k for k, v in have.items() if len(v) == 3) or sorted(k for k, v in have.items() if len(v) >= 2)
    if not combos:
        return None
    skews = ["real", "uniform", "zipf:1.2"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.8))
    for i, (w, b) in enumerate(combos):
        got = {r["router_skew"]: r for r in rs if r["workers"] == w and r["batch"] == b}
        xs = [s for s in skews if s in got]
        a1.plot(xs, [got[s]["rank_rows_max_over_mean"] for s in xs], "o-", color=f"C{i}", label=f"W{w} B{b} measured")
        pre = next(iter(got.values()))["preset"]
        if pre in m.o_step:
            from perf_model import loads
            summed, per_step = [], []
            for s in xs:
                ld = loads(pre, w, b, s, 0, m.real_p.get(pre))
                rows = ld.rows[:, 1:]
                tot = rows.sum(axis=0)
                summed.append(float(tot.max() / tot.mean()))
                per_step.append(float(np.mean(rows.max(axis=1) / np.maximum(rows.mean(axis=1), 1e-9))))
            a1.plot(xs, summed, "x--", color=f"C{i}", label=f"W{w} B{b} model, summed like the run")
            a1.plot(xs, per_step, "+:", color=f"C{i}", label=f"W{w} B{b} model, per step (gates a layer)")
        a2.plot(xs, [got[s]["step_s"] * 1e3 for s in xs], "o-", color=f"C{i}", label=f"W{w} B{b}")
    a1.set_ylabel("busiest worker's rows / mean")
    a1.set_title("Load imbalance (measured: summed over the run)", fontsize=9)
    a1.legend(fontsize=6)
    a2.set_ylabel("step ms (measured)")
    a2.set_title("Step time against skew", fontsize=9)
    a2.legend(fontsize=6)
    fig.suptitle("Router skew", fontsize=10)
    return _save(fig, out, "imbalance.png")


def model_vs_measured(val, out):
    if not val:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    for split, mk in (("fit", "o"), ("held-out", "s")):
        v = [x for x in val if x["split"] == split]
        ax.scatter([x["measured_s"] * 1e3 for x in v], [x["predicted_s"] * 1e3 for x in v], marker=mk,
                   s=18, label=f"{split} ({len(v)})", alpha=0.8)
    lo = min(min(x["measured_s"], x["predicted_s"]) for x in val) * 1e3 * 0.8
    hi = max(max(x["measured_s"], x["predicted_s"]) for x in val) * 1e3 * 1.2
    xs = np.array([lo, hi])
    ax.plot(xs, xs, "k-", lw=0.8)
    for f, st in ((0.15, ":"), (0.25, "--")):
        ax.plot(xs, xs * (1 + f), "k" + st, lw=0.6)
        ax.plot(xs, xs * (1 - f), "k" + st, lw=0.6, label=f"+/-{int(f * 100)}%")
    return _finish_loglog(fig, ax, out, "model_vs_measured.png", "measured step ms",
                          "model step ms",
                          "Model against measurement")


def exchange_plot(m, exch, runs, out):
    rs = [r for r in exch + runs if r["workers"] > 0 and r["micro_batches"] == 1 and r["layers"] >= 1]
    if not rs:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    x = np.logspace(np.log10(min(r["wire_bytes_per_layer"] for r in rs)), np.log10(max(r["wire_bytes_per_layer"] for r in rs)), 50)
    for i, w in enumerate(sorted({r["workers"] for r in rs})):
        v = [r for r in rs if r["workers"] == w]
        lab = f"W={w} measured" + ("" if w == 1 else " (holds other workers' experts)")
        ax.scatter([r["wire_bytes_per_layer"] for r in v], [r["comm_per_layer_s"] * 1e3 for r in v],
                   s=14, color=f"C{i}", label=lab)
        ax.plot(x, (m.exchange(w, x) + m.oversub(w, m.cores)) * 1e3, "-", color=f"C{i}", alpha=0.6)
    return _finish_loglog(fig, ax, out, "exchange.png", "bytes on the wire per layer (dispatch + combine)",
                          "ms per layer",
                          "Exchange per layer: dispatch+combine (points); fitted terms (lines; W>=2 share one)", title_size=9)


def projection_plot(proj, out):
    rows = [p for p in proj if p["skew"] == "uniform"]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    keys = sorted({(p["workers"], p["link"]) for p in rows})
    for i, (w, link) in enumerate(keys):
        v = [p for p in rows if p["workers"] == w and p["link"] == link and p["replicas"] == 1 and
             (p["micro_batches"] == 2 or p["batch"] == 1)]
        v.sort(key=lambda p: p["batch"])
        x = [p["per_user_tok_s"] for p in v]
        y = [p["tok_s"] for p in v]
        lo = [p["tok_s"] - p["tok_s_low"] for p in v]
        hi = [p["tok_s_high"] - p["tok_s"] for p in v]
        ax.errorbar(x, y, yerr=[lo, hi], fmt="o-", color=f"C{i}", capsize=3, label=f"{w} x H100, {link}")
        for p in v:
            ax.annotate(str(p["batch"]), (p["per_user_tok_s"], p["tok_s"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    return _finish_loglog(fig, ax, out, "projection.png", "tok/s per user",
                          "aggregate decode tok/s",
                          "Projection (CPU-calibrated model): Mixtral 8x22B, 56 layers, ctx 1024", title_size=9)


def all_plots(m, runs, exch, val, proj, out):
    paths = [strong_scaling(m, runs, out), batch_sweep(m, runs, out), exposed_comm(m, runs, out),
             imbalance(m, runs, out), model_vs_measured(val, out), exchange_plot(m, exch, runs, out),
             projection_plot(proj, out)]
    return [p for p in paths if p]
