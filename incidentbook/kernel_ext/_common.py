"""What every magic shares: access to the session and one-line errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics
from traitlets import Bool

from incidentbook.errors import IncidentbookError

F = TypeVar("F", bound=Callable[..., Any])


def one_line_errors(fn: F) -> F:
    """Turn expected errors into a UsageError, which IPython shows as one line (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        line = str(args[1]) if len(args) > 1 else ""
        if line.strip() in ("-h", "--help"):
            import inspect

            print(inspect.cleandoc(wrapper.__doc__ or ""))
            return None
        try:
            return fn(*args, **kwargs)
        except IncidentbookError as e:
            raise UsageError(f"{type(e).__name__}: {e}") from None

    return wrapper  # type: ignore[return-value]


class BaseMagics(Magics):
    """A Magics class bound to the extension's session."""

    widgets = Bool(True, help="Show the hypotheses board as ipywidgets (with an HTML fallback).").tag(config=True)

    def __init__(self, shell: Any, session: Any, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        self.session = session
