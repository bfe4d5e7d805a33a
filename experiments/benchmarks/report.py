"""Turns ``bench.py``'s measurements into medians, ratios and target verdicts, then writes
``bench.json``, ``bench.md``, ``scaling.png`` and the table in ``README.md``."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from contenders import median

ORDER = ["floor", "nnx_trainer", "nnx_loop", "nnx_trainer_mlflow", "nnx_run", "sklearn",
         "torch_adam", "torch_fused_adam"]
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


def _ratio(a, b):
    return a / b if a is not None and b else None


def paired(a: list, b: list) -> dict | None:
    """Median and quartiles of a[i] / b[i]: ratios of epochs from the same round, which the
    machine's slow load swings affect far less than a ratio of two medians."""
    ratios = sorted(x / y for x, y in zip(a or [], b or []) if x is not None and y)
    if not ratios:
        return None
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {"median": statistics.median(ratios), "q1": q[0], "q3": q[2], "n": len(ratios)}


def _pm(p: dict | None, unit: str = "x") -> str:
    if p is None:
        return "n/a"
    return f"{p['median']:.2f}{unit} (quartiles {p['q1']:.2f}-{p['q3']:.2f})"


def build(meta: dict, results: dict, tutorial: dict, profile: dict, scaling: list,
          cnn: dict | None = None) -> dict:
    """Everything measured plus the derived numbers, as one JSON-able document. ``cnn``: the
    CNN section (``cnn_bench.measure``, its own medians and targets), or None when skipped."""
    for entry in results.values():
        if entry.get("skipped") or entry.get("error"):
            continue
        if entry.get("key") == "nnx_run" or "epoch_seconds" in entry and "wall" not in entry:
            entry["median_wall"] = median(entry.get("epoch_seconds", []))
        else:
            entry["median_wall"] = median(entry["wall"])
            entry["median_cpu"] = median(entry["cpu"])
        if "epoch_seconds" in entry:
            entry["median_epoch_seconds"] = median(entry["epoch_seconds"])
        mem = entry.get("memory") or {}
        if "rss_after_imports_mib" in mem:
            mem["growth_mib"] = mem["peak_mib"] - mem["rss_after_imports_mib"]
            mem["growth_over_dataset"] = mem["growth_mib"] / mem["dataset_mib"]
            mem["train_extra_mib"] = mem["train_peak_mib"] - mem["rss_after_load_mib"]
    floor = results.get("floor", {})
    nnx = results.get("nnx_trainer", {})
    for entry in results.values():
        if "wall" in entry and "wall" in floor:  # took turns with the floor: paired ratios
            entry["paired_x_floor"] = paired(entry["wall"], floor["wall"])
            entry["paired_x_floor_cpu"] = paired(entry["cpu"], floor["cpu"])
            entry["paired_x_nnx_trainer"] = paired(entry["wall"], nnx.get("wall"))
            entry["x_floor"] = (entry["paired_x_floor"] or {}).get("median")
            entry["x_floor_cpu"] = (entry["paired_x_floor_cpu"] or {}).get("median")
            entry["x_nnx_trainer"] = (entry["paired_x_nnx_trainer"] or {}).get("median")
        else:  # the subprocess ran alone: a ratio of medians
            entry["x_floor"] = _ratio(entry.get("median_wall"), floor.get("median_wall"))
            entry["x_nnx_trainer"] = _ratio(entry.get("median_wall"), nnx.get("median_wall"))
    for entry in tutorial.values():
        entry["median_wall"] = median(entry["wall"])
    doc = {"meta": meta, "contenders": results, "tutorial": tutorial, "profile": profile,
           "scaling": scaling, "cnn": cnn}
    doc["targets"] = targets(doc)
    return doc


def targets(doc: dict) -> list[dict]:
    r, t = doc["contenders"], doc["tutorial"]

    def wall(key):
        return r.get(key, {}).get("median_wall")

    rows = []

    def add(name, measured, ok, detail=""):
        rows.append({"target": name, "measured": measured, "met": ok, "detail": detail})

    def pair(key):
        return r.get(key, {}).get("paired_x_floor")

    def faster(key):  # their time / nnx Trainer's time, round by round
        return paired(r.get(key, {}).get("wall"), r.get("nnx_trainer", {}).get("wall"))

    x = pair("nnx_trainer")
    add("nnx epoch <= 1.25x the floor", f"Trainer {_pm(x)}; loop {_pm(pair('nnx_loop'))}",
        x is not None and x["median"] <= 1.25)
    sk = faster("sklearn")
    add("nnx >= 2x faster than scikit-learn MLPClassifier", f"{_pm(sk)} faster",
        sk is not None and sk["median"] >= 2.0)
    if "skipped" in r.get("torch_fused_adam", {}):
        add("nnx faster than PyTorch CPU with fused Adam", "skipped: "
            + r["torch_fused_adam"]["skipped"], None)
    else:
        tf = faster("torch_fused_adam")
        add(f"nnx faster than {r['torch_fused_adam'].get('label', 'PyTorch fused Adam')}",
            f"{_pm(tf)} faster", tf is not None and tf["median"] > 1.0)
    own = r.get("nnx_trainer", {})
    tracked = r.get("nnx_trainer_mlflow", {})
    run = r.get("nnx_run", {})
    rt = paired(tracked.get("epoch_seconds"), own.get("epoch_seconds"))
    rr = _ratio(run.get("median_wall"), own.get("median_epoch_seconds"))
    sub = (f"; the `python -m nnx.run` subprocess (alone, not interleaved) "
           f"{(rr - 1) * 100:+.1f}%" if rr else "")
    if "tracking=none" in run.get("label", ""):
        sub += " (with tracking=none: " + run.get("note", "") + ")"
    control = paired(own.get("wall"), r.get("nnx_loop", {}).get("wall"))
    add("python -m nnx.run with tracking within 3% of the Python API per epoch",
        (f"Trainer + MLflow tracker / Trainer, epoch_seconds round by round: {_pm(rt)}"
         if rt else "n/a") + sub
        + (f". Resolution: Trainer / loop, which differ by ~4% of work (finite checks, accuracy), read "
           f"{_pm(control)}" if control else ""),
        rt is not None and rt["median"] <= 1.03)
    mem = r.get("nnx_trainer", {}).get("memory", {})
    g = mem.get("growth_over_dataset")
    add("peak memory <= 1.3x the loaded dataset (nnx Trainer)",
        f"{g:.2f}x ({mem['growth_mib']:.0f} MiB over the imports; dataset "
        f"{mem['dataset_mib']:.0f} MiB)" if g else "n/a", g is not None and g <= 1.3)
    tx = _ratio(t["tutorial_nnx"]["median_wall"], t["tutorial_numpy"]["median_wall"])
    add("tutorial: nnx <= 1.5x the bare NumPy code", f"{tx:.2f}x" if tx else "n/a",
        tx is not None and tx <= 1.5)
    none = t["tutorial_run_none"]["median_wall"]
    add("python -m nnx.run experiment=tutorial tracking=none < 1.5 s wall",
        f"{none:.2f} s" if none else "n/a", none is not None and none < 1.5)
    on = t["tutorial_run_tracking"]["median_wall"]
    add("python -m nnx.run experiment=tutorial with tracking < 4 s wall",
        f"{on:.2f} s" if on else "n/a", on is not None and on < 4.0)
    acc = r.get("nnx_trainer", {}).get("accuracy")
    others = ("sklearn", "torch_adam", "torch_fused_adam")
    gaps = {k: (acc - r[k]["accuracy"]) * 100 for k in others
            if r.get(k, {}).get("accuracy") is not None}
    own_spread = {k: (acc - r[k]["accuracy"]) * 100 for k in ("nnx_loop", "nnx_run")
                  if r.get(k, {}).get("accuracy") is not None}
    worst = max(gaps.values(), key=abs) if gaps else None
    add("same test accuracy as the contenders after the same epochs (within 0.5 points)",
        (", ".join(f"{k} {v:+.2f}" for k, v in gaps.items()) + " points (nnx Trainer - them)"
         if gaps else "n/a")
        + ("; nnx against itself with other seeds: "
           + ", ".join(f"{k} {v:+.2f}" for k, v in own_spread.items()) if own_spread else ""),
        worst is not None and abs(worst) <= 0.5)
    return rows


# -- Markdown -----------------------------------------------------------------------------------
def _f(value, fmt=".3f", none="—"):
    return none if value is None else format(value, fmt)


def markdown(doc: dict, title: bool = True, image: str = "scaling.png") -> str:
    meta, r = doc["meta"], doc["contenders"]
    out = []
    if title:
        out += ["# nnx speed benchmark", ""]
    out += [
        f"Made by `make bench` (`experiments/benchmarks/bench.py`) on {meta['date']}"
        + (" with `--quick`" if meta["quick"] else "") + f", in {meta['bench_seconds']:.0f} s. "
        f"Fashion-MNIST ({meta['train_samples']} training, {meta['test_samples']} test images), "
        "784-256-128-10 ReLU MLP, softmax cross-entropy, Adam lr 1e-3, batch 128, float32, "
        f"one BLAS thread; {meta['epochs']} epochs per contender, interleaved epoch by epoch "
        "in one process; medians. Machine load (1-minute average) "
        f"{meta['loadavg_start'][0]:.2f} at the start, {meta['loadavg_end'][0]:.2f} at the end "
        f"({meta['cpu_count']} cores). Phases: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in meta.get("phase_seconds", {}).items()) + ".",
        "",
        "## Per epoch",
        "",
        ("| contender | s/epoch (wall) | CPU s/epoch | x floor | x floor (CPU) | x nnx Trainer "
         "| test accuracy % | peak RSS growth | growth / dataset | training's own |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for key in ORDER:
        e = r.get(key)
        if e is None:
            continue
        if e.get("skipped") or e.get("error"):
            out.append(f"| {key} | {e.get('skipped') or e.get('error')} | | | | | | | | |")
            continue
        mem = e.get("memory") or {}
        own = "—"
        if "growth_mib" in mem:
            growth = f"{mem['growth_mib']:.0f} MiB"
            ratio = f"{mem['growth_over_dataset']:.2f}"
            own = f"{mem['train_extra_mib']:+.0f} MiB"
        elif mem.get("process_peak_mib"):
            growth, ratio = f"whole process {mem['process_peak_mib']:.0f} MiB", "—"
        else:
            growth = ratio = "—"
        acc = e.get("accuracy")
        out.append(f"| {e.get('label', key)} | {_f(e.get('median_wall'))} | "
                   f"{_f(e.get('median_cpu'))} | {_f(e.get('x_floor'), '.2f')} | "
                   f"{_f(e.get('x_floor_cpu'), '.2f')} | {_f(e.get('x_nnx_trainer'), '.2f')} | "
                   f"{_f(acc * 100 if acc is not None else None, '.2f')} | {growth} | {ratio} | "
                   f"{own} |")
        if e.get("note"):
            notes.append(f"- {e.get('label', key)}: {e['note']}")
    trainer, run = r.get("nnx_trainer", {}), r.get("nnx_run", {})
    tracked = r.get("nnx_trainer_mlflow", {})
    out += [
        "",
        (f"Loaded dataset: {meta['dataset_mib']:.0f} MiB (x float32, y int64, train and test). "
        "Memory: each contender alone in a fresh process (import, load, 1 epoch, test "
        "evaluation); growth = the peak RSS after the imports (VmHWM, reset once they are done; "
        "loading included) minus the RSS then; training's own = the peak while training minus "
        "the RSS once the data is loaded. CPU s: process time, which the machine's other load "
        "inflates less than wall time. x floor, x nnx Trainer: the median of the ratios of "
        "epochs from the same round (for the subprocess, which ran alone: a ratio of medians)."),
        "",
        (f"- nnx Trainer: wall between epoch ends; its own `epoch_seconds` metric (the training "
         f"pass only) has median {_f(trainer.get('median_epoch_seconds'))} s. "
         "nnx Trainer + MLflow tracker: what `python -m nnx.run` runs, taking turns with the "
         "others; its wall includes validating on the test set every epoch, its "
         f"`epoch_seconds` median is {_f(tracked.get('median_epoch_seconds'))} s. "
         f"`python -m nnx.run`: the `epoch_seconds` that it logged "
        f"({run.get('source', '?')}), one subprocess run in the middle of the window: "
        f"`{run.get('command', '')}`."),
        *notes,
    ]
    if "sklearn" in r and r["sklearn"].get("dtype"):
        out.append(f"- scikit-learn trained in {r['sklearn']['dtype']}, one `fit(max_iter=1, "
                   "warm_start=True)` per epoch (its input validation included), alpha=0.")
    timed = [k for k in ORDER if r.get(k, {}).get("median_wall")]
    out += ["", "### Ratios (row time / column time)", "",
            "| | " + " | ".join(timed) + " |", "|---|" + "---:|" * len(timed)]
    for a in timed:
        out.append(f"| {a} | " + " | ".join(
            _f(r[a]["median_wall"] / r[b]["median_wall"], ".2f") for b in timed) + " |")
    t = doc["tutorial"]
    out += ["", "## The tutorial network (4 samples, 1500 full-batch iterations)", "",
            "| | seconds (median) | repeats |", "|---|---:|---:|"]
    for key in ("tutorial_numpy", "tutorial_nnx", "tutorial_run_none", "tutorial_run_tracking"):
        e = t[key]
        out.append(f"| {e['label']} | {_f(e['median_wall'])} | {len(e['wall'])} |")
    first = t["tutorial_run_tracking"].get("first_run_creating_store")
    first_note = (f"the first tracked run, which also creates the MLflow store, took "
                  f"{_f(first, '.2f')} s and is not in the median" if not meta["quick"] else
                  "--quick: one run of each, the tracked one creating the store and with "
                  "tracking.plots=false tracking.log_model=false")
    out += ["", (f"nnx / bare NumPy: {_f(_ratio(t['tutorial_nnx']['median_wall'], t['tutorial_numpy']['median_wall']), '.2f')}x; "
            f"predictions agree to {t['tutorial_nnx']['max_abs_diff_vs_numpy']:.1e} "
            "(same starting weights). The `nnx.run` rows are whole processes (interpreter, "
            f"imports, Hydra, training, logging); {first_note}.")]
    errors = [f"- {k}: {err}" for k in t for err in t[k].get("errors", [])]
    out += ["", *errors] if errors else []
    out += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for row in doc["targets"]:
        verdict = {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
        detail = f" ({row['detail']})" if row["detail"] else ""
        out.append(f"| {row['target']} | {row['measured']}{detail} | {verdict} |")
    p = doc["profile"]
    out += ["", "## Where an nnx Trainer epoch goes", "",
            (f"Instrumented Trainer epochs ({p['steps']} steps each; per part the median of "
             f"{p['epochs']} epoch(s); epoch {p['epoch_seconds']:.3f} s). The wrappers add "
             "about 1 us per call, counted in the rest:"), "",
            "| part | ms/epoch | us/step | share |", "|---|---:|---:|---:|"]
    for part, seconds in p["parts"].items():
        out.append(f"| {part} | {seconds * 1e3:.0f} | {seconds / p['steps'] * 1e6:.0f} | "
                   f"{seconds / p['epoch_seconds'] * 100:.0f}% |")
    if doc["scaling"]:
        size = {row["sweep"]: row["samples"] for row in doc["scaling"]}
        out += ["", "## Scaling: the nnx loop and the floor", "",
                (f"Epochs over the first {size.get('batch')} (batch sweep) or {size.get('width')} "
                 "(width sweep) training images, medians of alternating epochs, in seconds per "
                 "10000 images."),
                "", f"![epoch time over batch size and width]({image})", "",
                "| sweep | dtype | batch | hidden | nnx s/10k | floor s/10k | nnx / floor |",
                "|---|---|---:|---|---:|---:|---:|"]
        for row in doc["scaling"]:
            k = 10000 / row["samples"]
            out.append(f"| {row['sweep']} | {row['dtype']} | {row['batch']} | "
                       f"{'-'.join(map(str, row['hidden']))} | {row['nnx_s'] * k:.3f} | "
                       f"{row['floor_s'] * k:.3f} | {row['nnx_s'] / row['floor_s']:.2f} |")
    pools = "; ".join(f"{p['internal_api']} {p['version']} ({p['library']}, "
                      f"{p['num_threads']} thread{'s' if p['num_threads'] != 1 else ''}"
                      + (f", {p['architecture']}" if p.get("architecture") else "") + ")"
                      for p in meta["threadpools"])
    torch = meta.get("torch_detail")
    if doc.get("cnn"):
        import cnn_bench

        out += ["", cnn_bench.markdown(doc["cnn"], heading="## CNN (issue 14)").rstrip("\n")]
    out += ["", "## Machine", "",
            f"- CPU: {meta['cpu_model']}, {meta['cpu_count']} cores ({meta['cpus_usable']} usable)",
            (f"- {meta['platform']}, Python {meta['python']}, NumPy {meta['numpy']} "
            f"(built with {meta['numpy_blas_build']}), scikit-learn {meta['scikit-learn']}, "
            f"torch {meta['torch'] or 'not installed'}, mlflow {meta['mlflow']}"),
            f"- thread pools: {pools}",
            "- environment: " + ", ".join(f"{k}={v}" for k, v in meta["env"].items()),
            ]
    if torch:
        out.append(f"- torch: BLAS {torch['blas']}, CPU capability {torch['cpu_capability']}, "
                   f"{torch['num_threads']} intra-op / {torch['num_interop_threads']} "
                   "inter-op threads")
    if meta["more_than_one_thread"]:
        out.append("- WARNING, pools with more than one thread: "
                   + "; ".join(meta["more_than_one_thread"]))
    return "\n".join(out) + "\n"


# -- files --------------------------------------------------------------------------------------
def plot(rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex="col")
    for col, (sweep, xlabel) in enumerate((("batch", "batch size (hidden 256-128)"),
                                           ("width", "width w (hidden w-w/2, batch 128)"))):
        for dtype, style in (("float32", "-"), ("float64", "--")):
            pts = [r for r in rows if r["sweep"] == sweep and r["dtype"] == dtype]
            if not pts:
                continue
            xs = [r["batch"] if sweep == "batch" else r["hidden"][0] for r in pts]
            per10k = [10000 / r["samples"] for r in pts]
            axes[0, col].plot(xs, [r["nnx_s"] * k for r, k in zip(pts, per10k)], "o" + style,
                              color="C0", label=f"nnx {dtype}")
            axes[0, col].plot(xs, [r["floor_s"] * k for r, k in zip(pts, per10k)], "s" + style,
                              color="C1", label=f"floor {dtype}")
            axes[1, col].plot(xs, [r["nnx_s"] / r["floor_s"] for r in pts], "o" + style,
                              color="C2", label=dtype)
        axes[0, col].set(xscale="log", yscale="log", ylabel="seconds per 10000 images",
                         title=f"epoch time over {sweep}")
        axes[1, col].set(xscale="log", xlabel=xlabel, ylabel="nnx / floor")
        axes[1, col].axhline(1.25, color="grey", lw=0.8, ls=":")
        ticks = sorted({r["batch"] if sweep == "batch" else r["hidden"][0]
                        for r in rows if r["sweep"] == sweep})
        for ax in axes[:, col]:
            ax.set_xticks(ticks, [str(v) for v in ticks])
            ax.minorticks_off()
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle("nnx loop vs the floor (matmuls alone) on Fashion-MNIST, one BLAS thread "
                 "(dotted: the 1.25x target)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(doc: dict, out: Path, readme: Path | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
    (out / "bench.md").write_text(markdown(doc, title=True))
    if doc["scaling"]:
        plot(doc["scaling"], out / "scaling.png")
    if readme is not None and readme.exists():
        text = readme.read_text()
        body = markdown(doc, title=False, image="results/scaling.png")
        body = "\n".join("#" + line if line.startswith(("## ", "### "))
                         else line for line in body.split("\n"))  # under "## Latest results"
        block = f"{README_START}\n{body}{README_END}"
        if README_START in text and README_END in text:
            head, rest = text.split(README_START, 1)
            text = head + block + rest.split(README_END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        readme.write_text(text)
