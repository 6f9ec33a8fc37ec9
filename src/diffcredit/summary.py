"""The run's fixed-name tables: results/values.csv (every estimate of the current
config), results/evaluation/*.csv and a grid of generated samples, written by the
`summary` rule; and the printout after a successful run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import atomic_path, read_json, read_npz, verify_dir, write_json
from .values import ends, read_values


def summary_job(job: dict, progress: bool = True) -> None:
    inputs, outputs = job["inputs"], job["outputs"]
    tables = [read_values(p) for p in inputs["values"]]
    for table, label in zip(tables, job["labels"]):  # which entry made each row
        table.insert(0, "estimate", label)
    if job.get("canaries"):
        tables = _with_canaries(tables, job["labels"], job["canaries"], job["quality"], outputs["canaries"])
    values = pd.concat(tables, ignore_index=True)
    with atomic_path(outputs["values"], suffix=".csv") as tmp:
        values.to_csv(tmp, index=False)
    for name in sorted(set(outputs) - {"values", "samples", "canaries"}):  # one table per evaluation
        with atomic_path(outputs[name], suffix=".csv") as tmp:
            shutil.copyfile(verify_dir(inputs[name]) / f"{name}.csv", tmp)
    samples = [read_npz(p, ("images",))["images"] for p in inputs["samples"]]
    with atomic_path(outputs["samples"], suffix=".png") as tmp:
        sample_grid(samples, job["members"], tmp)
    # Last: the stamp that says these tables describe this plan. Other configs' stamps
    # go, so that switching back to one of them rewrites the tables again.
    stamp = Path(job["out"])
    if stamp.parent.is_dir():
        for old in stamp.parent.iterdir():
            if old.is_file() and old.name.endswith(".json"):
                old.unlink(missing_ok=True)
    write_json(stamp, {"key": job["key"], "tables": outputs}, seal=True)


def _with_canaries(tables: list, labels: list, canaries: list[dict], quality: dict, out: str) -> list:
    """Write canaries.csv (each canary's check per estimate and property); return the
    tables with `canary` (its kind) and `canary_holds` (whether all its checks hold; empty
    where nothing is expected)."""
    from .canaries import check

    kinds = {c["name"]: c["kind"] for c in canaries}
    checks, out_tables = [], []
    for table, label in zip(tables, labels):
        table = table.copy()
        table["canary"] = table["contributor"].map(kinds).fillna("")
        table["canary_holds"] = pd.Series(pd.NA, index=table.index, dtype="boolean")
        if (table["scheme"] != "attribution").all():
            found = check(table, canaries, lambda p: quality[p])
            checks.append(found.assign(estimate=label))
            for (prop, name), rows in found.groupby(["property", "canary"], sort=False):
                held = [bool(h) for h in rows["holds"] if h is not None and not pd.isna(h)]
                if held:  # every check of the canary (below the real ones, below its ladder's weaker step)
                    table.loc[(table["property"] == prop) & (table["contributor"] == name), "canary_holds"] = all(held)
        out_tables.append(table)
    found = pd.concat(checks, ignore_index=True) if checks else pd.DataFrame(columns=["estimate"])
    found.insert(0, "estimate", found.pop("estimate"))
    with atomic_path(out, suffix=".csv") as tmp:
        found.to_csv(tmp, index=False)
    return out_tables


def values_text(t: pd.DataFrame, columns: list[str], fmt: str, table: Path) -> str:
    """One property's values by rank as text: all of them, or the best and the worst
    with a line that says how many more `table` holds."""
    best, worst, hidden = ends(t)
    text = pd.concat([best, worst])[columns].to_string(index=False, float_format=fmt.format).splitlines()
    if hidden:
        text.insert(len(best) + 1, f"  ... {hidden} more between, in {table}")
    return "\n".join(text)


def _caption(members: list[str]) -> str:
    if not members:
        return "v(empty): untrained"
    if len(members) > 4:
        return f"{len(members)} contributors"
    return ", ".join(members)


def sample_grid(samples: list[np.ndarray], members: list[list[str]], path, per_row: int = 16) -> None:
    """One row of the first `per_row` samples per model, labelled by its coalition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(samples), 1, figsize=(per_row * 0.45 + 1, 0.75 * len(samples) + 0.3), squeeze=False)
    for ax, images, who in zip(axes[:, 0], samples, members):
        row = images[:per_row].transpose(0, 2, 3, 1)  # samples are (N, C, H, W) uint8
        strip = np.concatenate(list(row), axis=1)
        ax.imshow(strip.squeeze(-1) if strip.shape[-1] == 1 else strip, cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(_caption(who), rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_summary(plan, stream=None) -> None:
    """Print the values, best credit first, and where the tables are."""
    import sys

    stream = stream or sys.stdout
    if hasattr(stream, "reconfigure"):  # a name a Latin-1 terminal cannot show is escaped, not an error
        stream.reconfigure(errors="backslashreplace")
    path = Path(plan.summary_outputs["values"])
    if not path.is_file():
        return
    table = pd.read_csv(path)
    table["retrains"] = table["retrains"].fillna(0).astype(int) if "retrains" in table else 0
    cols = ["contributor", "value", "ci_low", "ci_high", "rank"]
    if "estimate" not in table:  # a table written before the column existed
        table["estimate"] = ""
    groups = ["estimate", "method", "shrink", "scheme", "budget", "strategy", "retrains", "property"]
    for (label, method, shrink, scheme, budget, strategy, retrains, prop), t in table.groupby(groups, sort=False):
        better = "higher" if bool(t["higher_is_better"].iloc[0]) else "lower"
        shrunk = ", shrunk toward the equal split" if shrink else ""
        if retrains:
            strategy = f"{strategy}, {retrains} also retrained: values of the retrained game"
        if scheme == "attribution":
            print(f"\n{prop} ({better} is better), {method} attribution of the full model (its own units):",
                  file=stream)
            shown, fmt = (cols if t["ci_low"].notna().any() else ["contributor", "value", "rank"]), "{:.4g}"
        else:
            named = f" [{label}]" if label else ""
            print(f"\n{prop} ({better} is better), {method} on {budget} {scheme} coalitions ({strategy}){shrunk}"
                  f"{named}:",
                  file=stream)
            shown, fmt = cols, "{:.4f}"
        print(values_text(t, shown, fmt, path), file=stream)
    for est in plan.estimators:
        diagnostics = _diagnostics(plan, est)
        print(f"plots: {plan.values_dir(est)}/{_compute_note(diagnostics)}", file=stream)
        if est.max_budget:
            print(_adaptive_note(plan, est, diagnostics), file=stream)
        for line in _training_notes(plan, diagnostics) + _pair_notes(plan, est) + _warnings(plan, diagnostics):
            print(line, file=stream)
    shortcuts = sorted({e.strategy for e in plan.estimators if not e.retrains} - {"retrain"})
    corrected = sorted({e.strategy for e in plan.estimators if e.retrains})
    images = "and the generated images" if plan.cfg["scores"]["image_bootstrap"] else "only"
    print(f"\nintervals: 95%, over the sampled coalitions {images}", file=stream)
    noisy = [e for e in plan.estimators if e.training_noise]
    if noisy:
        print("those of the estimates marked +noise also include the randomness of training, measured on their "
              "coalitions trained twice", file=stream)
    if len(noisy) < len(plan.estimators):
        print("the others leave out the randomness of training, which can move credits more than the intervals "
              "(docs/estimators.md): set training_noise on the estimator to include it", file=stream)
    if corrected:
        print(f"those of the estimates with retrained coalitions also include the error of {', '.join(corrected)} "
              "against retraining, as far as their retrains measure it", file=stream)
    fidelity = plan.summary_outputs.get("fidelity")
    if shortcuts and not (fidelity and Path(fidelity).is_file()):
        print(f"they do not include the error of {', '.join(shortcuts)} against retraining: measure it for this "
              "data with evaluations.fidelity (docs/evaluation.md)", file=stream)
    if fidelity and Path(fidelity).is_file():
        f = pd.read_csv(fidelity)
        print("\nagainst retraining (fidelity):", file=stream)
        cols = ["strategy", "property", "value_pearson", "value_rel_error", "coverage", "interval_scale", "cost_ratio"]
        print(f[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"), file=stream)
        for r in f[f["coverage"] < 0.9].itertuples():
            print(f"warning: {r.strategy}'s 95% intervals of {r.property} hold {r.coverage:.0%} of the retrained "
                  f"values; they must be {r.interval_scale:.1f}x wider to hold 95%", file=stream)
    lds = plan.summary_outputs.get("lds")
    if lds and Path(lds).is_file():
        print_lds(pd.read_csv(lds), stream)
    canaries = plan.summary_outputs.get("canaries")
    if canaries and Path(canaries).is_file():
        print("\ncanaries (players too: an audit of the method on this data, not values to pay from):", file=stream)
        for r in pd.read_csv(canaries).itertuples():
            verdict = "not checked" if pd.isna(r.holds) else "holds" if r.holds else "DOES NOT HOLD"
            if getattr(r, "decided", None) is not None and not pd.isna(r.decided):
                verdict += ", decided by the intervals" if r.decided else ", within the intervals' noise"
            print(f"  {r.estimate}, {r.property}: {r.canary} {verdict}: {r.expectation}; {r.detail}", file=stream)
    for name, out in plan.summary_outputs.items():
        if name not in ("values", "samples"):
            print(f"{name}: {out}", file=stream)
    print(f"table: {path}", file=stream)


def _diagnostics(plan, est) -> dict:
    """The estimate's diagnostics.json, or {} where it cannot be read."""
    try:
        return read_json(Path(plan.values_dir(est)) / "diagnostics.json")
    except (OSError, ValueError):
        return {}


def _compute_note(diagnostics: dict) -> str:
    """" (training: 120 s of coalitions + 900 s of retrains)" from the estimate's diagnostics."""
    compute = diagnostics.get("compute")
    if not compute:
        return ""
    retrains = f" + {compute['retrain_seconds']:,.0f} s of retrains" if compute.get("retrain_seconds") else ""
    return f" (training: {compute['coalition_seconds']:,.0f} s of coalitions{retrains})"


def _warnings(plan, diagnostics: dict) -> list[str]:
    """The warnings the estimate raised (a design some sizes of which teach the method
    nothing, resamples that could not identify the values), once each."""
    found = [m for prop in plan.properties for m in (diagnostics.get(prop) or {}).get("warnings", [])]
    return [f"  warning: {m}" for m in dict.fromkeys(found)]


def _training_notes(plan, diagnostics: dict) -> list[str]:
    """Per property, the spread of training that the estimate's coalitions trained twice
    measured."""
    found = [(prop, (diagnostics.get(prop) or {}).get("training_noise")) for prop in plan.properties]
    return [f"  {prop}: training changes a coalition's value by sd {t['sd']:.4g} ({t['rows']} coalitions trained "
            f"twice, {t['df']} df)" for prop, t in found if t]


def _pair_notes(plan, est) -> list[str]:
    """Per property, the most redundant and the most complementary pair of an estimate's
    interactions.csv, where the interval excludes 0."""
    path = Path(plan.values_dir(est)) / "interactions.csv"
    if not path.is_file():
        return []
    out = []
    for prop, t in pd.read_csv(path).groupby("property", sort=False):
        picks = [("redundant", t.iloc[0], t.iloc[0]["ci_high"] < 0), ("complementary", t.iloc[-1], t.iloc[-1]["ci_low"] > 0)]
        shown = [f"most {kind} {r['i']} & {r['j']} ({r['value']:.4g} [{r['ci_low']:.4g}, {r['ci_high']:.4g}])"
                 for kind, r, clear in picks if clear]
        out.append(f"  {prop} pairs ({t['index'].iloc[0]}): " + ("; ".join(shown) if shown else
                                                                "no pair's interaction is clear of 0"))
    return out


def _adaptive_note(plan, est, diagnostics: dict) -> str:
    """Why an adaptive estimate's rounds stopped, and what its last round measured."""
    folder = Path(plan.values_dir(est))
    try:
        a = diagnostics["adaptive"]
        rounds = pd.read_csv(folder / "rounds.csv")
    except (OSError, ValueError, KeyError):
        return ""
    last = rounds[rounds["round"] == rounds["round"].max()]
    target = ", ".join(f"{k} {v}" for k, v in a["target"].items())
    measured = "; ".join(f"{r.property}: widest half-width {r.half_width:.4g} ({r.relative:.2f} of the values' sd)"
                         for r in last.itertuples())
    retrains = f" and {a['retrains']} retrains" if a["retrains"] else ""
    return (f"  adaptive ({target}): {a['stopped']} after {a['rounds']} rounds, {a['budget']} coalitions{retrains}; "
            f"{measured}; rounds: {folder / 'rounds.csv'}")


def print_lds(t: pd.DataFrame, stream) -> None:
    """lds.csv's scores with the interval over seeds, or over the subsets for one seed."""
    seeds = int(t["n_seeds"].max())
    low, high = ("ci_low", "ci_high") if seeds > 1 else ("subset_ci_low", "subset_ci_high")
    over = f"{seeds} seeds" if seeds > 1 else "the subsets (one seed)"
    print(f"\nLDS x 100 on {int(t['n_subsets'].max())} retrained subsets, 95% interval over {over}:", file=stream)
    t = t.rename(columns={low: "low", high: "high"})
    print(t[["method", "property", "alpha", "lds", "low", "high"]].to_string(
        index=False, float_format=lambda v: f"{v:.1f}"), file=stream)
    if "vs_best" not in t:
        return
    for (prop, alpha), g in t.groupby(["property", "alpha"], sort=False):
        others = g[g["method"] != g["best"].iloc[0]]
        tied = others[~(others["vs_best_ci_high"] < 0)]["method"].tolist()
        print(f"{prop}, alpha {alpha:g}: best {g['best'].iloc[0]}; paired over the same subsets, "
              + (f"not told apart from it: {', '.join(tied)}" if tied else "every other method is below it"),
              file=stream)
