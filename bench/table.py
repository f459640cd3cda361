"""Print the README's benchmark table (markdown) from a results JSON written by bench.py.

    python bench/table.py bench/results/results.json
"""

from __future__ import annotations

import json
import statistics
import sys


def med(runs, key="time"):
    v = [r[key] for r in runs if r.get("available") and r.get(key) is not None]
    return statistics.median(v) if v else None


def _err(runs):
    e = next((r.get("error", "") for r in runs if not r.get("available") and r.get("error")), "")
    last = [l for l in e.strip().splitlines() if l.strip()]
    return (last[-1][:120] if last else "no message").replace("|", "/")


def mn(runs, key="time"):
    v = [r[key] for r in runs if r.get("available") and r.get(key) is not None]
    return min(v) if v else None


def fmt(x, unit="s"):
    if x is None:
        return "n/a"
    if unit == "ms":
        return f"{x * 1e3:.3g} ms"
    if unit == "x":
        return f"{x:.2f}×"
    return f"{x:.3g} s" if x < 100 else f"{x:.0f} s"


def main() -> None:
    res = json.load(open(sys.argv[1]))
    m = res["machine"]
    print(f"Run {m['date']} on `{m['host']}`: {m['nproc']} cores ({m['cpu']}), {m['mem_gb']} GB; Slurm {m['slurm_version']} "
          f"with a node declaring {m['slurm_node_cpus']} CPUs; expyre-core {m['versions'].get('expyre-core')} at "
          f"{m['git_commit']}, expyre-wfl {m['versions'].get('expyre-wfl')}, submitit {m['versions'].get('submitit')}; "
          f"{res['options']['reps']} repetitions, medians.\n")
    for sc, info in res.get("machine_per_scenario", {}).items():
        print(f"- `{sc}`: started {info['date']}, load average {info['loadavg_start'][0]:.1f} → {info['loadavg_end'][0]:.1f}")
    if any(sc in res for sc in ("local", "slurm", "executor", "ssh", "bigarg")):
        print()
        print("| scenario | variant | median | × floor | best | × best floor |")
        print("|---|---|---|---|---|---|")
    for sc in ("local", "slurm", "executor", "ssh", "bigarg"):
        if sc not in res:
            continue
        V = res[sc]
        fk = next((k for k, v in V.items() if k.startswith("floor") and v["median"]), None)
        floor = V[fk]["median"] if fk else None
        fbest = mn(V[fk]["runs"]) if fk else None
        if sc == "executor":
            floor = res.get("slurm", {}).get("floor (sbatch loop)", {}).get("median")
            fbest = mn(res.get("slurm", {}).get("floor (sbatch loop)", {}).get("runs", []))
        for k, v in V.items():
            mm = v["median"]
            extra = ""
            if sc == "ssh" and k.startswith("expyre"):
                mx = max((r.get("ssh_per_poll_max", 0) for r in v["runs"] if r.get("available")), default=None)
                extra = f" (≤ {mx} ssh round trips per poll, {med(v['runs'], 'ssh_total'):.0f} ssh in all)"
            if sc == "ssh" and k.startswith("original"):
                extra = f" ({med(v['runs'], 'ssh_total'):.0f} ssh in all)" if med(v["runs"], "ssh_total") else ""
            if sc == "bigarg":
                extra = f" (peak RSS {med(v['runs'], 'peak_over_payload'):.2f}× the payload)"
            nfail = sum(1 for r in v["runs"] if not r.get("available") and not r.get("reason"))
            if nfail and not v.get("not_available"):
                extra += f" (failed in {nfail} of {len(v['runs'])} runs: {_err(v['runs'])})"
            if v.get("not_available"):
                print(f"| {sc} | {k} | not available | |")
            else:
                b = mn(v["runs"])
                print(f"| {sc} | {k}{extra} | {fmt(mm)} | {fmt(mm / floor, 'x') if floor and mm else ''} | {fmt(b)} | "
                      f"{fmt(b / fbest, 'x') if fbest and b else ''} |")
    if "db" in res:
        print()
        print("| jobs DB | restart lookup | `xpr ls -s ongoing` | creation, per job |")
        print("|---|---|---|---|")
        for k, v in res["db"].items():
            print(f"| {k} | {fmt(med(v['runs'], 'lookup_median'), 'ms')} | {fmt(med(v['runs'], 'xpr_ls_ongoing'))} | "
                  f"{fmt(med(v['runs'], 'add_per_job'), 'ms')} |")
    if "sweep" in res:
        print()
        ns = sorted({int(k.split("=")[1]) for k in res["sweep"]})
        print("| local sweep, N | " + " | ".join(str(n) for n in ns) + " |")
        print("|---|" + "---|" * len(ns))
        for lib in ("floor", "expyre", "submitit"):
            row = [res["sweep"].get(f"{lib} N={n}", {}).get("median") for n in ns]
            print(f"| {lib} | " + " | ".join(fmt(x) if x is not None else "–" for x in row) + " |")

    if "scale" in res:
        print()
        print("| scale: variant | wall | first result | driver CPU / call | peak RSS growth / call | jobs DB + stage dirs |")
        print("|---|---|---|---|---|---|")
        for k, v in res["scale"].items():
            if v.get("not_available"):
                print(f"| {k} | not available: {str(v['not_available']).splitlines()[-1][:100]} | | | | |")
                continue
            rs = v["runs"]
            tf, g = med(rs, "t_first"), med(rs, "rss_growth_per_call")
            c = med(rs, "cpu_per_call")
            db, st = med(rs, "db_bytes"), med(rs, "stage_bytes")
            disk = f"{db / 1e6:.2f} + {st / 1e6:.1f} MB" if db is not None else ""
            print(f"| {k} | {fmt(v['median'])} | {fmt(tf) if tf is not None else ''} | {c * 1e6:.1f} µs | "
                  f"{f'{g / 1024:.2f} kB' if g is not None else ''} | {disk} |" if c is not None else f"| {k} | {fmt(v['median'])} | | | | |")
    if "poll" in res:
        print()
        print("| poll: scheduler, where, live jobs | one cycle, driver CPU | wall | first cycle (every state new), CPU | the plugin's parse alone |")
        print("|---|---|---|---|---|")
        for k, v in res["poll"].items():
            if v.get("not_available"):
                print(f"| {k} | not available: {str(v['not_available']).splitlines()[-1][:100]} | | | |")
                continue
            rs = v["runs"]
            n = med(rs, "n")
            name = k if not k.startswith("slurm real") else f"{k} ({n:.0f} submitted)"
            pc = med(rs, "parse_cpu")
            print(f"| {name} | {fmt(med(rs, 'steady_cpu'), 'ms')} | {fmt(med(rs, 'steady_wall'), 'ms')} | "
                  f"{fmt(med(rs, 'first_cpu'), 'ms')} | {fmt(pc, 'ms') if pc is not None else ''} |")
    if "ssh-shell" in res:
        print()
        print("| ssh-shell (0.3 s .bashrc): variant | median | × floor | start() median | ssh in all | ssh round trips per poll, max |")
        print("|---|---|---|---|---|---|")
        S = res["ssh-shell"]
        for k, v in S.items():
            n = k.rsplit("=", 1)[1]
            f = S.get(f"floor (sbatch loop in one ssh) N={n}", {}).get("median")
            rs = v["runs"]
            if v.get("not_available"):
                print(f"| {k} | not available: {_err(rs)} | | | | |")
                continue
            sm, tot = med(rs, "start_median"), med(rs, "ssh_total")
            mx = max((r.get("ssh_per_poll_max", 0) for r in rs if r.get("available") and "ssh_per_poll_max" in r), default=None)
            print(f"| {k} | {fmt(v['median'])} | {fmt(v['median'] / f, 'x') if f and v['median'] else ''} | "
                  f"{fmt(sm) if sm is not None else ''} | {f'{tot:.0f}' if tot is not None else ''} | {mx if mx is not None else ''} |")
    print()
    print("| target | measured | target | |")
    print("|---|---|---|---|")
    for t in res.get("targets", []):
        v = t["value"]
        vs = "n/a" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))
        ok = {True: "met", False: "**missed**", None: ""}[t["ok"]]
        print(f"| {t['what']} | {vs} | {t['target']} | {ok} {t.get('note', '')} |")


if __name__ == "__main__":
    main()
