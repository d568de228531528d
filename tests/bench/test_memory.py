"""The benchmarks' memory figure: a child's own peak, not its parent's."""

import subprocess
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_a_child_reports_its_own_peak_not_the_peak_its_parent_had_reached():
    """A bench that grew (a replicated store made in its own process) and then starts a
    measured child: the child's figure is what the child used. ``ru_maxrss`` is kept across
    exec, so it would report the parent's 400 MB; the child uses about 50 MB."""
    grown = np.ones(400 * 2**20 // 8)  # touched: 400 MB resident in this process
    code = (
        f"import sys, resource; sys.path.insert(0, {str(BENCH)!r}); "
        "from memory import own_peak_mb; "
        "print(own_peak_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    own, maxrss = map(float, out.stdout.split())
    del grown
    assert own < 200, own
    if sys.platform == "linux":  # what the figure would have been
        assert maxrss > 400, maxrss
