"""Jobs of the estimate stages: a design's coalitions, and the values estimated from
their scores (intervals, diagnostics, plots)."""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..artifacts import (
    FOLDER_SIDECAR,
    atomic_dir,
    read_json,
    verify_dir,
    verify_file,
    write_json,
    write_parquet,
)
from ..values import credit_table, read_scores, read_values, values_table, write_values

log = logging.getLogger(__name__)


def coalition_sample(job: dict, progress: bool = True) -> None:
    from ..coalitions import sample_design

    spec = job["spec"]
    masks = sample_design(len(spec["players"]), spec["budget"], spec["scheme"], spec["seed"])
    df = pd.DataFrame(masks, columns=spec["players"])
    df.insert(0, "row", np.arange(len(df)))
    write_parquet(df, job["out"])


def shapley_estimate(job: dict, progress: bool = True) -> None:
    estimate_values(job["spec"], job["inputs"], job["out"])


def _image_noise(prop: str, rows: list, empty: dict, full: dict):
    """The property's resampled-image replicates of every row and both anchors, or
    None where a score has none (the property does not resample, or it is off)."""
    reps = [r[prop].get("replicates") for r in rows] + [empty[prop].get("replicates"), full[prop].get("replicates")]
    if any(r is None for r in reps) or len({len(r) for r in reps}) != 1:
        return None
    return np.asarray(reps[:-2], dtype=float), np.asarray(reps[-2], dtype=float), np.asarray(reps[-1], dtype=float)


def estimate_values(spec: dict, inputs: dict, out: str) -> pd.DataFrame:
    """Estimate every property's values from a design and its scores; write `out`/.

    `inputs`: the design table and the score files of the empty and full anchors and
    of every design row, in design order.
    """
    from ..diagnostics import (
        convergence,
        efficiency_gap,
        plot_convergence,
        rank_stability,
    )
    from ..estimators import estimate, get_method
    from ..estimators.correction import corrected_estimate, correction_convergence
    from ..estimators.training_noise import pooled_variance
    from ..evaluation.fidelity import model_seconds

    design = pd.read_parquet(verify_file(inputs["design"]))
    players = [c for c in design.columns if c != "row"]
    masks = design[players].to_numpy(dtype=bool)
    rows = [read_scores(p) for p in inputs["rows"]]
    empty, full = read_scores(inputs["empty"]), read_scores(inputs["full"])
    retrains = spec.get("retrains", 0)
    if retrains:
        retrained = [read_scores(p) for p in inputs["retrained"]]
        r_empty, r_full = read_scores(inputs["retrained_empty"]), read_scores(inputs["retrained_full"])
    again = [read_scores(p) for p in inputs.get("again", [])]  # the first rows trained with another seed
    options = {"seed": spec["seed"], "n_boot": spec["n_boot"], "shrink": spec["shrink"]}
    tables, diagnostics, conv_tables, pair_tables = [], {}, [], []
    for prop in spec["properties"]:
        values = np.array([r[prop]["value"] for r in rows], dtype=float)
        v_empty, v_full = float(empty[prop]["value"]), float(full[prop]["value"])
        higher = bool(full[prop]["higher_is_better"])
        noise = _image_noise(prop, rows, empty, full)
        diagnostics[prop] = {"v_empty": v_empty, "v_full": v_full, "higher_is_better": higher}
        if retrains:
            cheap = (masks, values, v_empty, v_full, spec["method"])
            r_values = np.array([r[prop]["value"] for r in retrained], dtype=float)
            v_empty, v_full = float(r_empty[prop]["value"]), float(r_full[prop]["value"])  # the retrained game's
            (df, fit), warned = _warned(corrected_estimate, *cheap, np.arange(retrains), r_values, v_empty,
                                        v_full, noise=noise, **options)
            conv = correction_convergence(*cheap, r_values, v_empty, v_full, noise=noise, **options)
            diagnostics[prop]["correction"] = fit
        else:
            training = None
            if again:
                training = pooled_variance(values[:len(again)], [r[prop]["value"] for r in again])
                diagnostics[prop]["training_noise"] = {"rows": len(again), "sd": float(np.sqrt(training[0])),
                                                       "df": training[1]}
            df, warned = _warned(estimate, masks, values, v_empty, v_full, spec["method"], noise=noise,
                                 training=training, **options)
            conv = convergence(masks, values, v_empty, v_full, spec["method"], seed=spec["seed"],
                               n_boot=spec["n_boot"], shrink=spec["shrink"])
        if not retrains:  # a corrected estimate's rows are the cheap game's: its interactions are the plain one's
            found, diagnostics[prop]["interactions"] = _interactions(masks, values, v_empty, v_full, spec, players)
            if found is not None:
                pair_tables.append(found.assign(property=prop))
        df.insert(0, "contributor", [players[i] for i in df.index])
        tables.append(credit_table(df, prop, higher))
        conv.insert(0, "property", prop)
        conv_tables.append(conv)
        diagnostics[prop].update({
            "warnings": warned,
            "efficiency_gap": efficiency_gap(df, v_empty, v_full) if get_method(spec["method"]).efficient else None,
            "rank_stability": _jsonable(rank_stability(conv.drop(columns="property"), k=min(3, len(players)))),
        })
    # The design's own size: a loo or exact design has its fixed rows whatever the budget.
    table = values_table(tables, spec["strategy"], spec["shrink"], spec["method"], spec["scheme"], len(masks),
                         retrains)
    # The compute the estimate's coalitions took (their training records; anchors and the
    # one-off pruning excluded): CPU seconds on a CPU, wall seconds on a GPU. In the
    # diagnostics, not the values: those are the same on every rerun, timings are not.
    trained = inputs.get("models", []) + inputs.get("again_models", [])
    compute = {"coalition_seconds": float(sum(map(model_seconds, trained))),
               "retrain_seconds": float(sum(map(model_seconds, inputs.get("retrained_models", []))))}
    conv_all = pd.concat(conv_tables, ignore_index=True)
    shrunk = ", shrunk" if spec["shrink"] else ""
    corrected = f", {retrains} of them retrained" if retrains else ""
    corrected += f", {len(again)} trained twice" if again else ""
    label = f"{spec['method']} ({spec['scheme']}, {len(masks)} {spec['strategy']} coalitions{corrected}{shrunk})"
    with atomic_dir(out) as tmp:
        write_values(tmp, table, {prop: f"{prop}: {label}" for prop in spec["properties"]})
        conv_all.to_parquet(tmp / "convergence.parquet", index=False)
        if pair_tables:
            pairs = pd.concat(pair_tables, ignore_index=True)
            pairs.insert(0, "property", pairs.pop("property"))
            pairs.to_csv(tmp / "interactions.csv", index=False)
        pd.Series({**diagnostics, "compute": compute}, dtype=object).to_json(tmp / "diagnostics.json", indent=2)
        for prop in spec["properties"]:
            plot_convergence(
                conv_all[conv_all["property"] == prop].drop(columns="property"),
                tmp / f"convergence_{prop}.png",
                names=players,
                title=f"{prop}: {label}" + (" (x: retrained coalitions)" if retrains else ""),
            )
    return table


def _warned(fn, *args, **kwargs):
    """fn's result and the messages of the BootstrapWarnings it raised, which are also
    logged: the diagnostics keep them, and the printout shows them."""
    from ..estimators import BootstrapWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BootstrapWarning)
        out = fn(*args, **kwargs)
    messages = []
    for w in caught:
        if issubclass(w.category, BootstrapWarning):
            messages.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    messages = list(dict.fromkeys(messages))
    for m in messages:
        log.warning("%s", m)
    return out, messages


def _interactions(masks, values, v_empty, v_full, spec, players):
    """The pair interactions of the design's game (Faith-Banzhaf for a Banzhaf design,
    the trees' own for method tree, Faith-Shapley otherwise), or None and why not."""
    from ..estimators import IdentificationError
    from ..estimators.interactions import interactions

    index = {"banzhaf": "fbii", "tree": "tree"}.get(spec["method"], "fsii")
    try:
        return interactions(masks, values, v_empty, v_full, players, index, n_boot=spec["n_boot"],
                            seed=spec["seed"]), index
    except IdentificationError as exc:
        return None, f"not estimated: {exc}"


def estimate_round(job: dict, progress: bool = True) -> None:
    """A round of an adaptive budget: does its estimate meet the target? With the
    round's coalitions, retrains and their training compute."""
    from ..estimators.adaptive import round_record

    table = read_values(job["inputs"]["values"])
    compute = read_json(Path(job["inputs"]["values"]) / "diagnostics.json").get("compute", {})
    record = round_record(table, job["spec"]["target"], tuple(job["spec"].get("canaries", ())))
    log.info("round of %d coalitions: target %s", table["budget"].iloc[0], "met" if record["met"] else "not met")
    write_json(job["out"], {"budget": int(table["budget"].iloc[0]), "retrains": int(table["retrains"].iloc[0]),
                            "compute": compute, **record}, seal=True)


def adaptive_estimate(job: dict, progress: bool = True) -> None:
    """The last round's values, with rounds.csv (what each round measured) and, in the
    diagnostics, why the rounds stopped: the target met, or max_budget reached."""
    spec = job["spec"]
    rounds = [read_json(verify_file(p)) for p in job["inputs"]["rounds"]]
    source = verify_dir(job["inputs"]["values"])
    met = rounds[-1]["met"]
    stopped = "target met" if met else "max_budget reached, target not met"
    rows = [{"round": i, "budget": r["budget"], "retrains": r["retrains"], "property": prop,
             **{k: v for k, v in rec.items() if k != "order"},
             "coalition_seconds": r["compute"].get("coalition_seconds"),
             "retrain_seconds": r["compute"].get("retrain_seconds")}
            for i, r in enumerate(rounds) for prop, rec in r["properties"].items()]
    log.info("%s after %d rounds (%d coalitions)", stopped, len(rounds), rounds[-1]["budget"])
    with atomic_dir(job["out"]) as tmp:
        for f in source.iterdir():
            if f.is_file() and f.name not in (FOLDER_SIDECAR, ".snakemake_timestamp"):
                shutil.copy2(f, tmp / f.name)
        pd.DataFrame(rows).to_csv(tmp / "rounds.csv", index=False)
        diagnostics = read_json(tmp / "diagnostics.json")
        diagnostics["adaptive"] = {"target": spec["target"], "max_budget": spec["max_budget"], "met": met,
                                   "stopped": stopped, "rounds": len(rounds), "budget": rounds[-1]["budget"],
                                   "retrains": rounds[-1]["retrains"]}
        write_json(tmp / "diagnostics.json", diagnostics)


def _jsonable(obj):
    if isinstance(obj, pd.DataFrame):
        return obj.to_dict(orient="records")
    return obj
