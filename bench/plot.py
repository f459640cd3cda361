"""Draw bench/results/<name>.png from the JSON written by bench.py (matplotlib, in bench/.venv-peers).

    bench/.venv-peers/bin/python bench/plot.py bench/results/results.json bench/results/results.png
"""

from __future__ import annotations

import json
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COL = {"expyre": "#1f77b4", "floor": "#7f7f7f", "original": "#d62728", "submitit": "#ff7f0e", "dask bag": "#e377c2", "dask": "#9467bd",
       "ProcessPool": "#8c564b", "one ssh": "#bcbd22"}


def colour(name: str) -> str:
    for k, c in COL.items():
        if name.startswith(k):
            return c
    return "#2ca02c"


def med(runs, key):
    v = [r[key] for r in runs if r.get("available") and r.get(key) is not None]
    return statistics.median(v) if v else None


def bars(ax, items, title, unit="s", log=False):
    items = [(k, v) for k, v in items if v is not None]
    if not items:
        ax.set_visible(False)
        return
    names = [k for k, _ in items]
    vals = [v for _, v in items]
    y = range(len(items))
    ax.barh(y, vals, color=[colour(n) for n in names])
    ax.set_yticks(list(y), names, fontsize=7)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:.3g}", va="center", fontsize=7)
    ax.set_xlabel(unit, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelsize=7)


def main() -> None:
    res = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    m = res["machine"]
    panels = sum(k in res for k in ("local", "sweep", "ssh", "db", "bigarg", "ssh-shell", "poll")) + 2 * ("scale" in res) \
        + (("slurm" in res) or ("executor" in res))
    rows = max(1, -(-panels // 3))
    fig, axes = plt.subplots(rows, 3, figsize=(16, 4.25 * rows), squeeze=False)
    axes = axes.ravel()
    i = 0
    if "local" in res:
        L = res["local"]
        bars(axes[i], [(k, v["median"]) for k, v in L.items()], f"local, N={res['options']['n_local']} trivial calls (median wall s)")
        i += 1
    if "sweep" in res:
        ax = axes[i]
        i += 1
        S = res["sweep"]
        for lib in ("floor", "expyre", "submitit"):
            pts = sorted((int(k.split("=")[1]), v["median"]) for k, v in S.items() if k.startswith(lib) and v["median"])
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=colour(lib), label=lib)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N calls", fontsize=8)
        ax.set_ylabel("s", fontsize=8)
        ax.set_title("local: cost vs N (median)", fontsize=9)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    if "slurm" in res or "executor" in res:
        items = [(k, v["median"]) for k, v in res.get("slurm", {}).items()]
        items += [(k, v["median"]) for k, v in res.get("executor", {}).items()]
        n = res["options"]["n_slurm"]
        bars(axes[i], items, f"real Slurm, N={n} calls (median wall s)")
        i += 1
    if "ssh" in res:
        bars(axes[i], [(k, v["median"]) for k, v in res["ssh"].items()], "ssh to localhost + Slurm (median wall s)")
        ax = axes[i]
        notes = []
        for k, v in res["ssh"].items():
            if k.startswith("expyre"):
                mx = max((r.get("ssh_per_poll_max", 0) for r in v["runs"] if r.get("available")), default=None)
                notes.append(f"{k}: <= {mx} ssh round trips per poll")
        ax.text(0.98, 0.98, "\n".join(notes), transform=ax.transAxes, ha="right", va="top", fontsize=7)
        i += 1
    if "db" in res:
        items = []
        for k, v in res["db"].items():
            items.append((f"{k}: lookup (ms)", (med(v["runs"], "lookup_median") or 0) * 1e3 or None))
            items.append((f"{k}: xpr ls -s ongoing (ms)", (med(v["runs"], "xpr_ls_ongoing") or 0) * 1e3 or None))
        bars(axes[i], items, "jobs DB (median, ms, log scale)", unit="ms", log=True)
        i += 1
    if "bigarg" in res:
        B = res["bigarg"]
        items = [(f"{k} time (s)", v["median"]) for k, v in B.items()]
        items += [(f"{k} peak RSS / payload", med(v["runs"], "peak_over_payload")) for k, v in B.items()]
        bars(axes[i], items, f"one {res['options']['gb']:g} GB numpy argument: construct + stage", unit="s or ratio")
        i += 1

    if "scale" in res:
        S = res["scale"]
        ax = axes[i]
        i += 1
        libs = {}
        for k, v in S.items():
            if " kB arg" in k or not v.get("median"):
                continue
            lib, n = k.rsplit(" N=", 1)
            c = med(v["runs"], "cpu_per_call")
            if c is not None:
                libs.setdefault(lib, []).append((int(n), c * 1e6))
        for lib, pts in libs.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=colour(lib), label=lib)
        ax.axhline(50, color="k", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N calls (packed)", fontsize=8)
        ax.set_ylabel("driver CPU per call (us)", fontsize=8)
        ax.set_title("scale: driver CPU per call (target <= 50 us dotted)", fontsize=9)
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=7)
        nmax = max(int(k.rsplit(" N=", 1)[1].split(",")[0]) for k in S)
        bars(axes[i], [(k, v["median"]) for k, v in S.items() if f"N={nmax}" in k and not k.startswith("floor")],
             f"scale: wall at N={nmax} (median s, log)", log=True)
        i += 1
    if "poll" in res:
        P = res["poll"]
        ax = axes[i]
        i += 1
        series = {}
        for k, v in P.items():
            if k.startswith("slurm real"):
                continue
            name, n = k.rsplit(" N=", 1)
            c = med(v["runs"], "steady_cpu")
            if c is not None:
                series.setdefault(name, []).append((int(n), c * 1e3))
        for name, pts in series.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if "remote" in name else "s--", label=name)
        for k, v in P.items():
            if k.startswith("slurm real") and med(v["runs"], "steady_cpu") is not None:
                ax.plot([med(v["runs"], "n")], [med(v["runs"], "steady_cpu") * 1e3], "k*", ms=10, label="real Slurm, held jobs")
        ax.axhline(100, color="k", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("live jobs", fontsize=8)
        ax.set_ylabel("driver CPU per poll cycle (ms)", fontsize=8)
        ax.set_title("poll: one cycle (target < 100 ms at 10^4 dotted)", fontsize=9)
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=7)
    if "ssh-shell" in res:
        bars(axes[i], [(k, v["median"]) for k, v in res["ssh-shell"].items()], "ssh-shell: 0.3 s .bashrc, README API (median wall s)")
        i += 1
    for ax in axes[i:]:
        ax.set_visible(False)
    fig.suptitle(f"expyre benchmarks, {m['date']}, {m['host']}: {m['nproc']} cores ({m['cpu']}), {m['mem_gb']} GB, "
                 f"Slurm node {m['slurm_node_cpus']} CPUs (shared with other test suites; per-scenario load in the JSON);\n"
                 f"{res['options']['reps']} reps, medians; expyre {m['versions'].get('expyre-core')} @ {m['git_commit']}, "
                 f"expyre-wfl {m['versions'].get('expyre-wfl')}, submitit {m['versions'].get('submitit')}, "
                 f"dask {m['versions'].get('dask')}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / (4.25 * rows)))
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
