"""A benchmark process's own peak memory."""

from __future__ import annotations

import resource


def own_peak_mb() -> float:
    """This process's peak resident memory in MB, from exec on.

    ``VmHWM`` of ``/proc/self/status`` (Linux), not ``ru_maxrss``: the kernel keeps
    ``ru_maxrss`` across exec, so a benchmark child reports at least the peak its parent had
    reached when it forked. A bench that replicated a 10M-resident store in its own process
    made a scoring child of 1.85 GB report 2.88 GB. Elsewhere, ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
