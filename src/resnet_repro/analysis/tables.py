"""Table 6 (CIFAR-10), its rows on CIFAR-100, seed statistics, the peer repositories' numbers, ImageNet Tables 2, 3,
4 and the runs. Each is built first as a DataFrame of plain values (its CSV, and what the tests check), then turned
into a frame of cells that common.markdown renders. Every table holds the runs of one protocol (runs.group_runs);
pooling two is refused.

The headline is the paper's protocol: the final test error (the net at the last iteration), with no selection on
the test set. Beside it, one clearly labelled column gives the lowest test error seen during training, which is
what most public CIFAR repositories report (it selects on the test set). "ours − paper" is filled only where data
set and protocol match the paper's (protocol.matches_paper); elsewhere the cell points to the protocol, stated once
in the report, and the CSV's not_comparable column gives the reasons.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from resnet_repro.paper import load_table

from .common import markdown, net_order, pretty
from .protocol import dataset_name
from .provenance import hardware
from .runs import Run, by_model, incomplete_note, single_protocol

TEST_SELECTED = "best test error during training (selected on the test set, as those repos do)"
NOT_COMPARABLE = "not comparable: see protocol"  # a cell off the paper's protocol; the reasons are in the CSV


def final_err(run: Run) -> float | None:
    """The test error of the net at the last iteration (the paper's protocol)."""
    if run.summary.get("final_test_err") is not None:
        return float(run.summary["final_test_err"])
    if "test_err" in run.metrics and run.metrics["test_err"].notna().any():
        return float(run.metrics.dropna(subset=["test_err"])["test_err"].iloc[-1])
    return None


def best_test_err_during_training(run: Run) -> float | None:
    """The lowest test error over the run's evaluations (metrics.jsonl): a choice made on the test set."""
    if "test_err" in run.metrics and run.metrics["test_err"].notna().any():
        return float(run.metrics["test_err"].min())
    best = run.summary.get("best_test_err")
    return None if best is None else float(best)


def seed_stats(values: list[float]) -> dict[str, float]:
    """n, mean, sample std (ddof=1; NaN for fewer than 2), best (the minimum)."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if not len(v):
        return {"n": 0, "mean": np.nan, "std": np.nan, "best": np.nan}
    return {"n": len(v), "mean": v.mean(), "std": v.std(ddof=1) if len(v) > 1 else np.nan, "best": v.min()}


def _pct(values) -> list[float]:
    return [100 * v for v in values if v is not None]


def _ours(done: list[Run]) -> dict:
    """Our columns of a Table 6 row from the complete runs of one net: the final test error over seeds (the
    headline) and the lowest test error during training (selected on the test set)."""
    done = sorted(done, key=lambda r: r.seed)
    final = seed_stats(_pct(final_err(r) for r in done))
    selected = seed_stats(_pct(best_test_err_during_training(r) for r in done))
    return {
        "n": final["n"],
        "ours_mean_pct": final["mean"],
        "ours_std_pct": final["std"],
        "ours_best_pct": final["best"],
        "ours_seeds_pct": " / ".join(f"{100 * final_err(r):.2f}" for r in done),
        "test_selected_mean_pct": selected["mean"],
        "test_selected_std_pct": selected["std"],
        "test_selected_n": selected["n"],
    }


def _params_m(runs: list[Run]) -> float:
    params = [r.summary["params"] for r in runs if r.summary.get("params")]
    return params[0] / 1e6 if params else np.nan


def paper_table6() -> pd.DataFrame:
    """The paper's Table 6 in our columns, the numbers of its notes included (mean, std, best of N runs)."""
    names = {"depth": "layers", "params_M": "params_M_paper", "test_error_pct": "paper_err_pct"}
    paper = load_table("cifar10_table6").rename(columns=names)
    note = paper.pop("note").fillna("")
    paper["paper_mean_pct"] = note.str.extract(r"mean ([\d.]+)")[0].astype(float)
    paper["paper_std_pct"] = note.str.extract(r"std ([\d.]+)")[0].astype(float)
    paper["paper_best_of"] = note.str.extract(r"best of (\d+)")[0].astype(float)
    return paper


def paper_resnets() -> pd.DataFrame:
    """The ResNet rows of paper_table6, indexed by depth."""
    paper = paper_table6().query("method == 'ResNet'")
    return paper.set_index(paper.layers.astype(int))


def _resnet_rows(runs: list[Run]) -> tuple[pd.DataFrame, dict]:
    """Table 6's ResNet depths, then depths only we ran (no paper numbers), and our CIFAR ResNet runs by net."""
    paper = paper_resnets()
    groups = by_model([r for r in runs if r.family == "cifar" and re.fullmatch(r"resnet\d+", r.net)])  # option A
    depths = list(paper.index) + sorted({int(m[6:]) for m in groups} - set(paper.index))
    return paper.reindex(depths), groups


def table6(runs: list[Run]) -> pd.DataFrame:
    """One row per ResNet depth of the paper (plus depths only we ran), then the paper's comparison rows."""
    protocol = single_protocol(runs)
    comparable = bool(protocol and protocol.matches_paper)
    paper, groups = _resnet_rows(runs)
    rows = []
    for d, p in paper.iterrows():
        done, other = groups.get(f"resnet{d}", ([], []))
        ours = _ours(done)
        # like with like: our mean against the paper's mean where it gives one, else against its single number
        p_ref = p.paper_err_pct if math.isnan(p.paper_mean_pct) else p.paper_mean_pct
        rows.append(
            {
                "method": "ResNet",
                "layers": d,
                "params_M_paper": p.params_M_paper,
                "params_M_ours": _params_m(done + other),
                "paper_err_pct": p.paper_err_pct,
                "paper_mean_pct": p.paper_mean_pct,
                "paper_std_pct": p.paper_std_pct,
                "paper_best_of": p.paper_best_of,
                **ours,
                "diff_mean_pct": ours["ours_mean_pct"] - p_ref if comparable else np.nan,
                "diff_best_pct": ours["ours_best_pct"] - p.paper_err_pct
                if comparable and not math.isnan(p.paper_best_of)
                else np.nan,
                "comparable": comparable,
                "not_comparable": protocol.not_comparable if protocol else "no runs",
                "not_complete": "; ".join(r.label for r in other),
            }
        )
    others = paper_table6().query("method != 'ResNet'")  # Maxout, NIN, ...: the paper's numbers only
    others = others.assign(n=0, comparable=comparable, not_comparable="", not_complete="")
    df = pd.concat([pd.DataFrame(rows), others], ignore_index=True)
    df["layers"] = df["layers"].astype("Int64")
    df["dataset"] = protocol.dataset if protocol else ""
    df["protocol"] = protocol.title if protocol else ""
    return df


def _f(x, digits=2, sign=False) -> str:
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _mean_std_n(mean, std, n) -> str:
    if not n or (isinstance(n, float) and math.isnan(n)):
        return "—"
    n = int(n)
    return _f(mean) + (f" ± {_f(std)}" if n > 1 else "") + f" (N={n})"


def _diff_cell(r) -> str:
    if r.method != "ResNet" or not r.n:
        return "—"
    if not r.comparable:
        return NOT_COMPARABLE
    if not math.isnan(r.paper_best_of):
        return f"mean {_f(r.diff_mean_pct, sign=True)}, best {_f(r.diff_best_pct, sign=True)}"
    return _f(r.diff_mean_pct, sign=True)


def table6_markdown(df: pd.DataFrame, runs: list[Run] | None = None) -> str:
    shown = [
        {
            "method": r.method,
            "layers": "" if r.layers is pd.NA else _f(r.layers, 0),
            "params (M, paper)": _f(r.params_M_paper),
            "params (M, ours)": _f(r.params_M_ours),
            "paper: CIFAR-10 test error (%)": _f(r.paper_err_pct)
            + (f" (mean {_f(r.paper_mean_pct)} ± {_f(r.paper_std_pct)})" if not math.isnan(r.paper_mean_pct) else ""),
            "ours: final test error (%), mean ± std (N)": _mean_std_n(r.ours_mean_pct, r.ours_std_pct, r.n),
            "ours: best of N (%)": f"{_f(r.ours_best_pct)} (best of {r.n})"
            if r.n and not math.isnan(r.paper_best_of)
            else "—",
            "ours − paper": _diff_cell(r),
            f"ours: {TEST_SELECTED} (%)": _mean_std_n(
                r.test_selected_mean_pct, r.test_selected_std_pct, r.test_selected_n
            ),
        }
        for _, r in df.iterrows()
    ]
    text = markdown(pd.DataFrame(shown)) + (
        "\nPaper: CIFAR-10, 64k iterations, the full 50k training images; "
        "ResNet-110 as best of 5 runs with mean ± std. Ours: the final test error after the last iteration, no "
        "selection on the test set (the paper's protocol; the headline), mean ± sample std (ddof=1) over N seeds; "
        "best of N only where the paper reports a best of 5."
    )
    if bool(df.comparable.iloc[0]):
        text += (
            " ours − paper: our mean minus the paper's number (ResNet-110: minus its mean; and our best of N "
            "minus its best of 5)."
        )
    else:
        text += (
            " ours − paper is left empty: these runs are not the paper's protocol, and a difference would "
            "compare two different experiments."
        )
    return text + _caption_end(runs)


# --- CIFAR-100: Table 6's rows without the paper's columns (the paper has no CIFAR-100 numbers) -------------------


def cifar100_table(runs: list[Run]) -> pd.DataFrame:
    """One row per ResNet depth of Table 6 (plus depths only we ran): our final test error over seeds, its best, and
    the test-selected error. No paper column and no difference with the paper: it reports nothing on CIFAR-100."""
    protocol = single_protocol(runs)
    paper, groups = _resnet_rows(runs)
    rows = []
    for d in paper.index:
        done, other = groups.get(f"resnet{d}", ([], []))
        rows.append(
            {
                "method": "ResNet",
                "layers": d,
                "params_M_ours": _params_m(done + other),
                **_ours(done),
                "not_complete": "; ".join(r.label for r in other),
            }
        )
    df = pd.DataFrame(rows)
    df["dataset"] = protocol.dataset if protocol else ""
    df["protocol"] = protocol.title if protocol else ""
    df["follows_paper_protocol"] = bool(protocol and protocol.follows_paper_protocol)
    return df


def cifar100_markdown(df: pd.DataFrame, runs: list[Run] | None = None) -> str:
    shown = [
        {
            "method": r.method,
            "layers": str(r.layers),
            "params (M, ours)": _f(r.params_M_ours, 3),
            "ours: final test error (%), mean ± std (N)": _mean_std_n(r.ours_mean_pct, r.ours_std_pct, r.n),
            "ours: best of N (%)": f"{_f(r.ours_best_pct)} (best of {r.n})" if r.n else "—",
            "ours: each seed (%)": r.ours_seeds_pct or "—",
            f"ours: {TEST_SELECTED} (%)": _mean_std_n(
                r.test_selected_mean_pct, r.test_selected_std_pct, r.test_selected_n
            ),
        }
        for _, r in df.iterrows()
    ]
    text = markdown(pd.DataFrame(shown)) + (
        (
            "\nOur runs follow the paper's CIFAR-10 protocol (all 50k training images, 64k iterations at batch 128, "
            "lr ÷10 at 32k and 48k, the full test set), on CIFAR-100."
            if df.follows_paper_protocol.iloc[0]
            else "\nOur runs do not follow the paper's CIFAR protocol (see protocol)."
        )
        + " The paper reports no CIFAR-100 results: there is no paper column and no difference with the paper. "
        "Other repositories' published CIFAR-100 numbers are in a table of their own, with their protocols. "
        "Ours: the final test error after the last iteration, no selection on the test set, mean ± sample std "
        "(ddof=1) over N seeds."
    )
    return text + _caption_end(runs)


def _caption_end(runs: list[Run] | None) -> str:
    """The end of both CIFAR tables' captions: what the test-selected column is, and which ResNet runs are
    unfinished."""
    text = (
        " The last column is the lowest test error over each run's evaluations, averaged over seeds: it "
        "selects on the test set, as most public CIFAR ResNet repositories report (peers table); it is not "
        "the paper's protocol.\n"
    )
    runs = runs or []
    if note := incomplete_note([r for r in runs if re.fullmatch(r"resnet\d+", r.net)]):
        text += "\n" + note + "\n"
    if other := sorted({r.net for r in runs if r.model.startswith("resnet") and r.net != r.model}, key=net_order):
        text += f"\nNot in this table (its rows are option A): {', '.join(map(pretty, other))}; see Seed statistics.\n"
    return text


# --- seed statistics --------------------------------------------------------------------------------------------


def seeds_table(runs: list[Run]) -> pd.DataFrame:
    """Per net: N complete seeds, the final test error's mean ± std and each seed's value, the test-selected error."""
    single_protocol(runs)
    rows = []
    for model, (done, _other) in sorted(by_model(runs).items(), key=lambda kv: net_order(kv[0])):
        if not done:
            continue
        done = sorted(done, key=lambda r: r.seed)
        final = seed_stats(_pct(final_err(r) for r in done))
        selected = seed_stats(_pct(best_test_err_during_training(r) for r in done))
        rows.append(
            {
                "model": model,
                "n": final["n"],
                "mean_pct": final["mean"],
                "std_pct": final["std"],
                "best_pct": final["best"],
                "seeds": ", ".join(f"{r.seed}: {100 * final_err(r):.2f}" for r in done if final_err(r) is not None),
                "test_selected_mean_pct": selected["mean"],
                "test_selected_n": selected["n"],
            }
        )
    return pd.DataFrame(
        rows,
        columns=["model", "n", "mean_pct", "std_pct", "best_pct", "seeds", "test_selected_mean_pct", "test_selected_n"],
    )


def seeds_markdown(df: pd.DataFrame) -> str:
    shown = [
        {
            "net": pretty(r.model),
            "N": str(r.n),
            "final test error (%), mean ± std": _mean_std_n(r.mean_pct, r.std_pct, r.n),
            "best of N (%)": _f(r.best_pct),
            "each seed (seed: error %)": r.seeds,
            f"{TEST_SELECTED} (%), mean": _f(r.test_selected_mean_pct),
        }
        for _, r in df.iterrows()
    ]
    return (
        markdown(pd.DataFrame(shown)) + "\nComplete runs only. std: sample std over seeds (ddof=1); none for N = 1.\n"
    )


# --- peer repositories ------------------------------------------------------------------------------------------


def peers_table(dataset: str, comparable_runs: list[Run] | None = None) -> pd.DataFrame:
    """The peers' published numbers for `dataset` (paper/peers.csv) with their protocol, and ours chosen the same
    way (the test-selected error beside a test-selected peer number, the final error beside a final one), from runs
    with the paper's protocol only."""
    peers = load_table("peers")
    peers = peers[peers.dataset == dataset].reset_index(drop=True)
    groups = by_model(comparable_runs or [])
    ours = []
    for _, p in peers.iterrows():
        done = groups.get(p.model, ([], []))[0]
        pick = best_test_err_during_training if p.selection == "best on the test set" else final_err
        ours.append(
            seed_stats(_pct(pick(r) for r in done))
            if p.selection in ("best on the test set", "final")
            else seed_stats([])
        )
    peers["ours_mean_pct"] = [o["mean"] for o in ours]
    peers["ours_std_pct"] = [o["std"] for o in ours]
    peers["ours_n"] = [o["n"] for o in ours]
    return peers


def peers_markdown(df: pd.DataFrame, have_comparable: bool) -> str:
    shown = [
        {
            "repository": p.source.replace(" README", ""),
            "net": pretty(p.model),
            "shortcut": p.shortcut,
            "their test error (%)": _f(p.test_error_pct) + (f" ± {_f(p.std_pct)}" if not math.isnan(p.std_pct) else ""),
            "runs": str(p.runs),
            "epochs": _f(p.epochs, 0),
            "how it was chosen": p.selection,
            "their protocol": p.protocol_note,
            "ours, chosen the same way (%)": _mean_std_n(p.ours_mean_pct, p.ours_std_pct, p.ours_n)
            if have_comparable
            else "—",
        }
        for _, p in df.iterrows()
    ]
    text = markdown(pd.DataFrame(shown)) + (
        '\nTheir numbers as published (paper/peers.csv), not rerun here. "best on the test set": the lowest '
        'test error over training, i.e. the test set is used for model selection; "final": the net at the end.'
    )
    if not have_comparable:
        text += (
            f" No run of ours is on {dataset_name(df.dataset.iloc[0]) if len(df) else 'this data set'} with the "
            "paper's protocol, so nothing is put beside them."
        )
    return text + "\n"


# --- ImageNet ----------------------------------------------------------------------------------------------

# The paper's protocol for each table, then the ones we fall back on (said so in the protocol column).
TABLE_PROTOCOLS = {2: ["10crop", "center", "final"], 3: ["10crop", "center", "final"], 4: ["multiscale"]}


def _imagenet_result(run: Run, protocols: list[str]) -> tuple[float, float, str] | None:
    ev = run.summary.get("eval") or {}
    for p in protocols:
        if p == "final" and run.summary.get("final_test_err") is not None:
            top5 = run.metrics["test_top5_err"].dropna() if "test_top5_err" in run.metrics else pd.Series([])
            return run.summary["final_test_err"], (top5.iloc[-1] if len(top5) else np.nan), "center (training eval)"
        if p in ev:
            return ev[p].get("top1_err", np.nan), ev[p].get("top5_err", np.nan), p
    return None


def imagenet_tables(runs: list[Run]) -> dict[int, pd.DataFrame]:
    """Tables 2, 3, 4: every paper row, with ours (mean over complete runs) where a matching run exists; the
    differences only where the runs follow the paper's ImageNet protocol."""
    protocol = single_protocol(runs)
    comparable = bool(protocol and protocol.matches_paper)
    paper = load_table("imagenet_tables")
    ours = [r for r in runs if r.family == "imagenet"]
    out = {}
    for t, protocols in TABLE_PROTOCOLS.items():
        rows = []
        for _, p in paper[paper.table == t].iterrows():
            sc = None if pd.isna(p.shortcut) else p.shortcut
            match = [r for r in ours if r.model == p.model and (sc is None or r.shortcut == sc)]
            res = [x for r in match if r.complete and (x := _imagenet_result(r, protocols))]
            top1 = 100 * np.mean([x[0] for x in res]) if res else np.nan
            top5 = 100 * np.nanmean([x[1] for x in res]) if res and not all(np.isnan(x[1]) for x in res) else np.nan
            rows.append(
                {
                    "model": p.model,
                    "shortcut": sc or "",
                    "paper_top1_pct": p.top1_err_pct,
                    "paper_top5_pct": p.top5_err_pct,
                    "ours_top1_pct": top1,
                    "ours_top5_pct": top5,
                    "diff_top1_pct": top1 - p.top1_err_pct if comparable else np.nan,
                    "diff_top5_pct": top5 - p.top5_err_pct if comparable else np.nan,
                    "n": len(res),
                    "ours_protocol": ", ".join(sorted({x[2] for x in res})),
                    "paper_protocol": p.test_protocol,
                    "comparable": comparable,
                    "not_comparable": protocol.not_comparable if protocol else "no runs",
                    "not_complete": "; ".join(r.label for r in match if not r.complete),
                }
            )
        df = pd.DataFrame(rows)
        df["protocol"] = protocol.title if protocol else ""
        out[t] = df
    return out


def imagenet_markdown(df: pd.DataFrame) -> str:
    def diff(r, col):
        if not r.n:
            return "—"
        return _f(r[col], sign=True) if r.comparable else NOT_COMPARABLE

    shown = [
        {
            "model": r.model + (f" ({r.shortcut})" if r.shortcut else ""),
            "paper top-1": _f(r.paper_top1_pct),
            "paper top-5": _f(r.paper_top5_pct),
            "ours top-1": _f(r.ours_top1_pct),
            "ours top-5": _f(r.ours_top5_pct),
            "ours − paper top-1": diff(r, "diff_top1_pct"),
            "ours − paper top-5": diff(r, "diff_top5_pct"),
            "N": str(r.n),
            "our test protocol": r.ours_protocol or "—",
        }
        for _, r in df.iterrows()
    ]
    text = markdown(pd.DataFrame(shown))
    text += f"\nErrors in % on the ImageNet val set; the paper's test protocol: {df.paper_protocol.iloc[0]}.\n"
    bad = [x for x in df.not_complete if x]
    return text + ("\nNot complete (left out): " + "; ".join(bad) + "\n" if bad else "")


def write_table(df: pd.DataFrame, md: str, out_dir: str | Path, name: str) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"{name}.csv", index=False, float_format="%.4f")
    (out / f"{name}.md").write_text(md)
    return [out / f"{name}.md", out / f"{name}.csv"]


# --- the runs ------------------------------------------------------------------------------------------------


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: what it trained, how far it got, its final test error, and where and how it ran."""
    return pd.DataFrame(
        [
            {
                "experiment": r.experiment,
                "dataset": r.dataset,
                "net": r.net,
                "seed": r.seed,
                "status": r.status,
                "iters": r.summary.get("iters"),
                "max_iters": r.summary.get("max_iters"),
                "final_test_err_pct": 100 * final_err(r) if final_err(r) is not None else np.nan,
                "hardware": hardware(r.summary),
                "precision": r.summary.get("precision"),
                "git_commit": r.summary.get("git_commit"),
                "git_dirty": bool(r.summary.get("git_dirty")),
                "wall_s": r.summary.get("wall_s"),
                "command": r.summary.get("command"),
            }
            for r in runs
        ]
    )


def _count(n) -> str:
    return "?" if n is None or pd.isna(n) else str(int(n))


def wall_time(s) -> str:
    if s is None or pd.isna(s):
        return "—"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def runs_markdown(df: pd.DataFrame) -> str:
    shown = [
        {
            "experiment": r.experiment,
            "data set": dataset_name(r.dataset),
            "net": pretty(r.net),
            "seed": str(r.seed),
            "status": r.status,
            "iters": f"{_count(r.iters)}/{_count(r.max_iters)}",
            "final test err (%)": _f(r.final_test_err_pct),
            "hardware": r.hardware,
            "precision": r.precision or "?",
            "commit": (r.git_commit or "?")[:7] + ("+" if r.git_dirty else ""),
            "wall time": wall_time(r.wall_s),
            "command": f"`{r.command or '?'}`",
        }
        for _, r in df.iterrows()
    ]
    return markdown(pd.DataFrame(shown)) + (
        f"\nTotal wall time of the runs: {wall_time(df.wall_s.sum())}. Status: read from the run directory's lock "
        'where the records say "running" ("stopped (no process)": no process holds it). Commit: + marks uncommitted '
        "changes.\n"
    )
