"""config.settings: defaults, every HWQ_* variable, bad values naming their variable, hwq.toml."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path
from typing import Any

import pytest

from config.settings import (
    DEFAULT_KEY_PREFIX,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_QUEUE_CAP,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    MAX_COMMAND_TIMEOUT_S,
    Settings,
    load_settings,
)
from tasks.errors import ConfigError, HwqError
from worker_host.program_limits import ProgramLimits


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test where no hwq.toml lies around: load_settings looks in the working folder."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def _write_toml(tmp_path: Path, text: str, name: str = "custom.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults ------------------------------------------------------------------------------------


def test_defaults_serve_one_machine() -> None:
    settings = load_settings(environ={})
    assert settings.home == Path("./var")
    assert settings.redis_url is None
    assert settings.database_url is None
    assert settings.key_prefix == DEFAULT_KEY_PREFIX == "hwq"
    assert settings.api_host == "127.0.0.1"
    assert settings.api_port == 8000
    assert settings.api_threads == 64
    assert settings.flower_port == 5555
    assert settings.flower_auth is None
    assert settings.hostname == socket.gethostname().split(".")[0]
    assert settings.max_body_bytes == DEFAULT_MAX_BODY_BYTES
    assert settings.queue_cap == DEFAULT_QUEUE_CAP
    assert settings.visibility_timeout_s == DEFAULT_VISIBILITY_TIMEOUT_S
    assert settings.log_level == "INFO"
    assert settings.log_json is False
    assert settings.pin_cpu is False


def test_defaults_match_the_dataclass() -> None:
    assert load_settings(environ={}) == Settings()


def test_default_database_is_sqlite_under_home(tmp_path: Path) -> None:
    settings = load_settings(environ={"HWQ_HOME": str(tmp_path / "home")})
    assert settings.sqlalchemy_url == f"sqlite:///{(tmp_path / 'home' / 'hwq.db').resolve()}"


def test_relative_home_gives_an_absolute_sqlite_path() -> None:
    url = load_settings(environ={}).sqlalchemy_url
    assert url.startswith("sqlite:////")
    assert url.endswith("/var/hwq.db")


def test_database_url_wins_over_the_sqlite_default() -> None:
    url = "postgresql+psycopg://hwq:hwq@postgres:5432/hwq"
    assert load_settings(environ={"HWQ_DATABASE_URL": url}).sqlalchemy_url == url


def test_visibility_timeout_outlasts_the_longest_command() -> None:
    # A message not acked within the visibility timeout is delivered again (DESIGN.md §2).
    assert DEFAULT_VISIBILITY_TIMEOUT_S > MAX_COMMAND_TIMEOUT_S


def test_broker_url_without_redis_names_the_variable() -> None:
    settings = load_settings(environ={})
    with pytest.raises(ConfigError, match="HWQ_REDIS_URL"):
        _ = settings.broker_url


def test_broker_url_is_the_redis_url() -> None:
    settings = load_settings(environ={"HWQ_REDIS_URL": "redis://localhost:6379/0"})
    assert settings.broker_url == "redis://localhost:6379/0"


@pytest.mark.parametrize(
    ("redis_url", "celery_url"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("rediss://:pw@redis.lab:6380/1", "rediss://:pw@redis.lab:6380/1"),
        ("unix:///run/redis.sock", "redis+socket:///run/redis.sock"),
        ("unix:///run/redis.sock?db=3", "redis+socket:///run/redis.sock?virtual_host=3"),
    ],
)
def test_celery_gets_the_redis_url_in_kombus_spelling(redis_url: str, celery_url: str) -> None:
    settings = load_settings(environ={"HWQ_REDIS_URL": redis_url})
    assert settings.broker_url == redis_url
    assert settings.celery_broker_url == celery_url


# --- every variable ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "raw", "attribute", "expected"),
    [
        ("HWQ_HOME", "/srv/hwq", "home", Path("/srv/hwq")),
        ("HWQ_REDIS_URL", "redis://redis:6379/0", "redis_url", "redis://redis:6379/0"),
        (
            "HWQ_REDIS_URL",
            "rediss://:pw@r.example:6380/1",
            "redis_url",
            "rediss://:pw@r.example:6380/1",
        ),
        ("HWQ_REDIS_URL", "unix:///run/redis.sock", "redis_url", "unix:///run/redis.sock"),
        (
            "HWQ_DATABASE_URL",
            "postgresql+psycopg://hwq:hwq@postgres:5432/hwq",
            "database_url",
            "postgresql+psycopg://hwq:hwq@postgres:5432/hwq",
        ),
        ("HWQ_DATABASE_URL", "sqlite:////tmp/x.db", "database_url", "sqlite:////tmp/x.db"),
        ("HWQ_KEY_PREFIX", "test-42", "key_prefix", "test-42"),
        ("HWQ_API_HOST", "0.0.0.0", "api_host", "0.0.0.0"),
        ("HWQ_API_PORT", "9000", "api_port", 9000),
        ("HWQ_API_PORT", "1", "api_port", 1),
        ("HWQ_API_PORT", "65535", "api_port", 65535),
        ("HWQ_API_THREADS", "8", "api_threads", 8),
        ("HWQ_FLOWER_PORT", "5566", "flower_port", 5566),
        ("HWQ_GATEWAY_PORT", "3300", "gateway_port", 3300),
        ("HWQ_FLOWER_AUTH", "admin:secret", "flower_auth", "admin:secret"),
        ("HWQ_HOSTNAME", "bench-pi", "hostname", "bench-pi"),
        ("HWQ_MAX_BODY_BYTES", "2048", "max_body_bytes", 2048),
        ("HWQ_BODY_TIMEOUT_S", "2.5", "body_timeout_s", 2.5),
        ("HWQ_MAX_WAITS", "50", "max_waits", 50),
        ("HWQ_MAX_WAITS_PER_TOKEN", "5", "max_waits_per_token", 5),
        ("HWQ_MAX_STREAMS", "4", "max_streams", 4),
        ("HWQ_MAX_STREAMS_PER_TOKEN", "3", "max_streams_per_token", 3),
        ("HWQ_QUEUE_CAP", "10", "queue_cap", 10),
        ("HWQ_VISIBILITY_TIMEOUT_S", "7200", "visibility_timeout_s", 7200),
        ("HWQ_LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
        ("HWQ_LOG_LEVEL", "warning", "log_level", "WARNING"),
        ("HWQ_LOG_JSON", "true", "log_json", True),
        ("HWQ_LOG_JSON", "1", "log_json", True),
        ("HWQ_LOG_JSON", "YES", "log_json", True),
        ("HWQ_LOG_JSON", "on", "log_json", True),
        ("HWQ_LOG_JSON", "false", "log_json", False),
        ("HWQ_LOG_JSON", "0", "log_json", False),
        ("HWQ_LOG_JSON", "no", "log_json", False),
        ("HWQ_LOG_JSON", "Off", "log_json", False),
        ("HWQ_PIN_CPU", "true", "pin_cpu", True),
        ("HWQ_METRICS", "true", "metrics", True),
    ],
)
def test_each_variable_is_parsed(variable: str, raw: str, attribute: str, expected: Any) -> None:
    settings = load_settings(environ={variable: raw})
    assert getattr(settings, attribute) == expected
    assert type(getattr(settings, attribute)) is type(expected)


def test_every_field_has_a_variable() -> None:
    # Each Settings field is read from HWQ_<FIELD>; a field no variable can set is a mistake.
    environ = {
        "HWQ_HOME": "/h",
        "HWQ_REDIS_URL": "redis://r:1/0",
        "HWQ_DATABASE_URL": "sqlite:////d.db",
        "HWQ_KEY_PREFIX": "p",
        "HWQ_API_HOST": "h",
        "HWQ_API_PORT": "1",
        "HWQ_API_THREADS": "2",
        "HWQ_FLOWER_PORT": "3",
        "HWQ_FLOWER_AUTH": "u:p",
        "HWQ_GATEWAY_PORT": "3001",
        "HWQ_HOSTNAME": "n",
        "HWQ_MAX_BODY_BYTES": "4",
        "HWQ_BODY_TIMEOUT_S": "4.5",
        "HWQ_MAX_WAITS": "9",
        "HWQ_MAX_WAITS_PER_TOKEN": "8",
        "HWQ_MAX_STREAMS": "7",
        "HWQ_MAX_STREAMS_PER_TOKEN": "6",
        "HWQ_QUEUE_CAP": "5",
        "HWQ_VISIBILITY_TIMEOUT_S": "601",
        "HWQ_LEASE_GRACE_S": "7.5",
        "HWQ_ANALYSIS_TIMEOUT_S": "2.5",
        "HWQ_SQLITE_LOCK_TIMEOUT_S": "0.5",
        "HWQ_LOG_LEVEL": "ERROR",
        "HWQ_LOG_JSON": "true",
        "HWQ_PIN_CPU": "yes",
        "HWQ_ALLOW_PYTHON": "true",
        "HWQ_PROGRAM_MEMORY_MB": "100",
        "HWQ_PROGRAM_FILE_MB": "2",
        "HWQ_PROGRAM_MAX_PROCESSES": "3",
        "HWQ_PROGRAM_MAX_OPEN_FILES": "20",
        "HWQ_PROGRAM_WORKDIR_MB": "4",
        "HWQ_PROGRAM_OUTPUT_KIB": "5",
        "HWQ_PROGRAM_USER": "daemon",
        "HWQ_PROGRAM_HIDDEN_PATHS": "/srv/keys,/opt/lab",
        "HWQ_METRICS": "on",
    }
    assert {f"HWQ_{f.name.upper()}" for f in dataclasses.fields(Settings)} == set(environ)
    settings = load_settings(environ=environ)
    defaults = Settings()
    for spec in dataclasses.fields(Settings):
        assert getattr(settings, spec.name) != getattr(defaults, spec.name), spec.name


def test_empty_variable_means_unset() -> None:
    settings = load_settings(environ={"HWQ_API_PORT": "", "HWQ_REDIS_URL": "", "HWQ_LOG_JSON": ""})
    assert settings.api_port == 8000
    assert settings.redis_url is None
    assert settings.log_json is False


def test_other_hwq_variables_are_ignored() -> None:
    # HWQ_URL and HWQ_TOKEN belong to the client commands, not to these settings.
    environ = {"HWQ_URL": "http://127.0.0.1:8000", "HWQ_TOKEN": "t", "HWQ_SOMETHING": "x"}
    assert load_settings(environ=environ) == Settings()


def test_environ_argument_is_used_instead_of_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HWQ_API_PORT", "abc")
    assert load_settings(environ={}).api_port == 8000


# --- bad values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("HWQ_API_PORT", "abc"),
        ("HWQ_API_PORT", "0"),
        ("HWQ_API_PORT", "65536"),
        ("HWQ_API_PORT", "-1"),
        ("HWQ_API_PORT", "80.5"),
        ("HWQ_FLOWER_PORT", "flower"),
        ("HWQ_FLOWER_PORT", "70000"),
        ("HWQ_GATEWAY_PORT", "0"),
        ("HWQ_API_THREADS", "0"),
        ("HWQ_API_THREADS", "many"),
        ("HWQ_MAX_BODY_BYTES", "-5"),
        ("HWQ_MAX_BODY_BYTES", "1MB"),
        ("HWQ_QUEUE_CAP", "0"),
        ("HWQ_BODY_TIMEOUT_S", "0"),
        ("HWQ_MAX_WAITS", "0"),
        ("HWQ_MAX_WAITS_PER_TOKEN", "many"),
        ("HWQ_MAX_STREAMS_PER_TOKEN", "0"),
        ("HWQ_VISIBILITY_TIMEOUT_S", "-1"),
        ("HWQ_REDIS_URL", "http://x"),
        ("HWQ_REDIS_URL", "localhost:6379"),
        ("HWQ_DATABASE_URL", "mysql://hwq@db/hwq"),
        ("HWQ_DATABASE_URL", "hwq.db"),
        ("HWQ_LOG_LEVEL", "LOUD"),
        ("HWQ_LOG_LEVEL", "TRACE"),
        ("HWQ_LOG_JSON", "maybe"),
        ("HWQ_LOG_JSON", "2"),
        ("HWQ_PIN_CPU", "sometimes"),
        ("HWQ_METRICS", "maybe"),
        ("HWQ_SQLITE_LOCK_TIMEOUT_S", "0"),
        ("HWQ_SQLITE_LOCK_TIMEOUT_S", "forever"),
    ],
)
def test_bad_value_names_its_variable(variable: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(environ={variable: raw})


def test_config_error_is_an_hwq_error() -> None:
    with pytest.raises(HwqError):
        load_settings(environ={"HWQ_API_PORT": "abc"})


def test_bad_database_url_does_not_echo_credentials() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"HWQ_DATABASE_URL": "mysql://hwq:s3cret@db/hwq"})
    assert "HWQ_DATABASE_URL" in str(caught.value)
    assert "s3cret" not in str(caught.value)


# --- hwq.toml ------------------------------------------------------------------------------------


def test_toml_named_by_hwq_config_is_loaded(tmp_path: Path) -> None:
    path = _write_toml(
        tmp_path,
        '[hwq]\napi_port = 9100\nlog_json = true\nlog_level = "debug"\nhome = "/srv/hwq"\n'
        'redis_url = "redis://toml:6379/2"\n',
    )
    settings = load_settings(environ={"HWQ_CONFIG": str(path)})
    assert settings.api_port == 9100
    assert settings.log_json is True
    assert settings.log_level == "DEBUG"
    assert settings.home == Path("/srv/hwq")
    assert settings.redis_url == "redis://toml:6379/2"
    assert settings.flower_port == 5555


def test_toml_without_a_section_is_loaded(tmp_path: Path) -> None:
    path = _write_toml(tmp_path, "queue_cap = 7\nlog_json = false\n")
    settings = load_settings(environ={"HWQ_CONFIG": str(path)})
    assert settings.queue_cap == 7
    assert settings.log_json is False


def test_hwq_toml_in_the_working_folder_is_loaded(workdir: Path) -> None:
    (workdir / "hwq.toml").write_text("[hwq]\nqueue_cap = 3\n", encoding="utf-8")
    assert load_settings(environ={}).queue_cap == 3


def test_environment_wins_over_toml(tmp_path: Path) -> None:
    path = _write_toml(tmp_path, "[hwq]\napi_port = 9100\nqueue_cap = 7\n")
    settings = load_settings(environ={"HWQ_CONFIG": str(path), "HWQ_API_PORT": "9200"})
    assert settings.api_port == 9200
    assert settings.queue_cap == 7


def test_unknown_toml_key_is_rejected(tmp_path: Path) -> None:
    path = _write_toml(tmp_path, "[hwq]\napi_port = 9100\napi_prot = 9101\n")
    with pytest.raises(ConfigError, match="api_prot"):
        load_settings(environ={"HWQ_CONFIG": str(path)})


def test_bad_toml_value_names_file_and_key(tmp_path: Path) -> None:
    path = _write_toml(tmp_path, '[hwq]\napi_port = "abc"\n')
    with pytest.raises(ConfigError, match="api_port") as caught:
        load_settings(environ={"HWQ_CONFIG": str(path)})
    assert str(path) in str(caught.value)


def test_bad_toml_value_overridden_by_a_good_variable(tmp_path: Path) -> None:
    # The environment replaces the toml value before parsing, so the bad one is never read.
    path = _write_toml(tmp_path, '[hwq]\napi_port = "abc"\n')
    assert load_settings(environ={"HWQ_CONFIG": str(path), "HWQ_API_PORT": "8001"}).api_port == 8001


def test_invalid_toml_syntax_is_a_config_error(tmp_path: Path) -> None:
    path = _write_toml(tmp_path, "[hwq\napi_port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(environ={"HWQ_CONFIG": str(path)})


def test_missing_hwq_config_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HWQ_CONFIG"):
        load_settings(environ={"HWQ_CONFIG": str(tmp_path / "absent.toml")})


# --- the settings object -------------------------------------------------------------------------


def test_settings_are_frozen() -> None:
    settings = load_settings(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.api_port = 1  # type: ignore[misc]


def test_with_overrides_returns_a_changed_copy() -> None:
    settings = load_settings(environ={})
    changed = settings.with_overrides(redis_url="redis://127.0.0.1:7000/0", api_port=8123)
    assert changed.redis_url == "redis://127.0.0.1:7000/0"
    assert changed.api_port == 8123
    assert settings.redis_url is None
    assert settings.api_port == 8000


def test_a_visibility_timeout_shorter_than_a_command_is_refused() -> None:
    with pytest.raises(ConfigError, match="HWQ_VISIBILITY_TIMEOUT_S"):
        load_settings(environ={"HWQ_VISIBILITY_TIMEOUT_S": "100"})


def test_program_limits_come_from_the_program_settings() -> None:
    settings = load_settings(
        environ={"HWQ_HOME": "/srv/hwq", "HWQ_PROGRAM_MEMORY_MB": "100",
                 "HWQ_PROGRAM_HIDDEN_PATHS": "/opt/lab, /srv/keys"}
    )  # fmt: skip
    limits = ProgramLimits.from_settings(settings)
    assert limits.memory_bytes == 100 * 1024 * 1024
    assert {"/srv/hwq", "/opt/lab", "/srv/keys", "/etc"} <= set(limits.hidden_paths)
    with pytest.raises(ConfigError, match="HWQ_PROGRAM_MAX_PROCESSES"):
        load_settings(environ={"HWQ_PROGRAM_MAX_PROCESSES": "0"})
