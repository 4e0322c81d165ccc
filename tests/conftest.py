"""Suite-wide set-up: the suite does not depend on the caller's shell.

A developer's shell may export `INCIDENTBOOK_HOME`, `INCIDENTBOOK_ENVIRONMENT`, tokens or a
config path; tests that want one set it themselves. Removing them here, before any test module
is imported, keeps a test from writing into the developer's real workspace or reading its config.
"""

from __future__ import annotations

import os

for _name in [n for n in os.environ if n.startswith("INCIDENTBOOK_")]:
    del os.environ[_name]
