"""Stopping by a signal: SIGTERM, which SLURM and most schedulers send to stop a job, is handled as Ctrl-C is.

Within :func:`signals_interrupt`, SIGINT (Ctrl-C) and SIGTERM raise :class:`Interrupted`, a ``KeyboardInterrupt``
that names its signal, so that one ``except KeyboardInterrupt`` marks the job's record ``interrupted`` and
removes its partial files whichever signal came. Some libraries catch ``BaseException`` around optional imports
(trimesh does) and would swallow a single raise -- the job would then run on, to the scheduler's SIGKILL -- so
the interruption is raised again every half second until the code that catches it calls :func:`cleaning_up`;
from then on further signals are ignored, so that the cleanup (a record, a few files) is not cut short.
SIGKILL still ends the process at once.

Example::

    from accel3d.jobs.interrupt import cleaning_up, signals_interrupt

    try:
        with signals_interrupt():   # in the main thread
            work()
    except KeyboardInterrupt as exc:
        cleaning_up()
        print(f"stopped by {getattr(exc, 'signal_name', 'SIGINT')}")
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

RETRY_S = 0.5  # how often an interruption that was swallowed is raised again
SIGNALS = ("SIGINT", "SIGTERM")

_state: dict[str, Any] = {"pending": False, "cleaning": False, "retry": None}
_stop = threading.Event()  # set by cleaning_up(): the retries stop


class Interrupted(KeyboardInterrupt):
    """Raised where the program is when SIGINT or SIGTERM arrives; ``signal_name`` says which."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


@contextlib.contextmanager
def signals_interrupt() -> Iterator[list[str]]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted`; yields the signals handled. The handlers
    that were there before are put back at the end (``accel3d.cli.main`` may be called in-process).

    Nothing is done outside the main thread (which alone may set handlers), and a signal that is ignored
    (SIGINT of a job started in the background) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    previous = {}
    for name in SIGNALS:
        number = getattr(signal, name)
        if signal.getsignal(number) != signal.SIG_IGN:
            previous[number] = signal.signal(number, _on_signal)
    _state.update(pending=False, cleaning=False, retry=None)
    _stop.clear()
    try:
        yield [signal.Signals(n).name for n in previous]
    finally:
        cleaning_up()
        retry = _state["retry"]
        if retry is not None:
            retry.join()  # no signal of ours arrives after the old handlers are back
        for number, handler in previous.items():
            signal.signal(number, handler)


def cleaning_up() -> None:
    """Say that an interruption was caught and its cleanup begins: it is not raised again, and further signals are ignored."""
    _state["cleaning"] = True
    _stop.set()


def _on_signal(signum: int, frame: Any) -> None:
    if _state["cleaning"]:
        return
    if not _state["pending"]:
        _state["pending"] = True
        _state["retry"] = threading.Thread(target=_raise_again, args=(signum,), name="accel3d-interrupt", daemon=True)
        _state["retry"].start()
    raise Interrupted(signal.Signals(signum).name)


def _raise_again(signum: int) -> None:
    """Send the signal to this process every RETRY_S until its interruption is caught (cleaning_up)."""
    while not _stop.wait(RETRY_S):
        os.kill(os.getpid(), signum)
