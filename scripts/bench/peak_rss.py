#!/usr/bin/env python3
"""Runs a command and prints its wall time and peak resident memory (of it and its children).

    peak_rss.py -- CMD ARGS...        -> last line: {"seconds": ..., "peak_rss_mib": ...}
"""

import json
import resource
import subprocess
import sys
import time

cmd = sys.argv[sys.argv.index("--") + 1 :]
t0 = time.perf_counter()
rc = subprocess.call(cmd)
secs = time.perf_counter() - t0
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": rc, "seconds": round(secs, 2), "peak_rss_mib": round(peak_kib / 1024, 1)}))
sys.exit(rc)
