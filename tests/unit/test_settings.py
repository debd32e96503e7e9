"""Start-up refuses a bad environment with a message that names every variable to fix."""

from __future__ import annotations

import pytest

from server.settings import ConfigurationError, load_settings

VALID = {
    "supabase_url": "http://127.0.0.1:54321",
    "supabase_service_role_key": "service-key",
    "supabase_anon_key": "anon-key",
    "webhook_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "openai_api_key": "sk-test",
}


@pytest.fixture(autouse=True)
def _no_service_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*VALID, "openai_base_url", "openai_model", "openai_models", "lease_seconds", "app_env", "log_format",
                 "cors_origins"]:
        monkeypatch.delenv(name.upper(), raising=False)


def test_valid_settings_load_with_defaults() -> None:
    settings = load_settings(VALID)
    assert settings.openai_model == "gpt-4o-mini"
    assert settings.effective_log_format == "console"
    production = load_settings({**VALID, "app_env": "production", "cors_origins": "https://app.example"})
    assert production.effective_log_format == "json"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in VALID.items():
        monkeypatch.setenv(name.upper(), value)
    monkeypatch.setenv("OPENAI_MODEL", "llama3")
    assert load_settings().openai_model == "llama3"


def test_every_missing_variable_is_named() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings({})
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_ANON_KEY", "WEBHOOK_SECRET", "OPENAI_API_KEY"):
        assert f"{name} is not set" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("supabase_url", "localhost:54321", "SUPABASE_URL is invalid"),
        ("webhook_secret", "plain-secret", "WEBHOOK_SECRET is invalid"),
        ("reply_concurrency", "many", "REPLY_CONCURRENCY is invalid"),
        ("openai_timeout_seconds", "-1", "OPENAI_TIMEOUT_SECONDS is invalid"),
    ],
)
def test_malformed_variable_is_named(name: str, value: str, named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        load_settings({**VALID, name: value})


def test_lease_shorter_than_a_generation_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="LEASE_SECONDS"):
        load_settings({**VALID, "lease_seconds": 10, "openai_timeout_seconds": 30})


def test_secrets_never_appear_in_the_settings_repr() -> None:
    text = repr(load_settings(VALID))
    assert "sk-test" not in text and "MfKQ9r8G" not in text and "service-key" not in text


def test_production_requires_cors_origins() -> None:
    with pytest.raises(ConfigurationError, match="CORS_ORIGINS"):
        load_settings({**VALID, "app_env": "production"})
    settings = load_settings({**VALID, "app_env": "production", "cors_origins": "https://a.example, https://b.example"})
    assert settings.allowed_origins == ["https://a.example", "https://b.example"]
    assert load_settings(VALID).allowed_origins == ["*"]


def test_blank_optional_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in VALID.items():
        monkeypatch.setenv(name.upper(), value)
    for name in ("OPENAI_BASE_URL", "REPLY_MAX_TOKENS", "LOG_FORMAT"):
        monkeypatch.setenv(name, "")
    settings = load_settings()
    assert (settings.openai_base_url, settings.reply_max_tokens, settings.log_format) == (None, 1024, None)


@pytest.mark.parametrize(
    ("overrides", "offered"),
    [
        pytest.param({}, ["gpt-4o-mini"], id="default-model-only"),
        pytest.param({"openai_models": "gpt-4o, gpt-4o-mini ,"}, ["gpt-4o-mini", "gpt-4o"], id="listed-plus-default"),
        pytest.param({"openai_model": "llama3", "openai_models": "qwen2"}, ["llama3", "qwen2"], id="default-first"),
    ],
)
def test_model_allowlist_always_offers_the_default(overrides: dict[str, str], offered: list[str]) -> None:
    assert load_settings({**VALID, **overrides}).offered_models == offered


def test_overlong_model_name_in_the_allowlist_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_MODELS"):
        load_settings({**VALID, "openai_models": "x" * 101})
