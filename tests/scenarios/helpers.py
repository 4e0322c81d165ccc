"""Helpers for reading generated bundles in tests."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from incidentbook.scenarios import list_scenarios


def series_frame(bundle_metrics: pd.DataFrame, metric: str, **match: str) -> pd.DataFrame:
    """Rows of `metric` whose labels contain `match`, with the labels parsed."""
    df = bundle_metrics[bundle_metrics["metric"] == metric].copy()
    labels = df["labels"].map(json.loads)
    keep = labels.map(lambda lab: all(lab.get(k) == v for k, v in match.items()))
    df = df[keep.to_numpy()]
    df["lab"] = labels[keep.to_numpy()]
    return df


def service_rate(metrics: pd.DataFrame, metric: str, start, end, **match: str) -> float:
    """Average per-second increase of a counter summed over matching series in [start, end]."""
    df = series_frame(metrics, metric, **match)
    df = df[(df["timestamp"] >= pd.Timestamp(start)) & (df["timestamp"] <= pd.Timestamp(end))]
    total = 0.0
    for _, g in df.groupby("labels", observed=True):
        v = g.sort_values("timestamp")["value"].to_numpy()
        d = np.diff(v)
        total += float(np.where(d < 0, v[1:], d).sum())
    secs = (pd.Timestamp(end) - pd.Timestamp(start)).total_seconds()
    return total / secs


ALL_NAMES = [s.name for s in list_scenarios()]
