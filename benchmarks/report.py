"""Markdown tables (medians) from the raw results JSON written by run.py."""

from __future__ import annotations

import statistics

ORDER = {"town/sqlite": 0, "town/postgresql": 1, "city/sqlite": 2, "city/postgresql": 3}
VARIANTS = {"gx": "with validation (Great Expectations, the product's default)",
            "sql": "validation in plain SQL (RunContext(use_gx=False))",
            "none": "without validation (validate step replaced)",
            "snapshots60": "with validation (GX), the snapshot data sets (accounts, residents, assessments) at a "
                           "60-minute cadence (`cadence_minutes`): a run between two snapshot refreshes"}
BASELINES = {"plain": "plain approach: pandas.read_sql (pyodbc) + to_sql + ON CONFLICT merge",
             "generic_transfer": "Airflow GenericTransfer (ODBC -> PostgreSQL) + the same merge",
             "ceiling_read": "ceiling (a): arrow-odbc read into memory, discarded",
             "ceiling_copy": "ceiling (b): COPY FROM a local binary file into an UNLOGGED table",
             "key_read": "key-only read over ODBC (floor of a reconciliation's delete check)"}


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def f_num(v, digits=1):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def f_int(v):
    return "-" if v is None else f"{v:,.0f}"


def f_ratio(v):
    return "-" if v is None else f"{v:.2f}"


def ratio(a, b):
    return a / b if a and b else None


def _rate(run):
    return run["rows"] / run["wall"] if run["wall"] else None


def summary(runs: list[dict]) -> dict:
    return {
        "n": len(runs), "rows": med([r["rows"] for r in runs]), "wall": med([r["wall"] for r in runs]),
        "rate": med([_rate(r) for r in runs]), "cpu": med([r["cpu"] for r in runs]),
        "pg_cpu": med([r["pg_cpu"] for r in runs]), "rss": med([r["rss_mib"] for r in runs]),
        "rss_max": max((r["rss_mib"] for r in runs), default=None),
    }


def ledger_runs(runs: list[dict]) -> list[dict]:
    """The ledger data set (charges) of product runs: its own extract + validate + publish seconds."""
    out = []
    for r in runs:
        ds = r["extra"]["datasets"].get("charges")
        if not ds:
            continue
        secs = sum(ds.get(k) or 0 for k in ("extract_seconds", "validate_seconds", "publish_seconds"))
        out.append({"rows": ds["rows_extracted"] or 0, "wall": secs, "cpu": r["cpu"], "pg_cpu": r["pg_cpu"],
                    "rss_mib": r["rss_mib"], "parts": {k: ds.get(k) for k in ("extract_seconds", "validate_seconds",
                                                                               "publish_seconds")}})
    return out


def references(section: dict) -> dict:
    base = (section.get("baselines") or {}).get("runs") or {}
    read = summary(base["ceiling_read"]) if base.get("ceiling_read") else None
    copy = summary(base["ceiling_copy"]) if base.get("ceiling_copy") else None
    ceiling = min((x["rate"] for x in (read, copy) if x and x["rate"]), default=None)
    plain = summary(base["plain"]) if base.get("plain") else None
    keys = summary(base["key_read"]) if base.get("key_read") else None
    return {"ceiling": ceiling, "plain": plain["rate"] if plain else None, "read": read, "copy": copy,
            "keys": keys["rate"] if keys else None}


TABLE_HEAD = ("| approach | rows | wall s | rows/s | client CPU s | PostgreSQL CPU s | peak RSS MiB | x ceiling | x plain |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|")


def row(name: str, s: dict, refs: dict, rss_note: str = "") -> str:
    return (f"| {name} | {f_int(s['rows'])} | {f_num(s['wall'])} | {f_int(s['rate'])} | {f_num(s['cpu'])} | "
            f"{f_num(s['pg_cpu'])} | {f_int(s['rss'])}{rss_note} | {f_ratio(ratio(s['rate'], refs['ceiling']))} | "
            f"{f_ratio(ratio(s['rate'], refs['plain']))} |")


def render_section(key: str, s: dict) -> list[str]:
    out = [f"## {key.replace('/', ' preset, ')} source", ""]
    info = s.get("source_info") or {}
    counts = info.get("counts") or {}
    if counts:
        out.append("Source: " + ", ".join(f"{k} {v:,}" for k, v in counts.items() if k != "SIM_State")
                   + f"; ledger data set (UB_Transaction without PMT lines) {info.get('ledger_rows', 0):,} rows."
                   + (f" Built in {info['build_seconds']} s." if info.get("build_seconds") else "")
                   + " Measured at commit " + _commits(s)
                   + (f" on {info['cpu']}" if info.get("cpu") else "") + f"; repetitions: {s.get('repeat')} (fewer where a "
                   "table lists fewer runs).")
        out.append("")
    refs = references(s)
    base = s.get("baselines")
    if base:
        sample = base.get("sample_where")
        out += ["### The ledger data set: product against the baselines (initial full load)", ""]
        if sample:
            out.append(f"The plain approach and GenericTransfer ran on a fixed sample of the ledger, its first "
                       f"{base['sample_rows']:,} lines by TransactionID (`{sample}`), because on all "
                       f"{base['ledger_rows']:,} lines they would take hours; the ceiling, the key-only read and "
                       f"the product ran on the whole ledger. Rates are rows per second of each one's own rows.")
            out.append("")
        out.append(TABLE_HEAD)
        for name in ("ceiling_read", "ceiling_copy", "key_read", "plain", "generic_transfer"):
            runs = base["runs"].get(name)
            if runs:
                out.append(row(BASELINES[name], summary(runs), refs))
        out.append(f"| **ceiling** = the slower of (a) and (b) | | | {f_int(refs['ceiling'])} | | | | 1.00 | "
                   f"{f_ratio(ratio(refs['ceiling'], refs['plain']))} |")
        for variant, runs in (s.get("w1") or {}).items():
            lr = ledger_runs(runs)
            if lr:
                out.append(row(f"**product**, ledger data set, {VARIANTS.get(variant, variant)}", summary(lr), refs,
                               " (whole run)"))
        out.append("")
        out.append("Product rows: the `charges` data set of the workload-1 runs, timed by its own audit "
                   "(`sync.run_datasets`: extract + validate + publish seconds, the extract including its "
                   "supporting key read); CPU and RSS are those of the whole run (all data sets).")
        out.append("")
    w1 = s.get("w1")
    if w1:
        out += ["### Workload 1: initial full sync, every data set, through `pipeline.run_sync`", "",
                "Fresh portal database per repetition. Rows: all data sets' extracted rows.", "", TABLE_HEAD]
        for variant, runs in w1.items():
            out.append(row(f"product, {VARIANTS.get(variant, variant)}", summary(runs), refs))
        out += ["", "Per data set (medians, seconds from `sync.run_datasets`):", "",
                "| variant | data set | rows | extract s | validate s | publish s | rows/s (own seconds) |",
                "|---|---|---:|---:|---:|---:|---:|"]
        for variant, runs in w1.items():
            names = list(runs[0]["extra"]["datasets"])
            for name in names:
                ds = [r["extra"]["datasets"][name] for r in runs if name in r["extra"]["datasets"]]
                ex, va, pu = (med([d.get(k) for d in ds]) for k in ("extract_seconds", "validate_seconds",
                                                                      "publish_seconds"))
                rows = med([d["rows_extracted"] for d in ds])
                rate = med([d["rows_extracted"] / t if (t := sum(d.get(k) or 0 for k in (
                    "extract_seconds", "validate_seconds", "publish_seconds"))) else None for d in ds])
                out.append(f"| {variant} | {name} | {f_int(rows)} | {f_num(ex, 2)} | {f_num(va, 2)} | "
                           f"{f_num(pu, 2)} | {f_int(rate)} |")
        out.append("")
    w2 = s.get("w2")
    if w2:
        out += ["### Workload 2: incremental run, 15 minutes of simulator activity", "",
                "`sim.evolve(15 min)`, then `run_sync` with the scheduled interval that covers it (as "
                "`tests/synctest.advance`), with validation (GX). Changes: rows the simulator inserted / updated / "
                "deleted in the ledger, receipts and balances. Rows: every data set's extracted rows (accounts, "
                "residents and assessments are full snapshots in every run).", "",
                "| rep | ledger +/~/- | receipts +/~/- | balances +/~/- | rows extracted | wall s | validate s "
                "(sum) | publish s (sum) | client CPU s | PostgreSQL CPU s | peak RSS MiB |",
                "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for i, r in enumerate(w2):
            ch = r["extra"].get("changes", {})
            dss = r["extra"]["datasets"].values()
            val = sum(d.get("validate_seconds") or 0 for d in dss)
            pub = sum(d.get("publish_seconds") or 0 for d in dss)
            out.append(f"| {i + 1} | {_chg(ch, 'UB_Transaction')} | {_chg(ch, 'CR_Receipt')} | "
                       f"{_chg(ch, 'UB_Balance')} | {f_int(r['rows'])} | {f_num(r['wall'])} | {f_num(val)} | "
                       f"{f_num(pub)} | {f_num(r['cpu'])} | {f_num(r['pg_cpu'])} | {f_int(r['rss_mib'])} |")
        sm = summary(w2)
        out.append(f"| **median** | | | | {f_int(sm['rows'])} | **{f_num(sm['wall'])}** | "
                   f"**{f_num(med([_validate(r) for r in w2]))}** | {f_num(med([_publish(r) for r in w2]))} | "
                   f"{f_num(sm['cpu'])} | {f_num(sm['pg_cpu'])} | {f_int(sm['rss'])} |")
        for variant, vruns in (s.get("w2_variants") or {}).items():
            vs = summary(vruns)
            out.append(f"| median, {VARIANTS.get(variant, variant)} (runs after their own 15 minutes) | | | | "
                       f"{f_int(vs['rows'])} | {f_num(vs['wall'])} | {f_num(med([_validate(r) for r in vruns]))} | "
                       f"{f_num(med([_publish(r) for r in vruns]))} | {f_num(vs['cpu'])} | {f_num(vs['pg_cpu'])} | "
                       f"{f_int(vs['rss'])} |")
        out += ["", "Per data set (medians, with validation):", "",
                "| data set | mode | rows | extract s | validate s | publish s |", "|---|---|---:|---:|---:|---:|"]
        for name in w2[0]["extra"]["datasets"]:
            ds = [r["extra"]["datasets"][name] for r in w2]
            out.append(f"| {name} | {ds[0]['mode']} | {f_int(med([d['rows_extracted'] for d in ds]))} | "
                       + " | ".join(f_num(med([d.get(k) for d in ds]), 2)
                                    for k in ("extract_seconds", "validate_seconds", "publish_seconds")) + " |")
        out.append("")
    w3 = s.get("w3")
    if w3:
        out += ["### Workload 3: full reconciliation (`reconcile_all_history`), 1 % of the ledger changed in "
                "place, 0.5 % deleted", "",
                "Direct statements on the source between runs: `UPDATE` of Description and Amount (+1.00) of "
                "the lines whose TransactionID mod 100 is a per-repetition residue (InputDate untouched, so no "
                "window sees them), `DELETE` of those whose TransactionID mod 200 is another; then `run_sync` "
                "with `RunRequest(reconcile_all_history=True, allow_mass_delete=['charges'])`, validation on (GX). "
                "Floor: the key-only read of the whole ledger at the rate measured above.", "",
                "| rep | ledger lines | changed | deleted | charges updated | charges deleted | wall s | "
                "charges extract / validate / publish s | client CPU s | PostgreSQL CPU s | peak RSS MiB | "
                "x key-read floor |", "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
        for i, r in enumerate(w3):
            ch = r["extra"]["datasets"].get("charges", {})
            floor = r["extra"]["ledger_rows_before"] / refs["keys"] if refs["keys"] else None
            out.append(
                f"| {i + 1} | {f_int(r['extra']['ledger_rows_before'])} | {f_int(r['extra']['changed'])} | "
                f"{f_int(r['extra']['deleted'])} | {f_int(ch.get('rows_updated'))} | {f_int(ch.get('rows_deleted'))} "
                f"| {f_num(r['wall'])} | {f_num(ch.get('extract_seconds'))} / {f_num(ch.get('validate_seconds'))} / "
                f"{f_num(ch.get('publish_seconds'))} | {f_num(r['cpu'])} | {f_num(r['pg_cpu'])} | "
                f"{f_int(r['rss_mib'])} | {f_ratio(ratio(r['wall'], floor))} |")
        sm = summary(w3)
        out.append(f"| **median** | | | | | | **{f_num(sm['wall'])}** | | {f_num(sm['cpu'])} | {f_num(sm['pg_cpu'])} "
                   f"| {f_int(sm['rss'])} | |")
        out += ["", "Per data set (medians):", "", "| data set | mode | rows | extract s | validate s | publish s |",
                "|---|---|---:|---:|---:|---:|"]
        for name in w3[0]["extra"]["datasets"]:
            ds = [r["extra"]["datasets"][name] for r in w3]
            out.append(f"| {name} | {ds[0]['mode']} | {f_int(med([d['rows_extracted'] for d in ds]))} | "
                       + " | ".join(f_num(med([d.get(k) for d in ds]), 2)
                                    for k in ("extract_seconds", "validate_seconds", "publish_seconds")) + " |")
        out.append("")
    w4 = s.get("w4")
    if w4:
        out += render_w4(w4)
    return out


def _commits(s: dict) -> str:
    commits = s.get("commits") or {}
    if not commits:
        return f"`{(s.get('commit') or '?')[:12]}`"
    by_commit: dict[str, list[str]] = {}
    for workload, commit in commits.items():
        by_commit.setdefault(commit, []).append(workload)
    return ", ".join(f"`{c[:12]}` ({', '.join(ws)})" for c, ws in by_commit.items())


def _validate(r):
    return sum(d.get("validate_seconds") or 0 for d in r["extra"]["datasets"].values())


def _publish(r):
    return sum(d.get("publish_seconds") or 0 for d in r["extra"]["datasets"].values())


def _chg(changes: dict, table: str) -> str:
    c = changes.get(table)
    return "/".join(str(x) for x in c) if c else "0"


def render_w4(w4: dict) -> list[str]:
    out = ["### Workload 4: end to end through Airflow (private instance, LocalExecutor)", "",
           f"Port {w4['port']}; set-up not counted: source {w4.get('source_build_seconds')} s, `airflow-init.sh` "
           f"{w4.get('init_seconds')} s, services healthy after {w4.get('services_start_seconds')} s, DAG parsed "
           f"after {w4.get('dag_parse_seconds')} s. The first run is the one the scheduler creates when the DAG is "
           "unpaused (a full sync); each later run follows about 15 minutes' worth of simulator activity entered "
           "just before it is triggered (a run without a data interval reads from the last mark to now).", "",
           "Wall: trigger (or unpause) to the run's end. Pipeline critical path: the slowest data set's extract + "
           "validate seconds plus the publish seconds (`sync.run_datasets`); prepare, cleanup, report and "
           "freshness count as overhead. Airflow overhead = wall - pipeline critical path.", "",
           "| run | kind | rows extracted | wall s | queued to start s | run duration s | pipeline critical path s | "
           "Airflow overhead s (share) | task seconds (sum) | pipeline seconds (sum) | peak RSS of a task process MiB |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(w4["runs"]):
        over = (r["wall_from_trigger"] - r["pipeline_critical_path"]) if r.get("wall_from_trigger") else None
        share = over / r["wall_from_trigger"] if over is not None else None
        rss = (r.get("task_rss_mib") or {}).get("task process")
        out.append(f"| {i + 1} | {r['kind']} | {f_int(r['rows_extracted'])} | {f_num(r['wall_from_trigger'])} | "
                   f"{f_num(r['queued_to_start'])} | {f_num(r['run_duration'])} | {f_num(r['pipeline_critical_path'])} "
                   f"| {f_num(over)} ({share:.0%}) | {f_num(r['task_seconds_total'])} | "
                   f"{f_num(r['pipeline_seconds_total'])} | {f_int(rss)} |")
    inc = [r for r in w4["runs"] if r["kind"].startswith("incremental")]
    if inc:
        wall = med([r["wall_from_trigger"] for r in inc])
        crit = med([r["pipeline_critical_path"] for r in inc])
        out.append(f"| **median of the incremental runs** | | | **{f_num(wall)}** | | | {f_num(crit)} | "
                   f"{f_num(wall - crit)} ({(wall - crit) / wall:.0%}) | | | |")
        out += ["", "Per task of the incremental runs (medians): Airflow duration against the pipeline step's own "
                "seconds; the difference is the task's start-up and hand-over cost.", "",
                "| task | duration s | pipeline s | start-up and other s | queued to start s |",
                "|---|---:|---:|---:|---:|"]
        for task in inc[0]["tasks"]:
            d = med([r["tasks"][task]["duration"] for r in inc if task in r["tasks"]])
            p = med([r["tasks"][task]["pipeline_seconds"] for r in inc if task in r["tasks"]])
            q = med([r["tasks"][task]["queued_to_start"] for r in inc if task in r["tasks"]])
            out.append(f"| {task} | {f_num(d)} | {f_num(p)} | {f_num(d - p if d is not None and p is not None else None)}"
                       f" | {f_num(q)} |")
    out.append("")
    return out


def targets(data: dict) -> list[str]:
    sections = data["sections"]
    out = ["## Targets (issue 7)", "", "| target | measured | met? |", "|---|---|---|"]

    def verdict(ok):
        return "-" if ok is None else ("**met**" if ok else "**missed**")

    for key in sorted(sections, key=lambda k: ORDER.get(k, 9)):
        s = sections[key]
        refs = references(s)
        lr = ledger_runs((s.get("w1") or {}).get("gx") or [])
        if lr and refs["ceiling"] and refs["plain"]:
            rate = summary(lr)["rate"]
            scope = "the target" if key.startswith("city") else "an indication; the target is for city"
            out.append(f"| {key}: full sync, ledger >= 10x plain rows/s ({scope}) | {f_int(rate)} rows/s = "
                       f"{rate / refs['plain']:.1f}x plain ({f_int(refs['plain'])}) | {verdict(rate >= 10 * refs['plain'])} |")
            out.append(f"| {key}: full sync, ledger >= 0.5x ceiling ({scope}) | {rate / refs['ceiling']:.2f}x ceiling "
                       f"({f_int(refs['ceiling'])} rows/s) | {verdict(rate >= 0.5 * refs['ceiling'])} |")
    rss = []
    for key, s in sections.items():
        for name in ("w1", "w2", "w3"):
            v = s.get(name)
            runs = [r for rs in v.values() for r in rs] if isinstance(v, dict) else (v or [])
            rss += [(r["rss_mib"], f"{key} {name}") for r in runs]
        for r in (s.get("w4") or {}).get("runs", []):
            t = (r.get("task_rss_mib") or {}).get("task process")
            if t:
                rss.append((t, f"{key} w4 Airflow task process"))
    if rss:
        top = max(rss)
        out.append(f"| peak RSS of any task < 1 GiB (product runs, all workloads) | max {top[0]:,.0f} MiB ({top[1]}) | "
                   f"{verdict(top[0] < 1024)} |")
    def w2_runs(preset: str, engine: str, variant: str) -> list | None:
        section = sections.get(f"{preset}/{engine}", {})
        return section.get("w2") if variant == "gx" else section.get("w2_variants", {}).get(variant)

    for engine in ("sqlite", "postgresql"):
        for variant, what in (("gx", "incremental cost independent of table size (city/town wall near 1)"),
                              ("snapshots60", "the same, snapshots at a 60-minute cadence (runs between two "
                                              "refreshes)")):
            town, city = w2_runs("town", engine, variant), w2_runs("city", engine, variant)
            if town and city:
                t, c = med([r["wall"] for r in town]), med([r["wall"] for r in city])
                out.append(f"| {engine}: {what} | city {c:.1f} s / town {t:.1f} s = {c / t:.1f} | "
                           f"{verdict(c / t <= 1.5)} |")
    for key, s in sections.items():
        if s.get("w2"):
            v = med([_validate(r) for r in s["w2"]])
            worst = max(_validate(r) for r in s["w2"])
            out.append(f"| {key}: validation of an incremental window < 10 s, in one process (run_sync; sum over the "
                       f"data sets) | median {v:.1f} s (max {worst:.1f} s) | "
                       f"{verdict(worst < 10)} |")
        if s.get("w3") and key.startswith("city"):
            w = med([r["wall"] for r in s["w3"]])
            out.append(f"| {key}: reconciliation < 3 min | median {w:.0f} s | {verdict(w < 180)} |")
        w4 = s.get("w4")
        if w4:
            inc = [r for r in w4["runs"] if r["kind"].startswith("incremental")]
            if inc:
                per_task = [t["pipeline_seconds"] for r in inc for name, t in r["tasks"].items()
                            if name.endswith(".validate") and t["pipeline_seconds"] is not None]
                sums = [sum(t["pipeline_seconds"] or 0 for name, t in r["tasks"].items() if name.endswith(".validate"))
                        for r in inc]
                out.append(f"| {key}: validation of an incremental window < 10 s, through Airflow (one validate task "
                           f"per data set, each its own process) | per task: median {med(per_task):.1f} s, max "
                           f"{max(per_task):.1f} s; all data sets: median {med(sums):.1f} s | "
                           f"{verdict(max(per_task) < 10)} |")
                worst = max(r["wall_from_trigger"] for r in inc)
                out.append(f"| {key}: scheduled run latency <= one interval + 2 min (run wall from trigger <= 120 s) "
                           f"| median {med([r['wall_from_trigger'] for r in inc]):.0f} s, max {worst:.0f} s | "
                           f"{verdict(worst <= 120)} |")
    out.append("")
    return out


def render(data: dict) -> str:
    m = data.get("machine") or {}
    out = ["# Benchmarks (issue 7)", "",
           "Written by `benchmarks/run.py` (see `benchmarks/README.md`); raw numbers of every repetition in the "
           "`.json` file next to this one. Medians over the repetitions. Rows/s of the product's ledger counts "
           "everything it adds to the bare read and load (staging, validation, projection, publish).", ""]
    if m:
        libs = ", ".join(f"{k} {v}" for k, v in (m.get("libraries") or {}).items())
        out += ["## Machine", "",
                f"- {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB RAM; {m.get('os')} "
                f"(kernel {m.get('kernel')}); Python {m.get('python')}; PostgreSQL {m.get('postgresql')} on the same "
                f"machine ({', '.join(f'{k}={v}' for k, v in (m.get('pg_settings') or {}).items())})",
                f"- {libs}", f"- ODBC drivers: {m.get('odbc_drivers')}",
                "- The machine was shared with other agents' work during the runs (load averages below): absolute "
                "seconds are noisy, ratios measured in the same run are more reliable. Sessions get machines of "
                "the same size but not always the same processor: each section names the one it ran on, and "
                "this list describes the latest invocation's.",
                "", "Invocations (a later invocation of the same preset and source replaces that section; each section "
                "states the commit its numbers come from):", ""]
        for inv in data.get("invocations", []):
            la0 = ", ".join(f"{x:.1f}" for x in inv.get("load_average_start") or [])
            la1 = ", ".join(f"{x:.1f}" for x in inv.get("load_average_end") or [])
            out.append(f"- `benchmarks/run.py {' '.join(inv['argv'])}` at {inv['started']} (commit "
                       f"`{inv['commit'][:12]}`; load average {la0} at start, {la1 or '-'} at the end)")
        if m.get("product_code_modified"):
            out.append("- Note: product code under include/portal_sync differed from the commit when measured.")
        out.append("")
    out += targets(data)
    for key in sorted(data["sections"], key=lambda k: ORDER.get(k, 9)):
        out += render_section(key, data["sections"][key])
    return "\n".join(out) + "\n"
