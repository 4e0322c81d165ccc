"""A workspace with one investigated incident from the bad-deploy scenario, secrets planted in it."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

#: Values that must never reach the library (fake, but shaped like the real thing).
PLANTED = {
    "aws": "AKIAZ7QPLANTED0SECRT",
    "password": "Tr0ub4dor-planted-pw",
    "bearer": "eyJplantedBearerToken.abcDEF123456",
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    """(cfg, store, incident id): ingested with its runbook run; not closed yet."""
    from incidentbook.config import load_config
    from incidentbook.incidents import Store
    from incidentbook.intake.ingest import ingest_alertmanager
    from incidentbook.scenarios import generate
    from incidentbook.workspace import init_workspace

    home = tmp_path_factory.mktemp("pm-home")
    init_workspace(home)
    g = generate("bad-deploy", home / "scenario", seed=3, duration="1h")
    with (g.bundle_dir / "logs.jsonl").open("a", encoding="utf-8") as f:
        for line in (f"level=error msg=\"upstream auth failed\" key={PLANTED['aws']} user=ops@shop.example",
                     f"level=error msg=\"db connect failed\" dsn=postgres://app:{PLANTED['password']}@10.2.3.4/shop",
                     f"level=error msg=\"rejected\" header=\"Authorization: Bearer {PLANTED['bearer']}\""):
            f.write(json.dumps({"timestamp": "2030-01-01T00:00:00.000Z", "labels": {"service": "catalog"},
                                "line": line}) + "\n")
    firing = [p for p in g.payloads if json.loads(p.read_text())["status"] == "firing"]
    cfg = load_config(path=home / "incidentbook.toml")
    results = ingest_alertmanager(cfg, firing[0].read_bytes(), bundle=g.bundle_dir)
    assert not results[0].error, results[0].error
    iid = results[0].id
    nb_path = Path(results[0].notebook)
    nb = nbformat.read(nb_path, as_version=4)
    cell = nbformat.v4.new_code_cell(f"aws_key = '{PLANTED['aws']}'\npassword='{PLANTED['password']}'")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                           text=f"Authorization: Bearer {PLANTED['bearer']}\n")]
    nb.cells.append(cell)
    nbformat.write(nb, nb_path)
    store = Store.from_config(cfg)
    yield cfg, store, iid
    store.close()
