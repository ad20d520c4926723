"""``wagate doctor deps``: versions declared and resolved, known problems, unreadable input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from wagate.doctor.cli import app
from wagate.doctor.deps import check, load_known_issues
from wagate.doctor.semver import (
    parse_pep440,
    parse_pep440_version,
    parse_range,
    parse_version,
    pep440_intervals,
)

BLAZZ = Path(__file__).parents[1] / "fixtures" / "blazz"


def deps(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["deps", *args])
    return result.exit_code, result.stdout, result.stderr


def deps_json(path: Path, expect: int = 0) -> dict[str, Any]:
    code, out, err = deps("--json", str(path))
    assert code == expect, (code, out, err)
    data: dict[str, Any] = json.loads(out)
    return data


def engine(data: dict[str, Any], package: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [e for e in data["engines"] if e["package"] == package]
    assert len(found) == 1
    return found[0]


def problems(found: dict[str, Any], how: str) -> set[str]:
    return {p["id"] for p in found["problems"] if p["matched"] == how}


def test_blazz_declares_caret_1_33_2_and_installs_1_33_2() -> None:
    data = deps_json(BLAZZ)
    wwebjs = engine(data, "whatsapp-web.js")
    assert [d["spec"] for d in wwebjs["declared"]] == ["^1.33.2"]
    assert [r["version"] for r in wwebjs["resolved"]] == ["1.33.2"]
    # 1.33.2 itself carries none of the known problems; a fresh install under ^1.33.2 could
    # pick 1.33.3 to 1.34.1 (disconnections) or 1.34.3 (no QR code at all).
    assert problems(wwebjs, "resolved") == set()
    assert problems(wwebjs, "declared") == {
        "wwebjs-lid-migration-disconnects",
        "wwebjs-auth-timeout-no-qr",
    }
    puppeteer = engine(data, "puppeteer")
    assert puppeteer["declared"] == []
    assert puppeteer["resolved"][0]["version"] == "18.2.1"
    assert (
        puppeteer["resolved"][0]["where"] == "node_modules/whatsapp-web.js/node_modules/puppeteer"
    )
    assert data["affected"] is False


def test_blazz_table_for_people() -> None:
    code, out, _ = deps(str(BLAZZ))
    assert code == 0
    assert "whatsapp-web.js" in out and "^1.33.2" in out and "1.33.2 (installed)" in out
    assert "https://github.com/wwebjs/whatsapp-web.js/pull/5666" in out


def write(tmp_path: Path, name: str, content: str | dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_an_installed_affected_version_fails_the_check(tmp_path: Path) -> None:
    write(tmp_path, "package.json", {"dependencies": {"whatsapp-web.js": "~1.34.0"}})
    lock = {
        "lockfileVersion": 3,
        "packages": {
            "": {"dependencies": {"whatsapp-web.js": "~1.34.0"}},
            "node_modules/whatsapp-web.js": {"version": "1.34.3"},
        },
    }
    write(tmp_path, "package-lock.json", lock)
    data = deps_json(tmp_path, expect=1)
    assert problems(engine(data, "whatsapp-web.js"), "resolved") == {"wwebjs-auth-timeout-no-qr"}
    code, out, _ = deps(str(tmp_path))
    assert code == 1 and "1.34.3 is affected" in out


def test_an_npm_alias_is_matched_under_the_package_it_installs(tmp_path: Path) -> None:
    alias = "npm:@whiskeysockets/baileys@6.7.16"
    write(tmp_path, "package.json", {"dependencies": {"baileys": alias}})
    lock = {
        "lockfileVersion": 1,
        "dependencies": {"baileys": {"version": alias}},
    }
    write(tmp_path, "package-lock.json", lock)
    data = deps_json(tmp_path, expect=1)
    found = engine(data, "@whiskeysockets/baileys")
    assert [r["version"] for r in found["resolved"]] == ["6.7.16"]
    assert problems(found, "resolved") == {
        "baileys-pairing-code-platform-id",
        "baileys-outdated-web-version-405",
    }


def test_baileys_release_candidates_compare_as_npm_does(tmp_path: Path) -> None:
    write(tmp_path, "package.json", {"dependencies": {"baileys": "7.0.0-rc.9"}})
    found = engine(deps_json(tmp_path), "baileys")
    assert problems(found, "declared") == {"baileys-outdated-web-version-405"}
    write(tmp_path, "package.json", {"dependencies": {"baileys": "7.0.0-rc11"}})
    assert engine(deps_json(tmp_path), "baileys")["problems"] == []


@pytest.mark.parametrize(
    ("line", "expect", "how"),
    [
        ("neonize==0.3.15.post0", 1, "resolved"),
        ("neonize>=0.3.10", 0, "declared"),
        ("neonize>=0.3.16", 0, None),
        ("neonize==0.3.16.post0", 0, None),
    ],
)
def test_requirements_naming_neonize(
    tmp_path: Path, line: str, expect: int, how: str | None
) -> None:
    write(
        tmp_path, "requirements.txt", f"# engines\nfastapi>=0.115\n{line}  # pinned\n-r base.txt\n"
    )
    data = deps_json(tmp_path, expect=expect)
    found = engine(data, "neonize")
    assert found["declared"][0]["spec"] == line.removeprefix("neonize")
    expected = {"neonize-client-outdated-405"} if how else set()
    assert {p["id"] for p in found["problems"]} == expected
    assert all(p["matched"] == how for p in found["problems"])


def test_pyproject_naming_neonize(tmp_path: Path) -> None:
    write(
        tmp_path,
        "pyproject.toml",
        '[project]\nname = "bot"\ndependencies = ["neonize==0.3.12", "httpx"]\n',
    )
    data = deps_json(tmp_path, expect=1)
    found = engine(data, "neonize")
    assert found["resolved"] == [
        {"version": "0.3.12", "file": str(tmp_path / "pyproject.toml"), "where": "pinned"}
    ]
    assert problems(found, "resolved") == {"neonize-client-outdated-405"}


def test_a_single_file_can_be_named(tmp_path: Path) -> None:
    path = write(tmp_path, "requirements-prod.txt", "neonize~=0.4.0\n")
    data = deps_json(path)
    assert engine(data, "neonize")["problems"] == []
    assert data["files"] == [str(path)]


def test_no_engine_at_all_is_not_an_error(tmp_path: Path) -> None:
    write(tmp_path, "package.json", {"dependencies": {"express": "^4.18.2"}})
    assert deps_json(tmp_path)["engines"] == []


def one_line_error(path: Path) -> str:
    code, out, err = deps(str(path))
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_missing_path(tmp_path: Path) -> None:
    assert "does not exist" in one_line_error(tmp_path / "nowhere")


def test_directory_without_dependency_files(tmp_path: Path) -> None:
    write(tmp_path, "README.md", "# hello")
    assert "holds no package.json" in one_line_error(tmp_path)


def test_malformed_package_json(tmp_path: Path) -> None:
    write(tmp_path, "package.json", '{"dependencies": {"whatsapp-web.js": "^1.33.2",}}')
    assert "invalid JSON at line 1" in one_line_error(tmp_path)


def test_binary_junk_named_package_lock(tmp_path: Path) -> None:
    (tmp_path / "package-lock.json").write_bytes(bytes(range(256)))
    assert "not a text file" in one_line_error(tmp_path)


def test_unknown_file_name(tmp_path: Path) -> None:
    assert "is not a package.json" in one_line_error(write(tmp_path, "deps.yaml", "a: 1"))


def test_every_known_issue_is_sourced_and_parses() -> None:
    issues = load_known_issues()
    assert len({i.id for i in issues}) == len(issues) >= 5
    for issue in issues:
        assert issue.source.startswith("https://github.com/")
        assert len(issue.checked) > 80 and issue.summary
        if issue.ecosystem == "npm":
            parse_range(issue.affected)
            if issue.fixed_in:  # the fix is outside the range it fixes
                assert not parse_range(issue.affected).satisfied_by(parse_version(issue.fixed_in))
        else:
            fixed = parse_pep440_version(issue.fixed_in or "0")
            assert not parse_pep440(issue.affected).contains(fixed, prereleases=True)


@pytest.mark.parametrize(
    ("spec", "version", "inside"),
    [
        ("^1.33.2", "1.33.2", True),
        ("^1.33.2", "1.99.0", True),
        ("^1.33.2", "2.0.0", False),
        ("^1.33.2", "1.34.0-alpha.1", False),  # npm keeps prereleases out unless named
        ("^0.2.3", "0.2.9", True),
        ("^0.2.3", "0.3.0", False),
        ("^0.0.3", "0.0.4", False),
        ("~1.2", "1.2.9", True),
        ("~1.2", "1.3.0", False),
        (">1.2", "1.2.9", False),
        ("<=1.2", "1.2.9", True),
        ("1.x || >=2.5.0 || 5.0.0 - 7.2.3", "6.0.0", True),
        ("1.x || >=2.5.0 || 5.0.0 - 7.2.3", "2.4.0", False),
        (">= 1.33.3 < 1.34.2", "1.34.1", True),
        ("<7.0.0-rc10", "7.0.0-rc.9", True),
        ("<7.0.0-rc10", "7.0.0-rc11", False),
        ("<7.0.0-rc10", "6.7.23", True),
        ("*", "3.0.0", True),
    ],
)
def test_npm_ranges(spec: str, version: str, inside: bool) -> None:
    assert parse_range(spec).satisfied_by(parse_version(version)) is inside


@pytest.mark.parametrize(
    ("declared", "affected", "overlap"),
    [
        ("^1.33.2", "<1.33.2", False),
        ("^1.33.2", "1.34.3", True),
        ("~1.33.2", ">=1.33.3 <1.34.2", True),
        ("1.33.2", ">=1.33.3 <1.34.2", False),
    ],
)
def test_npm_range_overlap(declared: str, affected: str, overlap: bool) -> None:
    pairs = [
        (a, b) for a in parse_range(declared).intervals() for b in parse_range(affected).intervals()
    ]
    assert any(a.overlaps(b) for a, b in pairs) is overlap


@pytest.mark.parametrize(
    ("declared", "overlap"),
    [(">=0.3.10", True), ("~=0.3.10", True), ("==0.4.*", False), (">=0.3.16", False)],
)
def test_pep440_overlap(declared: str, overlap: bool) -> None:
    (mine,) = pep440_intervals(parse_pep440(declared))
    (theirs,) = pep440_intervals(parse_pep440("<0.3.16"))
    assert mine.overlaps(theirs) is overlap


def test_check_accepts_its_own_issue_list(tmp_path: Path) -> None:
    write(tmp_path, "requirements.txt", "neonize==1.0.0\n")
    custom = {
        "issues": [
            {
                "id": "made-up",
                "ecosystem": "pypi",
                "packages": ["neonize"],
                "affected": "<2",
                "summary": "s",
                "source": "https://github.com/x/y/issues/1",
                "checked": "c",
            }
        ]
    }
    report = check(tmp_path, load_known_issues(json.dumps(custom)))
    assert report.affected
