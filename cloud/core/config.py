"""Settings of the cloud application, from the environment (prefix ``VOLTSTACK_``).

Strategy: one small pydantic-settings class read once by the app factory
(`cloud.app.create_app`) and the CLI; nothing else reads the environment.
Every field has a default that runs the embedded single-machine install
(SQLite files under ``./var``), so `make demo` needs no configuration, and
production overrides them with ``VOLTSTACK_*`` variables (docs/api.md lists
them). Secrets are `SecretStr`: they never show in a repr or a log.

Invariant: outside ``development`` the secret key must not be the
placeholder — a production install started with the development key would
sign sessions anyone can forge, so `Settings` refuses to load and names the
variable to set. The environment itself defaults to ``production``: an
install that forgot to configure itself fails at start, never runs quietly
with forgeable sessions and cookies sent over plain http. Development and
test say so (``VOLTSTACK_ENVIRONMENT=development``; `make demo` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cloud.core.db import DEFAULT_DATABASE_URL

__all__ = ["ENV_PREFIX", "PLACEHOLDER_SECRET_KEY", "Settings"]

ENV_PREFIX = "VOLTSTACK_"
# Recognisable on purpose: it is refused outside development.
PLACEHOLDER_SECRET_KEY = "change-me-development-only"


class Settings(BaseSettings):
    """What the API process needs to know; every field is ``VOLTSTACK_<NAME>``.

    Attributes:
        environment: ``production`` (the default), ``test``, or ``development``
            (placeholder secret allowed, cookies without Secure over http).
        database_url: the operational database (``sqlite:///…`` or ``postgresql://…``).
        timeseries_store: ``sqlite`` (embedded file) or ``influx`` (InfluxDB v1 API).
        timeseries_sqlite_path: the SQLite store's file.
        influx_url, influx_database: the InfluxDB server and database.
        influx_username, influx_password: InfluxDB 1.x credentials, or
        influx_token: a 2.x/3.x token instead.
        broker_url: ``mqtt://host:port``; when set, readiness checks that the
            broker accepts TCP connections. None: not checked.
        secret_key: signs sessions and tokens (issue #8's users module).
        max_request_body_bytes: larger request bodies get 413 before parsing.
        max_points_per_query: the most points one readings query may return.
        public_url: where users reach the console (``https://voltstack.example``):
            the base of the links in invite and password-reset mails — never
            taken from a request's Host header, which a caller chooses.
        smtp_host, smtp_port, smtp_sender, smtp_starttls, smtp_username,
        smtp_password: the mail relay for the outbox (docs/users.md); without
            ``smtp_host`` mails wait in the outbox.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = "production"
    database_url: str = DEFAULT_DATABASE_URL
    timeseries_store: Literal["sqlite", "influx"] = "sqlite"
    timeseries_sqlite_path: Path = Path("var/voltstack-series.sqlite")
    influx_url: str = "http://127.0.0.1:8086"
    influx_database: str = "voltstack"
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_token: SecretStr | None = None
    broker_url: str | None = None
    secret_key: SecretStr = SecretStr(PLACEHOLDER_SECRET_KEY)
    max_request_body_bytes: int = Field(default=1024 * 1024, gt=0)
    max_points_per_query: int = Field(default=10_000, gt=0, le=1_000_000)
    public_url: str = "http://127.0.0.1:8000"
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, gt=0, lt=65536)
    smtp_sender: str = "voltstack@localhost"
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None

    @field_validator("public_url")
    @classmethod
    def _public_url_is_http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"http(s)://host[:port] expected, got {value!r}")
        return value.rstrip("/")

    @field_validator("broker_url")
    @classmethod
    def _broker_is_mqtt(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
            raise ValueError(f"mqtt://host:port or mqtts://host:port expected, got {value!r}")
        return value

    @model_validator(mode="after")
    def _no_placeholder_secret_outside_development(self) -> Settings:
        secret = self.secret_key.get_secret_value()
        if self.environment != "development" and secret in {PLACEHOLDER_SECRET_KEY, ""}:
            raise ValueError(
                f"{ENV_PREFIX}SECRET_KEY is the development placeholder but "
                f"{ENV_PREFIX}ENVIRONMENT is {self.environment!r}: set {ENV_PREFIX}SECRET_KEY "
                "to a random value, e.g. the output of "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if self.environment != "development" and len(secret) < 32:
            raise ValueError(f"{ENV_PREFIX}SECRET_KEY must be at least 32 characters long")
        return self

    @property
    def broker_address(self) -> tuple[str, int] | None:
        """(host, port) of the broker to check for readiness, None when not configured."""
        if self.broker_url is None:
            return None
        parts = urlsplit(self.broker_url)
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        return parts.hostname or "", port
