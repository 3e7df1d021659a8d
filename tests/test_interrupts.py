"""``torch_dash_optim._interrupts``: Ctrl-C recorded inside a block, delivered or acted on after it."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from torch_dash_optim._interrupts import deferred_interrupts, sigint_blocked

# Prints the calling process's blocked-signal mask (Linux), as a child started inside the block sees it.
_PRINT_SIGBLK = "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('SigBlk:')))"


def test_a_ctrl_c_inside_is_recorded_then_delivered_on_leaving() -> None:
    reached_the_end = False
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts() as received:
            signal.raise_signal(signal.SIGINT)
            assert len(received) == 1  # recorded, not raised
            signal.raise_signal(signal.SIGINT)
            assert len(received) == 2
            reached_the_end = True
    assert reached_the_end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_record_cleared_by_the_block_is_not_delivered_again() -> None:
    with deferred_interrupts() as received:
        signal.raise_signal(signal.SIGINT)
        assert received
        received.clear()  # the block acted on it
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_sigint_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with deferred_interrupts() as received:
            signal.raise_signal(signal.SIGINT)
            assert received
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status (Linux)")
def test_processes_started_inside_sigint_blocked_inherit_the_block() -> None:
    def sigint_blocked_in_child() -> bool:
        out = subprocess.run([sys.executable, "-c", _PRINT_SIGBLK], capture_output=True, text=True, check=True)
        return bool(int(out.stdout, 16) & (1 << (signal.SIGINT - 1)))

    assert not sigint_blocked_in_child()
    with sigint_blocked():
        assert sigint_blocked_in_child()
    assert not sigint_blocked_in_child()


def test_a_ctrl_c_held_by_the_block_reaches_the_handler_on_leaving() -> None:
    with deferred_interrupts() as received:
        with sigint_blocked():
            signal.raise_signal(signal.SIGINT)  # to this thread, which blocks it: held
            assert not received
        assert len(received) == 1  # released on leaving, and recorded
        received.clear()
