"""The service's configuration: read once from the environment, validated at start-up, passed in.

A missing or malformed variable stops start-up with a message that names it, rather than
surfacing as a confusing failure on the first message.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_REPLY_MAX_TOKENS = 1024


class ConfigurationError(Exception):
    """The environment does not describe a runnable service; the message says what to fix."""


class Settings(BaseSettings):
    # Empty variables count as unset, so a copied .env.example with blanks starts.
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True, env_ignore_empty=True)

    app_env: Literal["development", "production", "test"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] | None = None  # json in production, console otherwise

    supabase_url: str
    supabase_service_role_key: SecretStr
    supabase_anon_key: SecretStr
    supabase_jwt_secret: SecretStr | None = None
    jwks_cache_seconds: int = Field(300, ge=0)

    webhook_secret: SecretStr
    webhook_tolerance_seconds: int = Field(300, ge=1, le=300)
    webhook_max_body_bytes: int = Field(256 * 1024, ge=1024)

    openai_api_key: SecretStr
    openai_base_url: str | None = None
    openai_model: str = Field(DEFAULT_OPENAI_MODEL, min_length=1, max_length=100)
    openai_models: str = ""  # comma-separated models a conversation may choose; OPENAI_MODEL is always one
    openai_timeout_seconds: float = Field(45.0, gt=0)
    model_max_attempts: int = Field(3, ge=1, le=10)
    model_retry_initial_seconds: float = Field(0.5, ge=0)
    model_retry_max_seconds: float = Field(10.0, ge=0)
    reply_max_tokens: int = Field(DEFAULT_REPLY_MAX_TOKENS, ge=1)  # sent as max_tokens on every reply's call
    generate_titles: bool = True  # ask the model for a title once a conversation's first turn is answered
    openai_title_model: str | None = Field(None, min_length=1, max_length=100)  # unset: OPENAI_MODEL
    title_max_tokens: int = Field(24, ge=1, le=1000)  # max_tokens of a title's call

    context_token_budget: int = Field(6000, ge=100)
    context_max_messages: int = Field(200, ge=1, le=1000)

    # 32,000 characters in any script, even JSON-escaped as \uXXXX surrogate pairs (12 bytes each).
    api_max_body_bytes: int = Field(512 * 1024, ge=1024)
    request_body_timeout_seconds: float = Field(30.0, gt=0)  # a body still arriving after this is a 408
    chat_reply_timeout_seconds: float = Field(60.0, gt=0)
    chat_poll_interval_seconds: float = Field(0.2, gt=0)
    cors_origins: str = ""  # comma-separated; empty means * in development, required in production

    reply_concurrency: int = Field(512, ge=1, le=10000)  # replies generated at once per process (tasks on one loop)
    reply_queue_size: int = Field(256, ge=0)  # replies that may wait for a slot; beyond that the webhook gets 503
    lease_seconds: int = Field(180, ge=1)
    max_attempts: int = Field(5, ge=1)
    redrive_interval_seconds: float = Field(15.0, ge=0)  # 0 turns the in-process sweep off
    redrive_grace_seconds: int = Field(30, ge=0)

    stream_replies: bool = True  # false: ask the model for whole answers (a provider that cannot stream)
    stream_broadcast_interval_ms: int = Field(150, ge=10, le=5000)  # at most one reply_delta per reply per interval
    stream_read_interval_ms: int = Field(50, ge=0, le=1000)  # after the first token, read the model this often (0: per chunk)
    stream_checkpoint_seconds: float = Field(1.0, gt=0)  # how often a streaming reply's row gets the text so far
    stream_stop_poll_seconds: float = Field(0.25, gt=0, le=1.0)  # how often a process asks which replies were stopped
    stream_sse_heartbeat_seconds: float = Field(15.0, gt=0)  # ": heartbeat" comment on an idle SSE stream

    metrics_token: SecretStr | None = None  # the bearer token /metrics asks of a scraper
    metrics_port: int | None = Field(None, ge=1, le=65535)  # a private listener where /metrics needs no token
    ready_cache_seconds: float = Field(2.0, ge=0)  # /readyz answers from its last check for this long
    prometheus_multiproc_dir: str | None = None  # set by gunicorn.conf.py: the workers' metrics files

    @field_validator("supabase_url", "openai_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("webhook_secret")
    @classmethod
    def _standard_webhook_secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if not secret.startswith("whsec_"):
            raise ValueError("must be a Standard Webhooks secret starting with whsec_")
        try:  # decoded once at start-up, by the webhook door's verifier, as Standard Webhooks does
            key = base64.b64decode(secret.removeprefix("whsec_") + "==")
        except ValueError:
            raise ValueError("must be whsec_ followed by the secret in base64") from None
        if not key:
            raise ValueError("must be whsec_ followed by the secret in base64, not empty")
        return value

    @property
    def allowed_origins(self) -> list[str]:
        origins = [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]
        return origins or (["*"] if self.app_env != "production" else [])

    @property
    def offered_models(self) -> list[str]:
        """The operator's allowlist: OPENAI_MODEL first, then OPENAI_MODELS, each once. The service
        publishes it to the database (configure_chat_models), which refuses any other model when a
        conversation is written."""
        listed = [name.strip() for name in self.openai_models.split(",") if name.strip()]
        return list(dict.fromkeys([self.openai_model, *listed]))

    @property
    def title_model(self) -> str:
        """The model that titles conversations: OPENAI_TITLE_MODEL, or OPENAI_MODEL when unset."""
        return self.openai_title_model or self.openai_model

    @property
    def effective_log_format(self) -> str:
        return self.log_format or ("json" if self.app_env == "production" else "console")

    @property
    def model_lease_budget_seconds(self) -> float:
        """Worst-case time one generation may take with every retry: must fit in the lease."""
        attempts = self.model_max_attempts
        return attempts * self.openai_timeout_seconds + (attempts - 1) * self.model_retry_max_seconds


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from the environment, with `overrides` (lower-case names) taking precedence."""
    try:
        settings = Settings(**dict(overrides or {}))
    except ValidationError as error:
        raise ConfigurationError(_describe(error)) from None
    if settings.app_env == "production" and not settings.allowed_origins:
        raise ConfigurationError(
            "CORS_ORIGINS is not set: in production list the origins allowed to call the API "
            "(comma-separated, e.g. https://app.example.com)."
        )
    if any(len(model) > 100 for model in settings.offered_models):
        raise ConfigurationError("OPENAI_MODELS is invalid: a model name is longer than 100 characters.")
    if settings.lease_seconds < settings.model_lease_budget_seconds:
        raise ConfigurationError(
            f"LEASE_SECONDS={settings.lease_seconds} is shorter than one generation may take with retries "
            f"({settings.model_lease_budget_seconds:.0f} s: MODEL_MAX_ATTEMPTS x OPENAI_TIMEOUT_SECONDS plus the "
            "waits between them, up to MODEL_RETRY_MAX_SECONDS each); a second worker could start on a message "
            "still being answered."
        )
    return settings


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        name = str(item["loc"][0]).upper() if item["loc"] else "configuration"
        if item["type"] == "missing":
            problems.append(f"{name} is not set")
        else:
            problems.append(f"{name} is invalid: {item['msg']}")
    return "Invalid configuration: " + "; ".join(problems) + ". See .env.example for every variable."
