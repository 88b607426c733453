"""The short fault-injection run (`make chaos`'s harness, a hundred-odd jobs on two gpus, every fault at least once,
pg_terminate_backend instead of a Postgres restart): zero violations, every killed runner's job ran again."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.platform import ROOT

pytestmark = pytest.mark.e2e


def test_short_chaos_run_has_no_violations(tmp_path):
    admin = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/chaos.py",
            "--jobs",
            "120",
            "--gpus",
            "2",
            "--clients",
            "3",
            "--window",
            "4",
            "--database-url",
            f"{admin}/videogen_chaos_test",
            "--workdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,  # the fleet, its faults, the webhook receivers and the stream checks (minutes)
        check=False,
    )
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stdout[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["violations"] == 0 and summary["unrecovered"] == 0
    assert summary["jobs"] >= 120 and summary["faults"] >= 15
