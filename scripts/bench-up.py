#!/usr/bin/env python3
"""Start-up time of `sheepdog up` with 20 services against a shell script that starts the same
20 processes: from launch until the 20th service is running (the 20th `starting` line; for the
script, its `started` line). Usage: python3 scripts/bench-up.py [path/to/sheepdog] [runs]"""

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

SHEEPDOG = sys.argv[1] if len(sys.argv) > 1 else "target/release/sheepdog"
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 15
SERVICES = 20


def up_once(config):
    start = time.monotonic()
    proc = subprocess.Popen([SHEEPDOG, "up", "-f", config], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    started = 0
    for line in proc.stderr:
        if "[sheepdog] starting" in line:
            started += 1
            if started == SERVICES:
                break
    elapsed = time.monotonic() - start
    proc.send_signal(signal.SIGINT)
    proc.wait()
    return elapsed


def sh_once(_config):
    start = time.monotonic()
    script = f"for i in $(seq {SERVICES}); do sleep 100 & done; echo started; wait"
    proc = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    proc.stdout.readline()
    elapsed = time.monotonic() - start
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return elapsed


def main():
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "sheepdog.toml")
        with open(config, "w") as f:
            for i in range(SERVICES):
                f.write(f'[services.s{i:02}]\nargv = ["sleep", "100"]\n')
        for name, once in (("sheepdog up", up_once), ("shell script", sh_once)):
            times = [once(config) * 1000 for _ in range(RUNS)]
            print(f"{name:13} {SERVICES} services: median {statistics.median(times):.1f} ms, "
                  f"min {min(times):.1f}, max {max(times):.1f} ({RUNS} runs)")


if __name__ == "__main__":
    main()
