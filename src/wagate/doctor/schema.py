"""``wagate doctor schema``: the live schema against the one wagate's migrations build.

Both sides are brought to one comparable shape per table (``TableShape``): columns by type family
and nullability, the primary key, unique keys, plain indexes, foreign keys and check constraints,
keyed by name. The expected side is ``wagate.db.models.Base.metadata`` as the connected backend
stores it (a test upgrades a fresh database on every backend and finds no difference, which is
what makes the metadata a faithful stand-in for the migrations' head).

Backend quirks that are not drift: MySQL reports a unique constraint as a unique index too and
adds an index named after each foreign key that no other index serves; PostgreSQL reports the
index behind each unique constraint; MariaDB stores JSON as LONGTEXT and booleans as TINYINT.
Unique constraints and unique indexes are therefore one kind here, a *unique key*.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Dialect,
    ForeignKeyConstraint,
    Inspector,
    Table,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.types import TypeEngine

# Checked from the most to the least specific: Enum is a String, Boolean and Text are not
# told apart from their bases by the backends that lack them.
_FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("enum", ("Enum",)),
    ("boolean", ("Boolean",)),
    ("integer", ("Integer",)),
    ("numeric", ("Numeric",)),
    ("datetime", ("DateTime",)),
    ("date", ("Date",)),
    ("time", ("Time",)),
    ("interval", ("Interval",)),
    ("binary", ("_Binary",)),
    ("json", ("JSON",)),
    ("uuid", ("Uuid",)),
    ("string", ("String",)),
)
_NO_ACTION = {None, "", "NO ACTION", "RESTRICT"}
VERSION_TABLE = "alembic_version"


@dataclass(frozen=True)
class Finding:
    """One thing the doctor found: what kind, in which table, which object, and the facts."""

    kind: str
    table: str
    name: str
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "table": self.table, "name": self.name, "detail": self.detail}


def type_family(type_: TypeEngine[Any]) -> str:
    """``VARCHAR(36)``, ``TEXT``, ``LONGTEXT`` → ``string``; ``BIGINT`` → ``integer``; ..."""
    bases = {cls.__name__ for cls in type(type_).__mro__}
    for family, names in _FAMILIES:
        if bases.intersection(names):
            return family
    return type(type_).__name__.lower()


@dataclass(frozen=True)
class ColumnShape:
    family: str
    nullable: bool
    generated: bool


@dataclass(frozen=True)
class ForeignKeyShape:
    columns: tuple[str, ...]
    target: str
    ondelete: str
    onupdate: str

    def __str__(self) -> str:
        return (
            f"({', '.join(self.columns)}) → {self.target}"
            f" ON DELETE {self.ondelete} ON UPDATE {self.onupdate}"
        )


@dataclass
class TableShape:
    """What the comparison looks at in one table; keys are constraint and index names."""

    columns: dict[str, ColumnShape] = field(default_factory=dict)
    primary_key: tuple[str, ...] = ()
    unique_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    indexes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    foreign_keys: dict[str, ForeignKeyShape] = field(default_factory=dict)
    checks: set[str] = field(default_factory=set)


def _action(value: str | None) -> str:
    text = value.upper() if value else None
    return "NO ACTION" if text in _NO_ACTION else str(text)


def _stored_family(family: str, dialect: Dialect) -> str:
    if dialect.name == "mysql":
        if family == "boolean":
            return "integer"
        if family == "json" and getattr(dialect, "is_mariadb", False):
            return "string"
    return family


def _columns(names: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(name if name is not None else "<expression>" for name in names)


def _named(name: str | None, columns: tuple[str, ...]) -> str:
    """Unnamed keys (SQLite's inline ``UNIQUE (a, b)``) go by their columns."""
    return name if name else f"({', '.join(columns)})"


def expected_shape(table: Table, dialect: Dialect) -> TableShape:
    """The shape the migrations give ``table`` on ``dialect``'s backend."""
    shape = TableShape()
    for column in table.columns:
        stored = column.type.dialect_impl(dialect)
        if isinstance(stored, TypeDecorator):
            stored = stored.load_dialect_impl(dialect)
        family = _stored_family(type_family(stored), dialect)
        shape.columns[column.name] = ColumnShape(
            family, bool(column.nullable), column.computed is not None
        )
    shape.primary_key = tuple(c.name for c in table.primary_key.columns)
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            cols = tuple(c.name for c in constraint.columns)
            shape.unique_keys[_named(str(constraint.name or ""), cols)] = cols
        elif isinstance(constraint, ForeignKeyConstraint):
            cols = tuple(constraint.column_keys)
            referred = ", ".join(e.column.name for e in constraint.elements)
            target = f"{constraint.referred_table.name}({referred})"
            shape.foreign_keys[_named(str(constraint.name or ""), cols)] = ForeignKeyShape(
                cols, target, _action(constraint.ondelete), _action(constraint.onupdate)
            )
        elif isinstance(constraint, CheckConstraint) and constraint.name:
            shape.checks.add(str(constraint.name))
    for index in table.indexes:
        cols = _columns(getattr(c, "name", None) for c in index.expressions)
        target_map = shape.unique_keys if index.unique else shape.indexes
        target_map[_named(str(index.name or ""), cols)] = cols
    return shape


def live_shape(inspector: Inspector, table: str) -> TableShape:
    """The shape of ``table`` as the database reports it, with the quirks above folded away."""
    shape = TableShape()
    for column in inspector.get_columns(table):
        shape.columns[column["name"]] = ColumnShape(
            type_family(column["type"]), bool(column["nullable"]), "computed" in column
        )
    shape.primary_key = tuple(inspector.get_pk_constraint(table)["constrained_columns"])
    for fk in inspector.get_foreign_keys(table):
        cols = tuple(fk["constrained_columns"])
        options = fk.get("options", {})
        shape.foreign_keys[_named(fk["name"], cols)] = ForeignKeyShape(
            cols,
            f"{fk['referred_table']}({', '.join(fk['referred_columns'])})",
            _action(options.get("ondelete")),
            _action(options.get("onupdate")),
        )
    for unique in inspector.get_unique_constraints(table):
        cols = _columns(unique["column_names"])
        shape.unique_keys[_named(unique["name"], cols)] = cols
    mysql = inspector.dialect.name == "mysql"
    for index in inspector.get_indexes(table):
        cols = _columns(index["column_names"])
        name = _named(index["name"], cols)
        owner = shape.foreign_keys.get(name)
        # MySQL's implicit index for a foreign key carries the constraint's name.
        implicit = mysql and owner is not None and owner.columns == cols
        if index["unique"]:
            shape.unique_keys.setdefault(name, cols)
        elif not implicit:
            shape.indexes[name] = cols
    for check in inspector.get_check_constraints(table):
        # MariaDB's own json_valid() check on a JSON column is named after the column.
        if check["name"] and check["name"] not in shape.columns:
            shape.checks.add(check["name"])
    return shape


def _cols(columns: tuple[str, ...]) -> str:
    return f"({', '.join(columns)})"


def _diff_columns(table: str, want: TableShape, have: TableShape) -> list[Finding]:
    found: list[Finding] = []
    for name, col in want.columns.items():
        live = have.columns.get(name)
        if live is None:
            found.append(Finding("missing_column", table, name, f"expected {col.family}"))
            continue
        if live.family != col.family:
            found.append(
                Finding("column_type", table, name, f"expected {col.family}, found {live.family}")
            )
        if live.nullable != col.nullable:
            want_null = "NULL" if col.nullable else "NOT NULL"
            have_null = "NULL" if live.nullable else "NOT NULL"
            found.append(
                Finding("column_nullable", table, name, f"expected {want_null}, found {have_null}")
            )
        if live.generated != col.generated:
            want_gen = "a generated" if col.generated else "a plain"
            have_gen = "a generated" if live.generated else "a plain"
            found.append(
                Finding("column_generated", table, name, f"expected {want_gen}, found {have_gen}")
            )
    found.extend(
        Finding("extra_column", table, name, f"{col.family}, not in wagate's migrations")
        for name, col in have.columns.items()
        if name not in want.columns
    )
    return found


def _diff_named(
    kind: str, table: str, want: dict[str, Any], have: dict[str, Any], show: Any = str
) -> list[Finding]:
    """Missing, extra and different entries of one name → definition map."""
    found = [
        Finding(f"missing_{kind}", table, name, f"{show(value)}, in wagate's migrations")
        for name, value in want.items()
        if name not in have
    ]
    found += [
        Finding(f"extra_{kind}", table, name, f"{show(value)}, not in wagate's migrations")
        for name, value in have.items()
        if name not in want
    ]
    found += [
        Finding(f"{kind}_differs", table, name, f"expected {show(value)}, found {show(have[name])}")
        for name, value in want.items()
        if name in have and have[name] != value
    ]
    return found


def diff_table(table: str, want: TableShape, have: TableShape) -> list[Finding]:
    """Every difference between the expected and the live shape of one table."""
    found = _diff_columns(table, want, have)
    if want.primary_key != have.primary_key:
        found.append(
            Finding(
                "primary_key_differs",
                table,
                "PRIMARY KEY",
                f"expected {_cols(want.primary_key)}, found {_cols(have.primary_key)}",
            )
        )
    found += _diff_named("unique_key", table, want.unique_keys, have.unique_keys, _cols)
    found += _diff_named("index", table, want.indexes, have.indexes, _cols)
    found += _diff_named("foreign_key", table, want.foreign_keys, have.foreign_keys)
    found += _diff_named(
        "check",
        table,
        dict.fromkeys(want.checks, "CHECK constraint"),
        dict.fromkeys(have.checks, "CHECK constraint"),
    )
    return found


def diff_schema(expected: dict[str, TableShape], inspector: Inspector) -> list[Finding]:
    """Tables missing from, extra in, or different in the live database."""
    live_tables = set(inspector.get_table_names()) - {VERSION_TABLE}
    found = [
        Finding("missing_table", name, name, "created by wagate's migrations, absent here")
        for name in sorted(expected.keys() - live_tables)
    ]
    found += [
        Finding("extra_table", name, name, "not in wagate's migrations")
        for name in sorted(live_tables - expected.keys())
    ]
    for name in sorted(expected.keys() & live_tables):
        found += diff_table(name, expected[name], live_shape(inspector, name))
    return found
