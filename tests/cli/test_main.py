"""The ``wagate`` command line, run the way a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wagate.cli.main import app


def wagate(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "wagate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_demo_links_a_phone_and_prints_the_funnel() -> None:
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "scanned code #1: linked" in result.output
    assert "account is connected" in result.output
    assert "link funnel of this run" in result.output
    assert "▀" in result.output or "█" in result.output  # the QR, drawn in the terminal


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = wagate("db", "upgrade", env={"WAGATE_DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    assert "database at revision" in result.stderr
    again = wagate("db", "upgrade", env={"WAGATE_DATABASE_URL": url})
    assert again.returncode == 0, again.stderr


def test_db_upgrade_reports_an_unreachable_database() -> None:
    result = wagate(
        "db", "upgrade", env={"WAGATE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    )
    assert result.returncode == 2
    assert "could not upgrade the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_rejects_bad_settings_clearly(tmp_path: Path) -> None:
    result = wagate("serve", "--engine", "carrier-pigeon", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "wagate.db").exists()


def test_serve_prints_a_new_admin_key_once_and_never_logs_it(tmp_path: Path) -> None:
    import json
    import re

    import httpx

    from tests.serve import Server

    def first_start_output(server: Server) -> str:
        server.start()
        server.terminate()
        assert server.log is not None
        return server.log.read_text()

    server = Server(
        f"sqlite:///{tmp_path / 'k.db'}", tmp_path / "data", env={"WAGATE_ADMIN_KEY": ""}
    )
    try:
        output = first_start_output(server)
        [key] = re.findall(r"^\s+(wg_\S+)$", output, flags=re.MULTILINE)
        for line in output.splitlines():
            if line.startswith("{"):
                assert key not in line, json.loads(line)
        server.start()
        r = httpx.post(
            f"{server.url}/v1/workspaces",
            json={"name": "x"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert r.status_code == 201, r.text
        server.terminate()
        assert server.log is not None and key not in server.log.read_text()  # second start
    finally:
        server.stop()


def test_serve_without_the_whatsmeow_extra_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hint names the extra whole: rich once read ``[whatsmeow]`` as markup and dropped it."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "neonize" else real(name, *a)
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WAGATE_ENGINE", "whatsmeow")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "pip install 'wagate[whatsmeow]'" in result.output
    assert "--engine sim" in result.output


@pytest.mark.parametrize("key", ["x", "k3y-" * 7, " " * 40, "a" * 20 + " " + "b" * 20])
def test_serve_refuses_a_weak_admin_key_without_echoing_it(tmp_path: Path, key: str) -> None:
    result = wagate("serve", "--engine", "sim", env={"WAGATE_ADMIN_KEY": key}, cwd=tmp_path)
    assert result.returncode == 2
    assert "WAGATE_ADMIN_KEY must be at least 32 characters with no whitespace" in result.stderr
    assert "Traceback" not in result.stderr
    if len(key.strip()) > 3:  # long enough to recognise
        assert key.strip() not in result.stderr
    assert not (tmp_path / "wagate.db").exists()
