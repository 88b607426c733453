"""A qcluster's processes end with the process that forked them, and a SIGTERM to the whole group stops it.

django-q2's tree is qcluster → sentinel → pusher, monitor, workers. Two of its behaviours break supervision:
- Nothing in it watches its parent. After a SIGKILL of the qcluster process its sentinel and workers live on as
  orphans, and an orphaned gpu worker goes on advertising its slot while the supervisor's fresh cluster
  advertises the same GPU again.
- A SIGTERM to the whole process group (what a supervisor sends to stop a role and all it forked) kills the
  sentinel at once (it keeps SIGTERM's default action), while the qcluster process's own handler signals the
  sentinel's stop event: a multiprocessing Condition with a dead waiter, so the qcluster process blocks
  forever and only a SIGKILL ends it.

So every process forked below a qcluster asks the kernel (Linux PR_SET_PDEATHSIG) for a signal when its parent
dies: the sentinel SIGKILL, the processes below it SIGTERM (a gpu worker turns that into its usual stop: the
job in hand is given back at its next step; gpu_runner.worker). And the sentinel blocks SIGTERM, so a group
SIGTERM reaches it only as the qcluster process's orderly stop; the processes it forks unblock it again.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
_top: int | None = None  # the qcluster process
_parent: int | None = None  # the process about to fork


def _before_fork() -> None:
    global _parent
    _parent = os.getpid()


def _in_child() -> None:
    sentinel = _parent == _top
    if sentinel:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    else:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    on_parent_death = signal.SIGKILL if sentinel else signal.SIGTERM
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, on_parent_death, 0, 0, 0) != 0:
        return  # not permitted here: the process just lacks the safeguard
    if os.getppid() != _parent:  # the parent died before the request took effect
        os.kill(os.getpid(), on_parent_death)


def install() -> None:
    """Called once in the qcluster process, before it forks anything."""
    global _top
    if sys.platform.startswith("linux"):
        _top = os.getpid()
        os.register_at_fork(before=_before_fork, after_in_child=_in_child)
