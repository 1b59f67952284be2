"""Configuration from environment variables, validated at start-up.

Every service declares a subclass of :class:`ServiceSettings`. A missing required variable
stops the service with exit code 2 and one line naming it (the original runbook's wording:
``META_WA_ACCESS_TOKEN es requerido``). ``MENSAJERO_ENV=sandbox`` fills safe local defaults so
that ``make run`` works with no accounts; any variable set in the environment still wins.
"""

from __future__ import annotations

import os
import sys
from typing import Any, ClassVar, TypeVar

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values `make run` and the tests use in place of real accounts. They match the sandbox's own
# defaults, so the sandbox accepts the token and signs with the same secret.
SANDBOX_DEFAULTS: dict[str, str] = {
    "META_WA_ACCESS_TOKEN": "sandbox-token",
    "META_WA_PHONE_NUMBER_ID": "100000000000001",
    "META_WA_BUSINESS_ACCOUNT_ID": "200000000000001",
    "META_WA_APP_SECRET": "sandbox-app-secret",
    "META_WA_VERIFY_TOKEN": "sandbox-verify-token",
    "META_GRAPH_URL": "http://127.0.0.1:8090",
    "AGENT_WHATSAPP_NUMBER": "+5491100000000",
    "ERROR_LOG_EMAIL": "errores@example.com",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "SES_ENDPOINT_URL": "http://127.0.0.1:8095",
}


# Meta retries a webhook for up to 7 days: a redelivered event must still find its id.
MIN_RETENTION_DAYS = 8


class SettingsError(Exception):
    """A configuration problem, already phrased for the operator."""


class ServiceSettings(BaseSettings):
    """Settings every service shares. Field names are the environment variable names."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    # Filled by subclasses: the service's name, used for the queue, schema and logs.
    service_name: ClassVar[str] = "mensajero"

    MENSAJERO_ENV: str = "production"
    LOG_FORMAT: str = "text"
    LOG_LEVEL: str = "INFO"
    RABBITMQ_URL: str = "amqp://guest:guest@127.0.0.1:5672/"
    # Prefix of every exchange and queue name: lets several deployments (or test runs) share
    # one broker without seeing each other's messages.
    BUS_PREFIX: str = "mensajero"
    SHUTDOWN_GRACE_SECONDS: float = 10.0
    # How long to wait for RabbitMQ/PostgreSQL at start-up before giving up with a clear error.
    STARTUP_TIMEOUT_SECONDS: float = 20.0
    HTTP_HOST: str = "0.0.0.0"

    @model_validator(mode="before")
    @classmethod
    def _sandbox_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        env = data.get("MENSAJERO_ENV") or os.environ.get("MENSAJERO_ENV", "")
        if env == "sandbox":
            for name, value in SANDBOX_DEFAULTS.items():
                if name in cls.model_fields and not data.get(name):
                    data[name] = value
        return data


class DatabaseSettings(ServiceSettings):
    DATABASE_URL: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    # Schema this service keeps its tables in; defaults to the service name.
    DB_SCHEMA: str = ""
    DB_POOL_SIZE: int = 10
    # How long handled event ids (the inbox), published outbox rows and finished records are
    # kept. At least 8 days: Meta retries a webhook for up to 7, and a redelivered event must
    # still find its id to be recognised as a duplicate.
    RETENTION_DAYS: float = Field(default=30.0, ge=MIN_RETENTION_DAYS)
    RETENTION_INTERVAL_SECONDS: float = Field(default=3600.0, gt=0)

    @property
    def db_schema(self) -> str:
        return self.DB_SCHEMA or self.service_name


S = TypeVar("S", bound=BaseSettings)


def describe_error(error: ValidationError) -> str:
    """One line per problem, naming the variable, in the runbook's wording for missing ones."""
    lines = []
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"]) or "configuración"
        if item["type"] == "missing":
            lines.append(f"{name} es requerido")
        else:
            lines.append(f"{name} is invalid: {item['msg']}")
    return "\n".join(lines)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings, raising :class:`SettingsError` with a readable message when invalid."""
    try:
        return cls(**overrides)
    except ValidationError as error:
        raise SettingsError(describe_error(error)) from None


def load_or_exit(cls: type[S]) -> S:
    """Build settings for a process entry point: on error print the reason and exit 2."""
    try:
        return load_settings(cls)
    except SettingsError as error:
        print(str(error), file=sys.stderr)
        raise SystemExit(2) from None
