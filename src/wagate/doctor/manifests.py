"""Dependency files: what each one declares and, where it can tell, which version is installed.

package.json declares npm ranges; package-lock.json (lockfile v1 to v3) resolves them, nested
copies included; requirements*.txt and pyproject.toml declare PEP 508 requirements, and an exact
pin (``==1.2.3``) is taken as the installed version since nothing else says which one is.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from packaging.requirements import InvalidRequirement, Requirement

from wagate.doctor import DoctorError

Ecosystem = Literal["npm", "pypi"]

NPM_ENGINES = frozenset(
    {"whatsapp-web.js", "@whiskeysockets/baileys", "baileys", "@adiwajshing/baileys", "puppeteer"}
)
PYPI_ENGINES = frozenset({"neonize"})


@dataclass(frozen=True, slots=True)
class Declared:
    """An engine named in a manifest, with the range as written there."""

    package: str  # the real package name (an npm alias is resolved to what it installs)
    ecosystem: Ecosystem
    spec: str
    file: str
    pinned: str | None = None  # the one version an exact pin allows


@dataclass(frozen=True, slots=True)
class Resolved:
    """An installed version, from a lockfile."""

    package: str
    ecosystem: Ecosystem
    version: str
    file: str
    where: str  # the lockfile path of the copy, e.g. node_modules/a/node_modules/puppeteer


def is_manifest(path: Path) -> bool:
    name = path.name
    return name in ("package.json", "package-lock.json", "pyproject.toml") or bool(
        re.fullmatch(r"requirements.*\.txt", name)
    )


def read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DoctorError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if b"\0" in data:
        raise DoctorError(f"{path} is not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DoctorError(f"{path} is not UTF-8 text (byte {exc.start})") from exc


def _json(path: Path) -> Mapping[str, Any]:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DoctorError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(data, dict):
        raise DoctorError(f"{path}: expected a JSON object at the top level")
    return data


_ALIAS = re.compile(r"^npm:(@?[^@\s]+)@(.*)$")


def package_json(path: Path) -> Iterator[Declared]:
    data = _json(path)
    for section in ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies"):
        deps = data.get(section) or {}
        if not isinstance(deps, dict):
            raise DoctorError(f"{path}: {section} is not an object")
        for name, spec in deps.items():
            spec = str(spec)
            alias = _ALIAS.match(spec)
            real, spec = (alias.group(1), alias.group(2)) if alias else (name, spec)
            if real in NPM_ENGINES:
                yield Declared(real, "npm", spec, str(path))


def package_lock(path: Path) -> Iterator[Resolved]:
    data = _json(path)
    packages = data.get("packages")
    if isinstance(packages, dict):  # lockfile v2 and v3
        for where, entry in packages.items():
            if not where or not isinstance(entry, dict) or "version" not in entry:
                continue
            name = str(entry.get("name") or where.rsplit("node_modules/", 1)[-1])
            if name in NPM_ENGINES:
                yield Resolved(name, "npm", str(entry["version"]), str(path), where)
        return
    yield from _lock_v1(path, data.get("dependencies") or {}, "node_modules")


def _lock_v1(path: Path, deps: Mapping[str, Any], prefix: str) -> Iterator[Resolved]:
    for name, entry in deps.items():
        if not isinstance(entry, dict):
            continue
        where = f"{prefix}/{name}"
        version = str(entry.get("version", ""))
        alias = _ALIAS.match(version)
        real, version = (alias.group(1), alias.group(2)) if alias else (name, version)
        if real in NPM_ENGINES and version:
            yield Resolved(real, "npm", version, str(path), where)
        yield from _lock_v1(path, entry.get("dependencies") or {}, f"{where}/node_modules")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(line: str, path: Path) -> Declared | None:
    try:
        req = Requirement(line)
    except InvalidRequirement:
        return None  # options (-r, -e, --hash), URLs and the like name no engine version
    name = _normalise(req.name)
    if name not in PYPI_ENGINES:
        return None
    pins = [s.version for s in req.specifier if s.operator in ("==", "===")]
    pinned = pins[0] if len(pins) == 1 and "*" not in pins[0] else None
    return Declared(name, "pypi", str(req.specifier) or "*", str(path), pinned)


def requirements_txt(path: Path) -> Iterator[Declared]:
    for raw in read_text(path).splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            found = _requirement(line, path)
            if found:
                yield found


def pyproject(path: Path) -> Iterator[Declared]:
    try:
        data = tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise DoctorError(f"{path}: invalid TOML: {exc}") from exc
    project = data.get("project") or {}
    lists = [project.get("dependencies") or []]
    lists += list((project.get("optional-dependencies") or {}).values())
    lists += list((data.get("dependency-groups") or {}).values())
    for items in lists:
        for item in items if isinstance(items, list) else []:
            found = _requirement(item, path) if isinstance(item, str) else None
            if found:
                yield found
    poetry = ((data.get("tool") or {}).get("poetry") or {}).get("dependencies") or {}
    for name, spec in poetry.items():
        if _normalise(name) in PYPI_ENGINES:
            text = spec.get("version", "*") if isinstance(spec, dict) else str(spec)
            found = _requirement(f"{name}{'==' + text if text[:1].isdigit() else text}", path)
            yield found or Declared(_normalise(name), "pypi", text, str(path))


def read(path: Path) -> tuple[list[Declared], list[Resolved]]:
    """Everything one dependency file says about WhatsApp engines."""
    name = path.name
    if name == "package-lock.json":
        return [], list(package_lock(path))
    if name == "package.json":
        return list(package_json(path)), []
    if name == "pyproject.toml":
        return list(pyproject(path)), []
    return list(requirements_txt(path)), []
