"""`bundle import --format wide-csv`: a public-dataset CSV becomes a bundle that is an eval case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from incidentbook.errors import BadInput
from incidentbook.evals.datasets import import_wide_csv
from incidentbook.telemetry.bundle import open_bundle
from incidentbook.telemetry.sources import Telemetry

T0 = 1_700_000_000


def wide_csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 240
    cpu = 0.3 + rng.normal(0, 0.01, n)
    cpu[180:] += 0.5  # the injected fault: cart CPU jumps at T0 + 180 s
    pd.DataFrame({"time": T0 + np.arange(n), "cart_cpu": cpu, "cart_latency-90": 20 + rng.normal(0, 1, n),
                  "frontend_cpu": 0.2 + rng.normal(0, 0.01, n)}).to_csv(path, index=False)
    return path


def test_import_turns_columns_into_series_with_ground_truth(tmp_path: Path) -> None:
    out = import_wide_csv(wide_csv(tmp_path / "ob.csv"), tmp_path / "b", str(T0 + 180), "cart:cpu_throttling")
    b = open_bundle(out)
    assert b.services == ["cart", "frontend"]
    gt = b.manifest["ground_truth"]
    assert (gt["root_cause_service"], gt["fault_kind"], gt["onset"]) == ("cart", "cpu_throttling",
                                                                         "2023-11-14T22:16:20.000Z")
    assert sorted(b.metrics["metric"].unique()) == ["cpu", "latency_90"]
    # the replay engine answers PromQL over the imported series
    df = Telemetry.from_bundle(out).query_range('cpu{service="cart"}', T0, T0 + 239, step=60)
    assert df["value"].max() > 0.7 and df["value"].min() < 0.4


def test_bad_input_is_explained(tmp_path: Path) -> None:
    csv = wide_csv(tmp_path / "ob.csv")
    with pytest.raises(BadInput, match="'payments' is not a service"):
        import_wide_csv(csv, tmp_path / "x", str(T0 + 10), "payments")
    with pytest.raises(BadInput, match="outside the data"):
        import_wide_csv(csv, tmp_path / "y", str(T0 + 99999), "cart")
    (tmp_path / "bad.csv").write_text("time,cpu\n1,2\n")
    with pytest.raises(BadInput, match="not <service>_<metric>"):
        import_wide_csv(tmp_path / "bad.csv", tmp_path / "z", "1", "cart")


def test_cli_import_then_eval(tmp_path: Path) -> None:
    env = {**os.environ, "INCIDENTBOOK_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "incidentbook.cli"]
    proc = subprocess.run([*cmd, "bundle", "import", "--format", "wide-csv", str(wide_csv(tmp_path / "ob.csv")),
                           "--inject-time", "2023-11-14T22:16:20Z", "--root-cause", "cart:cpu_throttling", "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    bundle = json.loads(proc.stdout)["bundle"]
    proc = subprocess.run([*cmd, "eval", bundle, "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    case = json.loads(proc.stdout)["cases"][0]
    assert case["kind"] == "dataset" and case["expected"] == "cart:cpu_throttling"
