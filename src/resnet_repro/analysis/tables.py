"""Table 6 (CIFAR-10) and ImageNet Tables 2, 3, 4: the paper's numbers beside ours, as DataFrames, Markdown and CSV.

Ours are final test errors (the net at the last iteration), never the best over evaluations: picking the best
test-set evaluation would select the model on the test set.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from resnet_repro.paper import load_table

from .runs import Run, by_model, incomplete_note


def _paper_mean_std(note) -> tuple[float, float]:
    m = re.search(r"mean ([\d.]+) std ([\d.]+)", str(note))
    return (float(m[1]), float(m[2])) if m else (np.nan, np.nan)


def _stats(values: list[float]) -> tuple[float, float, float]:
    """best, mean, sample std (ddof=1; NaN for one run)."""
    if not values:
        return np.nan, np.nan, np.nan
    v = np.asarray(values, dtype=float)
    return v.min(), v.mean(), v.std(ddof=1) if len(v) > 1 else np.nan


def table6(runs: list[Run]) -> pd.DataFrame:
    """One row per ResNet depth of the paper (plus depths only we ran) and the paper's comparison rows."""
    paper = load_table("cifar10_table6")
    groups = by_model([r for r in runs if r.family == "cifar" and r.model.startswith("resnet")])
    depths = list(paper[paper.method == "ResNet"].depth.astype(int))
    depths += sorted({int(m[6:]) for m in groups} - set(depths))
    rows = []
    for d in depths:
        p = paper[(paper.method == "ResNet") & (paper.depth == d)]
        p_err = float(p.test_error_pct.iloc[0]) if len(p) else np.nan
        p_mean, p_std = _paper_mean_std(p.note.iloc[0]) if len(p) else (np.nan, np.nan)
        done, other = groups.get(f"resnet{d}", ([], []))
        best, mean, std = _stats([100 * r.summary["final_test_err"] for r in done])
        params = [r.summary["params"] for r in done + other if r.summary.get("params")]
        rows.append({
            "method": "ResNet", "layers": d,
            "params_M_paper": float(p.params_M.iloc[0]) if len(p) else np.nan,
            "params_M_ours": params[0] / 1e6 if params else np.nan,
            "paper_err_pct": p_err, "paper_mean_pct": p_mean, "paper_std_pct": p_std,
            "ours_best_pct": best, "ours_mean_pct": mean, "ours_std_pct": std, "n": len(done),
            "diff_best_pct": best - p_err,
            "not_complete": "; ".join(r.label for r in other),
        })
    for _, p in paper[paper.method != "ResNet"].iterrows():
        p_mean, p_std = _paper_mean_std(p.note)
        rows.append({"method": p.method, "layers": p.depth, "params_M_paper": p.params_M,
                     "paper_err_pct": p.test_error_pct, "paper_mean_pct": p_mean, "paper_std_pct": p_std,
                     "n": 0, "not_complete": ""})
    df = pd.DataFrame(rows)
    df["layers"] = df["layers"].astype("Int64")
    return df


def _f(x, digits=2, sign=False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return "—"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def table6_markdown(df: pd.DataFrame, runs: list[Run] | None = None) -> str:
    rows = []
    for _, r in df.iterrows():
        paper = _f(r.paper_err_pct) + (f" ({_f(r.paper_mean_pct)}±{_f(r.paper_std_pct)})"
                                       if not math.isnan(r.paper_mean_pct) else "")
        if r.n:
            ours_mean = _f(r.ours_mean_pct) + (f" ± {_f(r.ours_std_pct)}" if r.n > 1 else "")
            ours = [_f(r.ours_best_pct), f"{ours_mean} (N={r.n})", _f(r.diff_best_pct, sign=True)]
        else:
            ours = ["—", "—", "—"]
        rows.append([r.method, _f(r.layers, 0) if r.layers is not pd.NA else "", _f(r.params_M_paper),
                     _f(r.get("params_M_ours", np.nan)), paper, *ours])
    text = markdown(["method", "layers", "params (M, paper)", "params (M, ours)", "paper error (%)",
                     "ours best (%)", "ours mean ± std (%)", "ours best − paper"], rows)
    text += ("\nPaper: best of 5 runs for ResNet-110 with (mean±std) in brackets; other ResNets one number. "
             "Ours: final test error after the last iteration; std is the sample std over seeds (ddof=1).\n")
    if runs is not None and (note := incomplete_note([r for r in runs if r.model.startswith("resnet")])):
        text += "\n" + note + "\n"
    return text


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
    """Tables 2, 3, 4: every paper row, with ours (mean over complete runs) where a matching run exists."""
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
            rows.append({"model": p.model, "shortcut": sc or "", "paper_top1_pct": p.top1_err_pct,
                         "paper_top5_pct": p.top5_err_pct, "ours_top1_pct": top1, "ours_top5_pct": top5,
                         "diff_top1_pct": top1 - p.top1_err_pct, "diff_top5_pct": top5 - p.top5_err_pct,
                         "n": len(res), "ours_protocol": ", ".join(sorted({x[2] for x in res})),
                         "paper_protocol": p.test_protocol,
                         "not_complete": "; ".join(r.label for r in match if not r.complete)})
        out[t] = pd.DataFrame(rows)
    return out


def imagenet_markdown(df: pd.DataFrame) -> str:
    rows = [[r.model + (f" ({r.shortcut})" if r.shortcut else ""), _f(r.paper_top1_pct), _f(r.paper_top5_pct),
             _f(r.ours_top1_pct), _f(r.ours_top5_pct), _f(r.diff_top1_pct, sign=True), _f(r.diff_top5_pct, sign=True),
             str(r.n), r.ours_protocol or "—"] for _, r in df.iterrows()]
    text = markdown(["model", "paper top-1", "paper top-5", "ours top-1", "ours top-5", "Δ top-1", "Δ top-5", "N",
                     "our protocol"], rows)
    text += f"\nErrors in % on the ImageNet val set; paper protocol: {df.paper_protocol.iloc[0]}.\n"
    bad = [x for x in df.not_complete if x]
    return text + ("\nNot complete (left out): " + "; ".join(bad) + "\n" if bad else "")


def write_table(df: pd.DataFrame, md: str, out_dir: str | Path, name: str) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"{name}.csv", index=False, float_format="%.4f")
    (out / f"{name}.md").write_text(md)
    return [out / f"{name}.md", out / f"{name}.csv"]
