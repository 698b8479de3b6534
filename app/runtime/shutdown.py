"""A deadline on a worker's stop: SIGTERM ends the process within the grace period, whatever its agents do.

Faust stops a worker by waiting for every record an agent started to be acknowledged
(``Consumer.wait_empty``); a record held by a crashed actor never is, and the stop then waits
forever (until SIGKILL). An agent that blocks the event loop stops the stop too. On the first
SIGTERM or SIGINT, :class:`ShutdownDeadline` starts a daemon thread; if the process is still
there ``grace`` seconds later, the thread logs one line saying what was still pending and exits
the process with :data:`EXIT_CODE` (``os._exit``: no more waiting on the loop).

The thread is armed from a Python-level signal handler (:func:`chain_signal_handlers`), which runs
in the main thread between two bytecodes even while the event loop is blocked; asyncio's own
handler still receives the signal (through its wakeup file descriptor) and starts Faust's normal
stop.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

#: Exit code of a worker that did not stop within its grace period.
EXIT_CODE = 1


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:
            continue
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            continue


class ShutdownDeadline:
    """Exit the process ``grace`` seconds after :meth:`arm` unless it has exited by then.

    ``pending`` says what the stop still waits for (called in the deadline thread; an exception
    in it is reported, not raised). ``exit`` is ``os._exit`` in a worker, a recorder in tests.
    """

    def __init__(
        self,
        grace: float,
        pending: Callable[[], str],
        exit: Callable[[int], Any] = os._exit,
    ) -> None:
        self.grace = grace
        self.pending = pending
        self.exit = exit
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def arm(self) -> None:
        """Start the countdown (once: later calls keep the first deadline)."""
        with self._lock:
            if self._timer is not None:
                return
            self._timer = threading.Timer(self.grace, self.expire)
            self._timer.daemon = True
            self._timer.name = "persona-shutdown-deadline"
            self._timer.start()

    def expire(self) -> None:
        try:
            pending = self.pending()
        except Exception as exc:  # the loop's state may change under us; say so and go on
            pending = f"unknown ({type(exc).__name__}: {exc})"
        log.error(
            "worker did not stop within %g s of the signal (PERSONA_SHUTDOWN_GRACE_SECONDS); still pending: %s; "
            "exiting with code %d",
            self.grace,
            pending,
            EXIT_CODE,
        )
        _flush_logs()
        self.exit(EXIT_CODE)


def chain_signal_handlers(
    deadline: ShutdownDeadline, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)
) -> None:
    """Arm ``deadline`` when one of ``signals`` arrives, then run the Python handler that was there.

    Call it after the event loop installed its handlers (``loop.add_signal_handler``): the loop's
    handler is a no-op at the Python level and still receives the signal through its wakeup fd.
    """
    for sig in signals:
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            deadline.arm()
            if callable(previous):
                previous(signum, frame)

        signal.signal(sig, handler)
