"""Warm kernels: runbooks run in pre-started kernels instead of a fresh papermill kernel each time.

A cold run pays for a kernel start and for importing pandas, plotly and incidentbook inside it
(seconds) before the runbook's first cell. A `KernelPool` keeps `size` kernels started, with
those modules already imported, in the headless mode (`INCIDENTBOOK_HEADLESS=1`: proposals are
recorded, writes refused). Each run takes one kernel, moves it to the incident directory and
hands it to papermill (same parameterisation, same notebook, same failure semantics as
`run_runbook`). A kernel serves exactly one runbook: afterwards it is shut down and a fresh one
started in the background, so no state leaks from one incident into the next.

    with KernelPool(size=2) as pool:
        result = pool.run(runbook, parameters, "out.ipynb", cwd=".", cell_timeout_s=120)
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from incidentbook.errors import RunbookError
from incidentbook.proposals import HEADLESS_ENV
from incidentbook.runner.execute import (
    DEFAULT_MAX_OUTPUT_BYTES,
    RunResult,
    _describe_interruption,
    _ensure_runnable,
    finish_run,
)
from incidentbook.runner.registry import Runbook

log = logging.getLogger(__name__)

#: Modules a warm kernel imports before it is handed out (what runbooks spend their start on).
DEFAULT_PRELOAD: tuple[str, ...] = (
    "numpy", "pandas", "plotly.graph_objects", "incidentbook.kernel_ext", "incidentbook.notebook",
    "incidentbook.telemetry.replay", "incidentbook.agent.rules", "incidentbook.incidents",
    "alembic.command", "alembic.config", "alembic.script", "alembic.runtime.migration",
    "alembic.autogenerate", "IPython.display",
)


@dataclass
class WarmKernel:
    """A started kernel (manager and connected client) waiting for a runbook."""

    km: Any
    kc: Any
    started: float


def _execute_quietly(kc: Any, code: str, timeout: float) -> None:
    """Run `code` in the kernel without history; RunbookError if it raises."""
    msg_id = kc.execute(code, silent=True, store_history=False)
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    if reply["content"].get("status") != "ok":
        c = reply["content"]
        raise RunbookError(f"warm kernel set-up failed: {c.get('ename')}: {c.get('evalue')}")


_ENGINE = "incidentbook-warm"


def _register_engine() -> str:
    """Register (once) the papermill engine that runs in an already-started, already-ready kernel.

    It is papermill's nbclient engine except for how the kernel client connects: nbclient's
    `wait_for_ready` ends by waiting for 0.2 s of IOPub silence, a fixed cost per run; the pool
    checked readiness at warm-up, so here one kernel_info round trip proves IOPub is subscribed.
    """
    from nbclient.util import ensure_async, run_sync
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.utils import merge_kwargs, remove_args

    if _ENGINE in papermill_engines._engines:
        return _ENGINE

    class WarmClient(PapermillNotebookClient):  # type: ignore[misc]
        async def async_start_new_kernel_client(self) -> Any:
            self.kc = self.km.client()
            await ensure_async(self.kc.start_channels())
            for _ in range(100):  # ZMQ subscriptions join late: retry until IOPub answers
                msg_id = self.kc.kernel_info()
                try:
                    while True:
                        msg = await self.kc.iopub_channel.get_msg(timeout=0.01)
                        if msg["parent_header"].get("msg_id") == msg_id and \
                                msg["content"].get("execution_state") == "idle":
                            break
                except queue.Empty:
                    continue
                break
            while True:  # drop the kernel_info replies of the attempts above
                try:
                    await self.kc.shell_channel.get_msg(timeout=0.01)
                except queue.Empty:
                    break
            self.kc.allow_stdin = False
            return self.kc

        # nbclient's synchronous setup_kernel calls this name, bound to the base class method
        start_new_kernel_client = run_sync(async_start_new_kernel_client)

    class WarmEngine(NBClientEngine):  # type: ignore[misc]
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, log_output: bool = False,
                                     stdout_file: Any = None, stderr_file: Any = None,
                                     start_timeout: float = 60, execution_timeout: float | None = None,
                                     **kwargs: Any) -> Any:
            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                                 kernel_name=kernel_name, log=logging.getLogger("papermill"),
                                 log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file)
            return WarmClient(nb_man, **final).execute()

    papermill_engines.register(_ENGINE, WarmEngine)
    return _ENGINE


class KernelPool:
    """`size` pre-started kernels of `kernel_name`, refilled in the background after each use."""

    def __init__(self, size: int = 2, kernel_name: str = "python3",
                 preload: Sequence[str] = DEFAULT_PRELOAD, start_timeout_s: float = 60.0) -> None:
        if size < 1:
            raise RunbookError(f"a kernel pool needs at least one kernel, got size={size}; "
                               "set [server] workers to 1 or more")
        self.size = size
        self.kernel_name = kernel_name
        self.preload = tuple(preload)
        self.start_timeout_s = start_timeout_s
        self._ready: queue.Queue[WarmKernel] = queue.Queue()
        self._closed = threading.Event()
        self._starting = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> KernelPool:
        """Begin starting the kernels (in the background); returns at once."""
        for _ in range(self.size):
            self._refill()
        return self

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Block until every kernel is warm (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready.qsize() >= self.size:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        """Shut every kernel down (waiting ones now, ones being started as they come up)."""
        self._closed.set()
        for t in list(self._threads):
            t.join(timeout=self.start_timeout_s)
        while True:
            try:
                wk = self._ready.get_nowait()
            except queue.Empty:
                break
            self._shutdown(wk)

    def __enter__(self) -> KernelPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def ready(self) -> int:
        """How many kernels are warm and waiting."""
        return self._ready.qsize()

    # ------------------------------------------------------------------ kernels

    def _refill(self) -> None:
        if self._closed.is_set():
            return
        with self._lock:
            self._starting += 1
        t = threading.Thread(target=self._start_one, name="incidentbook-kernel-start", daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def _start_one(self) -> None:
        try:
            wk = self._new_kernel()
        except Exception as e:  # noqa: BLE001 - a failed start is logged; acquire() then times out
            log.error("could not start a warm %s kernel: %s", self.kernel_name, e)
            return
        finally:
            with self._lock:
                self._starting -= 1
        if self._closed.is_set():
            self._shutdown(wk)
        else:
            self._ready.put(wk)

    def _new_kernel(self) -> WarmKernel:
        from jupyter_client.manager import KernelManager

        km = KernelManager(kernel_name=self.kernel_name)
        from incidentbook.actions.broker import kernel_env

        env = {**kernel_env(), HEADLESS_ENV: "1"}  # kernels never get write credentials
        km.start_kernel(env=env, extra_arguments=["--IPKernelApp.log_level=ERROR"])
        kc = km.client()
        kc.start_channels()
        # nbclient drives the kernel with its own client; it needs the asyncio one for cell
        # timeouts to work (a blocking client's poll ignores them inside its event loop).
        from jupyter_client.asynchronous import AsyncKernelClient

        km.client_factory = AsyncKernelClient
        try:
            kc.wait_for_ready(timeout=self.start_timeout_s)
            if self.preload:
                lines = [f"    import {m}" for m in self.preload]
                code = "\n".join(["try:", *lines, "except Exception:", "    pass"])
                _execute_quietly(kc, code, self.start_timeout_s)
        except Exception:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
            raise
        return WarmKernel(km=km, kc=kc, started=time.monotonic())

    def _shutdown(self, wk: WarmKernel) -> None:
        try:
            wk.kc.stop_channels()
        finally:
            try:
                wk.km.shutdown_kernel(now=True)
            except Exception as e:  # noqa: BLE001 - the process may already be gone
                log.debug("kernel shutdown: %s", e)

    def acquire(self, timeout: float | None = None) -> WarmKernel:
        """A warm kernel (waits up to `timeout`, default the start timeout, for one)."""
        wait = self.start_timeout_s if timeout is None else timeout
        try:
            return self._ready.get(timeout=wait)
        except queue.Empty:
            raise RunbookError(
                f"no warm {self.kernel_name} kernel came up within {wait:g} s; check that the "
                f"kernel starts (jupyter kernelspec list) or set [server] warm_kernels = false"
            ) from None

    def discard(self, wk: WarmKernel) -> None:
        """Shut a used kernel down and start its replacement."""
        self._refill()
        threading.Thread(target=self._shutdown, args=(wk,), daemon=True).start()

    # ------------------------------------------------------------------ running

    def run(self, runbook: Runbook, parameters: Mapping[str, Any], output_path: str | Path,
            cwd: str | Path, cell_timeout_s: float, kernel_name: str | None = None,
            max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> RunResult:
        """Execute `runbook` in a warm kernel; the same contract as `run_runbook`.

        `kernel_name` is accepted for signature compatibility; the pool's kernel is used.
        """
        return run_runbook_warm(self, runbook, parameters, output_path, cwd, cell_timeout_s,
                                max_output_bytes=max_output_bytes)


def run_runbook_warm(pool: KernelPool, runbook: Runbook, parameters: Mapping[str, Any],
                     output_path: str | Path, cwd: str | Path, cell_timeout_s: float,
                     max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> RunResult:
    """`run_runbook` in a kernel from `pool`: papermill parameterises and executes the notebook."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    _ensure_runnable(runbook, pool.kernel_name)
    output_path = Path(output_path).resolve()
    cwd = Path(cwd).resolve()
    output_path.parent.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    params = json.loads(json.dumps(dict(parameters)))

    started = time.monotonic()
    wk = pool.acquire()
    ename = evalue = ""
    interrupted = False
    try:
        # The kernel was started elsewhere: move it to the incident directory first.
        _execute_quietly(wk.kc, f"import os as _ib_os; _ib_os.chdir({str(cwd)!r}); del _ib_os",
                         timeout=30)
        papermill.execute_notebook(
            str(runbook.path.resolve()), str(output_path), parameters=params,
            execution_timeout=cell_timeout_s, kernel_name=pool.kernel_name, log_output=False,
            progress_bar=False, km=wk.km, engine_name=_register_engine(),
            # one write at the end instead of one per cell: a warm run takes well under a second
            request_save_on_cell_execute=False,
        )
    except PapermillExecutionError as e:
        ename, evalue = e.ename, e.evalue
    except Exception as e:  # timeout, dead kernel: keep the notebook, as run_runbook does
        interrupted = True
        ename, evalue = _describe_interruption(e, cell_timeout_s)
        log.warning("runbook %s stopped: %s: %s", runbook.name, ename, evalue)
    finally:
        pool.discard(wk)
    duration = time.monotonic() - started

    return finish_run(runbook, params, output_path, ename, evalue, interrupted, duration,
                      max_output_bytes=max_output_bytes)
