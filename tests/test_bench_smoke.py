"""The benchmark scripts run and report (a smoke run: tiny sizes, no speed asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.whatsmeow_support import require_neonize

BENCH = Path(__file__).resolve().parent.parent / "bench"


def run_bench(script: str, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.timeout(240)
def test_sessions_bench_reports() -> None:
    report = run_bench("sessions.py", "--accounts", "10")
    assert report["sessions"] == 10
    for key in ("rss_per_session_kib", "restore_seconds", "links_per_second"):
        assert isinstance(report[key], int | float), key


@pytest.mark.timeout(240)
def test_api_latency_bench_reports() -> None:
    report = run_bench("api_latency.py", "--accounts", "5", "--seconds", "1")
    assert report["errors"] == 0 and report["requests"] > 0
    assert report["p99_ms"] >= report["p50_ms"] > 0


@pytest.mark.timeout(240)
def test_pipeline_bench_reports() -> None:
    report = run_bench("pipeline.py", "--accounts", "3", "--burst", "4")
    assert report["events"] == 12
    assert report["gateway_cpu_ms_per_event"] > 0  # type: ignore[operator]
    assert report["raw_insert_commit_per_second"] > 0  # type: ignore[operator]
    assert report["share_of_ceiling"] > 0  # type: ignore[operator]


@pytest.mark.timeout(240)
def test_latency_bench_reports() -> None:
    report = run_bench("latency.py", "--accounts", "5", "--scan-rate", "20", "--idle-seconds", "1")
    assert report["accounts"] == 5
    for name in ("scan_to_sse", "scan_to_webhook", "commit_to_sse", "commit_to_webhook"):
        p50, p99 = report[f"{name}_p50_ms"], report[f"{name}_p99_ms"]
        assert isinstance(p50, int | float) and isinstance(p99, int | float), name
        assert p99 >= p50 > 0, name
    assert report["events_sse"] == report["events_webhook"] == report["events_committed"]
    assert report["events_sse"] > 0  # type: ignore[operator]


@pytest.mark.timeout(240)
def test_host_memory_bench_reports() -> None:
    require_neonize()
    report = run_bench("host_memory.py", "--clients", "2")
    assert report["clients"] == 2
    steps = report["steps"]
    assert isinstance(steps, list) and [s["clients"] for s in steps] == [0, 1, 2]
    assert all(s["VmRSS"] > 0 and s["Threads"] > 0 for s in steps)
    assert isinstance(report["rss_mib_per_client"], int | float)


@pytest.mark.services
@pytest.mark.timeout(240)
def test_cluster_bench_reports() -> None:
    from tests.conftest import service_url

    report = run_bench(
        "cluster.py", "--accounts", "6", "--lease", "3", "--database-url", service_url("postgres")
    )
    assert report["sessions"] == 6
    assert report["sessions_owned_a"] + report["sessions_owned_b"] == 6  # type: ignore[operator]
    assert report["failed_over"] == report["sessions_owned_a"]
    assert report["failover_seconds"] > 0  # type: ignore[operator]


@pytest.mark.services
@pytest.mark.timeout(240)
def test_scaleout_bench_reports() -> None:
    from tests.conftest import service_url

    report = run_bench(
        "scaleout.py",
        "--accounts",
        "6",
        "--burst",
        "3",
        "--database-url",
        service_url("postgres"),
    )
    assert report["events"] == 18
    for nodes in (1, 2):
        assert report[f"links_per_second_{nodes}_node"] > 0  # type: ignore[operator]
        assert report[f"events_per_second_{nodes}_node"] > 0  # type: ignore[operator]
    assert report["events_per_second_ratio_2_to_1"] > 0  # type: ignore[operator]
