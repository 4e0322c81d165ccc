"""JupyterLab's pre-save hook: notebooks and text files are saved with their secrets taken out.

`incidentbook serve` and `incidentbook demo` start JupyterLab with
`--ContentsManager.pre_save_hook=incidentbook.presave.redact_before_save`; a JupyterLab started
another way gets the same with that option or, in `jupyter_server_config.py`::

    c.ContentsManager.pre_save_hook = "incidentbook.presave.redact_before_save"

Only secrets are redacted (keys, tokens, passwords, the values of the variables
`incidentbook.toml` names): emails and IPs stay readable for the on-call engineer. The
pseudonyms are not kept anywhere, so a secret printed by a cell cannot be recovered from disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from incidentbook.redact import Redactor, process_redactor, redact_notebook


def _redactor(contents_manager: Any) -> Redactor:
    """The process redactor, also knowing the secrets named by the workspace's config."""
    from incidentbook.config import load_config
    from incidentbook.errors import IncidentbookError

    root = getattr(contents_manager, "root_dir", None)
    try:
        load_config(start=None if root is None else Path(root))  # notes its *_env names
    except IncidentbookError:
        pass  # a broken config must not stop a save; the environment's secrets still apply
    return process_redactor()


def redact_before_save(model: dict[str, Any], path: str = "", contents_manager: Any = None, **_: Any) -> None:
    """Redact a contents model in place before JupyterLab writes it (notebooks and text files)."""
    content = model.get("content")
    if content is None:
        return
    redactor = _redactor(contents_manager)
    if model.get("type") == "notebook" and isinstance(content, dict):
        model["content"] = redact_notebook(content, redactor, path)
    elif model.get("type") == "file" and model.get("format") == "text" and isinstance(content, str):
        model["content"] = redactor.redact(content, path)


#: The command-line option that installs the hook.
LAB_OPTION = "--ContentsManager.pre_save_hook=incidentbook.presave.redact_before_save"
