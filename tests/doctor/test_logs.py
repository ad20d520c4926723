"""``wagate doctor logs`` on the real blazz log, on generated logs of known truth, on bad input."""

from __future__ import annotations

import inspect
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.doctor.loggen import generate, write_large
from wagate.doctor import lines
from wagate.doctor.cli import app
from wagate.doctor.logs import WagateMessage, analyze
from wagate.doctor.report import Tally

# A real log of the service wagate replaces, kept in the repository (tests/fixtures/README.md).
BLAZZ_LOG = Path(__file__).parents[1] / "fixtures" / "blazz" / "whatsapp-service.out.log"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def doctor_json(*args: str) -> dict[str, Any]:
    code, out, err = run("logs", "--json", *args)
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


# The numbers below were counted by hand on the fixture (F) with:
#   grep -c 'Creating WhatsApp session' F                 -> 1   (line 44)
#   grep -c 'QR code generated' F                         -> 1   (line 45)
#   grep -c 'WhatsApp session authenticated' F            -> 1   (line 47)
#   grep -c 'WhatsApp session ready' F                    -> 1   (line 49)
#   grep -c 'Failed to send data to Laravel' F            -> 210 (sendToLaravel gave up)
#   grep -c 'Webhook notification failed permanently' F   -> 6   (WebhookNotifier gave up)
#   grep -h 'Failed to send data to Laravel\|failed permanently' F \
#     | grep -o '"error":"[^"]*"' | sort | uniq -c
#       186 "timeout of 10000ms exceeded"       -> timeout
#        22 "connect ETIMEDOUT 127.0.0.1:8000"  -> timeout (the TCP connect timed out)
#         6 "Request failed with status code 500" -> http_5xx
#         1 "Request failed with status code 429" -> http_4xx
#         1 "write EPIPE"                        -> other
# Not counted: the 6 'Batch send attempt failed' lines, each 0-1 ms after a 'failed permanently'
# line (the caller reporting the same request again), and the 2 'Batch sync failed' lines (a batch
# giving up after its three requests, already counted).
#   grep -n '^Node.js v' F -> 31; grep -n 'EADDRINUSE' F -> 7: the crash at start-up, lines 3-31.
#   grep -n '^SyntaxError' F -> 32: a body-parser error, printed with its stack, not fatal.
# Timestamps of lines 44, 45, 47, 49: 04:45:42.456, 04:46:16.428, 04:47:15.621, 04:47:18.506.
FIXTURE_WEBHOOKS = {
    "timeout": 208,
    "refused": 0,
    "http_4xx": 1,
    "http_5xx": 6,
    "other": 1,
    "unknown": 0,
}


def test_blazz_log_has_one_complete_link_and_216_webhook_failures() -> None:
    tally = analyze([BLAZZ_LOG]).as_json()
    assert (tally["attempts"], tally["qr_codes"], tally["authenticated"], tally["ready"]) == (
        1,
        1,
        1,
        1,
    )
    assert tally["success_rate"] == 1.0
    assert tally["outcomes"] == {"linked": 1}
    (attempt,) = tally["evidence"]["linked"]
    where = f"{BLAZZ_LOG}:"
    assert attempt["lines"]["created"] == f"{where}44"
    assert attempt["lines"]["first_qr"] == f"{where}45"
    assert attempt["lines"]["authenticated"] == f"{where}47"
    assert attempt["lines"]["ready"] == f"{where}49"
    assert attempt["seconds"] == {"first_qr": 33.972, "authenticated": 93.165, "ready": 96.05}
    assert tally["webhook_failures"] == FIXTURE_WEBHOOKS
    assert sum(tally["webhook_failures"].values()) == 216
    assert tally["crashes"]["count"] == 1
    (crash,) = tally["crashes"]["first"]
    assert crash["message"] == "Error: listen EADDRINUSE: address already in use :::3001"
    assert crash["lines"] == f"{where}3-31"
    assert tally["exceptions"]["count"] == 1
    assert tally["unknown"] == {"attempts": 0, "events": 0, "webhook_failures": 0, "lines": 0}
    assert tally["lines"] == {"total": 1500, "entries": 1460, "stack_trace": 40}


def test_blazz_log_json_from_the_command_line() -> None:
    data = doctor_json(str(BLAZZ_LOG))
    for key in ("attempts", "qr_codes", "authenticated", "ready"):
        assert data[key] == 1
    assert data["webhook_failures"] == FIXTURE_WEBHOOKS
    assert set(data) >= {"success_rate", "outcomes", "unknown"}


def test_blazz_log_table_for_people() -> None:
    code, out, _ = run("logs", str(BLAZZ_LOG))
    assert code == 0
    assert "webhook delivery failures (216)" in out
    assert "208" in out and "EADDRINUSE" in out
    assert "created 44, first qr 45, authenticated 47, ready 49" in out
    assert "100.0%" in out


def test_until_cuts_the_attempt_short_and_its_outcome_becomes_unknown() -> None:
    data = doctor_json(str(BLAZZ_LOG), "--until", "2025-11-15T04:47:00Z")
    assert data["attempts"] == 1 and data["qr_codes"] == 1
    assert data["authenticated"] == 0 and data["ready"] == 0
    assert data["outcomes"] == {"unknown": 1}
    assert data["unknown"]["attempts"] == 1
    assert data["evidence"]["unknown"][0]["reached"] == "first_qr"
    assert sum(data["webhook_failures"].values()) == 0  # all of them came later


def test_since_leaves_out_the_startup_crash() -> None:
    data = doctor_json(str(BLAZZ_LOG), "--since", "2025-11-15T04:40:00")
    assert data["crashes"]["count"] == 0
    assert data["outcomes"] == {"linked": 1}


def _files(tmp_path: Path, files: list[list[bytes]]) -> list[Path]:
    paths = []
    for i, content in enumerate(files):
        path = tmp_path / f"service.out.log.{len(files) - i - 1}"
        path.write_bytes(b"\n".join(content) + b"\n")
        paths.append(path)
    return paths


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), sessions=st.integers(1, 8))
def test_generated_logs_every_count_matches(tmp_path: Path, seed: int, sessions: int) -> None:
    files, truth = generate(seed, sessions)
    tally = analyze(_files(tmp_path, files))
    data = tally.as_json()
    assert data["attempts"] == truth.attempts
    assert data["qr_codes"] == truth.qr_codes
    assert data["first_qr"] == truth.first_qr
    assert data["authenticated"] == truth.authenticated
    assert data["ready"] == truth.ready
    assert dict(tally.outcomes) == dict(truth.outcomes)
    assert _nonzero(data["webhook_failures"]) == dict(truth.webhook)
    assert _nonzero(data["unknown"]) == _nonzero(dict(truth.unknown))
    assert data["crashes"]["count"] == truth.crashes
    assert data["exceptions"]["count"] == truth.exceptions
    assert _nonzero(dict(tally.restorations)) == dict(truth.restorations)
    assert _nonzero(dict(tally.lines)) == dict(truth.lines)
    for stage, values in truth.seconds.items():
        stat = data["timings_seconds"][stage]
        assert stat["count"] == len(values)
        if values:
            assert stat["min"] == pytest.approx(min(values), abs=1e-3)
            assert stat["max"] == pytest.approx(max(values), abs=1e-3)


@pytest.mark.parametrize("seed", [1, 7, 42])
def test_generated_logs_through_the_command_line(tmp_path: Path, seed: int) -> None:
    files, truth = generate(seed)
    data = doctor_json(*map(str, _files(tmp_path, files)))
    assert (data["attempts"], data["ready"]) == (truth.attempts, truth.ready)
    assert data["outcomes"] == dict(truth.outcomes)


def test_streaming_by_design() -> None:
    # Lines come from a generator: nothing reads a whole file. The analyser keeps one record per
    # open session (re-creating a session replaces its record): state follows sessions, not lines.
    assert inspect.isgeneratorfunction(lines.read)


def _peak(path: Path) -> tuple[int, Tally]:
    tracemalloc.start()
    try:
        tally = analyze([path])
        return tracemalloc.get_traced_memory()[1], tally
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    small, large = tmp_path / "small.log", tmp_path / "large.log"
    write_large(small, cycles=500)
    write_large(large, cycles=4000)
    assert large.stat().st_size > 7 * small.stat().st_size
    small_peak, small_tally = _peak(small)
    large_peak, large_tally = _peak(large)
    assert (small_tally.attempts, large_tally.attempts) == (500, 4000)
    assert large_tally.webhook_failures["timeout"] == 4000
    bound = 512 * 1024  # the same bound for both sizes: the files are 0.3 and 2.7 MB
    assert small_peak < bound and large_peak < bound, (small_peak, large_peak)


def wagate_line(msg: str, ts: str, **fields: object) -> str:
    return json.dumps(
        {"ts": ts, "level": "info", "logger": "wagate.sessions", "msg": msg, **fields}
    )


def test_wagate_attempts_are_identified_by_attempt_id_with_exact_outcomes(tmp_path: Path) -> None:
    a, b = (
        {"account_id": "acc-1", "attempt_id": "att-1"},
        {"account_id": "acc-2", "attempt_id": "att-2"},
    )
    log = tmp_path / "wagate.log"
    log.write_text(
        "\n".join(
            [
                wagate_line(
                    WagateMessage.ATTEMPT_STARTED, "2026-01-01T10:00:00+00:00", **a, method="qr"
                ),
                wagate_line(
                    WagateMessage.ATTEMPT_STARTED, "2026-01-01T10:00:01+00:00", **b, method="qr"
                ),
                wagate_line(WagateMessage.QR_ISSUED, "2026-01-01T10:00:02+00:00", **a, index=0),
                wagate_line(WagateMessage.QR_ISSUED, "2026-01-01T10:00:03+00:00", **b, index=0),
                wagate_line(WagateMessage.QR_ISSUED, "2026-01-01T10:00:22+00:00", **a, index=1),
                wagate_line(WagateMessage.PHONE_PAIRED, "2026-01-01T10:00:30+00:00", **a),
                wagate_line(
                    WagateMessage.ATTEMPT_ENDED, "2026-01-01T10:00:35+00:00", **a, outcome="linked"
                ),
                wagate_line(
                    WagateMessage.SESSION_CONNECTED, "2026-01-01T10:00:35+00:00", account_id="acc-1"
                ),
                wagate_line(
                    WagateMessage.ATTEMPT_ENDED,
                    "2026-01-01T10:02:00+00:00",
                    attempt_id="att-2",
                    outcome="interrupted",
                    reason="restart",
                ),
                wagate_line(
                    WagateMessage.WEBHOOK_FAILED,
                    "2026-01-01T10:03:00+00:00",
                    status=502,
                    error="http_5xx",
                ),
                wagate_line(
                    WagateMessage.WEBHOOK_FAILED,
                    "2026-01-01T10:03:01+00:00",
                    status=None,
                    error="timeout",
                ),
                wagate_line(WagateMessage.WEBHOOK_FAILED, "2026-01-01T10:03:02+00:00", status=None),
            ]
        )
    )
    data = doctor_json("--format", "wagate", str(log))
    assert (data["attempts"], data["qr_codes"], data["authenticated"], data["ready"]) == (
        2,
        3,
        1,
        1,
    )
    assert data["outcomes"] == {"linked": 1, "interrupted": 1}
    linked = data["evidence"]["linked"][0]
    assert linked["key"] == "att-1"
    assert linked["seconds"] == {"first_qr": 2.0, "authenticated": 30.0, "ready": 35.0}
    assert data["evidence"]["interrupted"][0]["reason"] == "restart"
    assert data["webhook_failures"]["http_5xx"] == 1 and data["webhook_failures"]["timeout"] == 1
    assert data["webhook_failures"]["unknown"] == data["unknown"]["webhook_failures"] == 1
    assert data["unknown"]["attempts"] == 0


def one_line_error(args: list[str]) -> str:
    code, out, err = run(*args)
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    assert "cannot read" in one_line_error(["logs", str(tmp_path / "nope.log")])


def test_directory_is_a_one_line_error(tmp_path: Path) -> None:
    assert "is a directory" in one_line_error(["logs", str(tmp_path)])


def test_binary_junk_is_a_one_line_error(tmp_path: Path) -> None:
    junk = tmp_path / "core.dump"
    junk.write_bytes(bytes(range(256)) * 64)
    assert "binary" in one_line_error(["logs", str(junk)])


def test_text_that_is_no_log_is_a_one_line_error(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\neggs\nmilk\n")
    assert "no wagate or winston log lines" in one_line_error(["logs", str(notes)])


def test_asking_for_the_wrong_format_says_so() -> None:
    assert "--format auto" in one_line_error(["logs", "--format", "wagate", str(BLAZZ_LOG)])


def test_bad_since_is_a_one_line_error() -> None:
    assert "--since" in one_line_error(["logs", "--since", "yesterday", str(BLAZZ_LOG)])


def test_nul_padding_and_an_empty_file_are_fine(tmp_path: Path) -> None:
    padded = tmp_path / "rotated.log"
    meta = '{"sessionId":"s1","timestamp":"2026-01-01T00:00:00Z"}'
    padded.write_bytes(b"\0" * 70_000 + f"info: Creating WhatsApp session {meta}\n".encode())
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    data = doctor_json(str(empty), str(padded))
    assert data["attempts"] == 1 and data["outcomes"] == {"unknown": 1}
