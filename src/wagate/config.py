"""Settings, read from the environment with the prefix ``WAGATE_`` (DESIGN §10)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from wagate.core.rates import Rate, parse_rate

ADMIN_KEY_MIN = 32
EngineName = Literal["sim", "whatsmeow"]
AuthStoreName = Literal["db", "file", "redis"]
LogFormat = Literal["text", "json"]
# Parsed from text such as "10/h"; NoDecode keeps pydantic-settings from reading it as JSON.
RateSetting = Annotated[Rate, NoDecode, BeforeValidator(parse_rate)]


def default_node_name() -> str:
    """``<hostname>-<pid>``: unique per process on a machine, readable in ``cluster status``."""
    return f"{socket.gethostname()}-{os.getpid()}"[:100]


class Settings(BaseSettings):
    """Every knob of the gateway; defaults start on SQLite with nothing else installed."""

    # Errors never echo a value back: it may be a key.
    model_config = SettingsConfigDict(
        env_prefix="WAGATE_", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = "sqlite+aiosqlite:///./wagate.db"
    # The real engine; without its extra, `serve` stops and says how to install it (README,
    # "Engines") — never a silent fallback to the simulator.
    engine: EngineName = "whatsmeow"
    auth_store: AuthStoreName = "db"
    redis_url: str | None = None
    data_dir: Path = Path("./wagate-data")
    admin_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    sim_time_scale: float = Field(default=1.0, gt=0)
    # A shared `wagate sim-server` (engine sim only); without it the simulator runs in-process.
    sim_url: str | None = None
    restore_concurrency: int = Field(default=32, ge=1)
    webhook_max_attempts: int = Field(default=15, ge=1)
    webhook_retry_min_seconds: float = Field(default=1.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0)
    # Webhook requests in flight at once (one per account at a time, in `seq` order).
    webhook_concurrency: int = Field(default=64, ge=1, le=1024)
    # Webhooks to loopback, private, link-local and other non-public addresses (off: a tenant
    # must not reach the gateway's own network; on for receivers on that network).
    webhook_allow_private: bool = False
    # Link attempts allowed: "10/h", "5/min", "30/s", "20/15min", or "off" (wagate.core.rates).
    link_rate_per_account: RateSetting = Rate(10, 3600)
    link_rate_per_workspace: RateSetting = Rate(100, 3600)
    log_format: LogFormat = "text"
    log_level: str = "INFO"
    # whatsmeow engine: host subprocesses, and how long a dial may take before the attempt
    # ends `failed` with reason `connect_timeout` (a dial to a silent host blocks 60 s).
    engine_hosts: int = Field(default=2, ge=1, le=64)
    engine_connect_timeout: float = Field(default=30.0, gt=0)
    # Attempts whose engine session has been silent this long are closed by the sweeper.
    attempt_silence_seconds: float = Field(default=300.0, gt=0)
    # This process's name in the cluster (DESIGN §13): unique among the nodes of one database.
    node_name: str = Field(default_factory=default_node_name, min_length=1, max_length=100)
    # Where the other nodes reach this node's API (default: http://HOST:PORT, the hostname when
    # HOST listens on every address).
    node_url: str | None = None
    # Session lease time-to-live; renewed every third of it.
    lease_seconds: float = Field(default=15.0, ge=1.0, le=3600.0)

    @field_validator("admin_key")
    @classmethod
    def _admin_key_is_strong(cls, value: SecretStr | None) -> SecretStr | None:
        # The admin key opens every workspace: a short or blank one is refused at start.
        text = value.get_secret_value() if value is not None else ""
        if value is not None and (len(text) < ADMIN_KEY_MIN or any(c.isspace() for c in text)):
            raise ValueError(
                f"WAGATE_ADMIN_KEY must be at least {ADMIN_KEY_MIN} characters with no whitespace "
                "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @field_validator(
        "admin_key", "secret_key", "redis_url", "node_name", "node_url", "sim_url", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An empty variable (WAGATE_ADMIN_KEY=) means "not set", never an empty secret.
        return None if value == "" else value
