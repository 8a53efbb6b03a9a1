import pytest
from pydantic import ValidationError

from core.settings import Settings


def test_secret_is_generated_once_and_shared(tmp_path) -> None:
    first = Settings.load(data_dir=tmp_path, secret_key=None)
    second = Settings.load(data_dir=tmp_path, secret_key=None)
    assert first.secret_key and first.secret_key == second.secret_key
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_configured_secret_wins(tmp_path) -> None:
    assert Settings.load(data_dir=tmp_path, secret_key="given").secret_key == "given"
    assert not (tmp_path / "secret_key").exists()


def test_environment_is_read_with_the_prefix(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CLICKTRAIL_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1")
    monkeypatch.setenv("CLICKTRAIL_CLICKHOUSE_URL", "clickhouse://u:p@h:9000/analytics")
    settings = Settings.load(data_dir=tmp_path)
    assert settings.trusted_proxies == ["10.0.0.0/8", "192.168.1.1"]
    assert settings.clickhouse_database == "analytics"
    assert settings.admin_token is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trusted_proxies", "not-a-cidr"),
        ("redis_prefix", "a b"),
        ("default_click_param", "ct_click\n"),
        ("default_click_param", "ct click"),
        ("default_click_param", "ct_click\r"),
        # read as the default server with the text as a database name, `migrate` created it there
        ("clickhouse_url", "notaurl"),
        ("clickhouse_url", "http://127.0.0.1:8123/db"),
        ("clickhouse_url", "clickhouse:///db"),
        ("redis_url", "notaurl"),
        ("redis_url", "http://127.0.0.1:6379/0"),
        ("redis_url", "redis://127.0.0.1:abc/0"),
        ("redis_url", "redis://127.0.0.1:7001,127.0.0.1:x/0"),
        ("clickhouse_url", "clickhouse://default:@127.0.0.1:abc/db"),
        ("clickhouse_url", "clickhouse://default:@127.0.0.1:0/db"),
    ],
)
def test_bad_settings_fail_at_start(monkeypatch, tmp_path, field, value) -> None:
    monkeypatch.setenv(f"CLICKTRAIL_{field.upper()}", value)
    with pytest.raises(ValidationError):
        Settings.load(data_dir=tmp_path)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (False, 0, 6)),
        ({"CLICKTRAIL_REDIS_CLUSTER": "true", "CLICKTRAIL_REDIS_MIN_REPLICAS_ACKED": "1"}, (True, 1, 6)),
        ({"CLICKTRAIL_REDIS_CLUSTER": "1", "CLICKTRAIL_REDIS_CLICK_SHARDS": "12"}, (True, 0, 12)),
    ],
)
def test_cluster_settings(monkeypatch, tmp_path, env, expected) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.load(data_dir=tmp_path)
    assert (
        settings.redis_cluster,
        settings.redis_min_replicas_acked,
        settings.redis_click_shards,
    ) == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [("redis_min_replicas_acked", "-1"), ("redis_click_shards", "0"), ("redis_click_shards", "1025")],
)
def test_bad_cluster_settings_fail_at_start(monkeypatch, tmp_path, field, value) -> None:
    monkeypatch.setenv(f"CLICKTRAIL_{field.upper()}", value)
    with pytest.raises(ValidationError):
        Settings.load(data_dir=tmp_path)


@pytest.mark.parametrize("value", ["1000000", "0", ""])
def test_a_replaced_variable_stops_the_start(monkeypatch, tmp_path, value) -> None:
    """An operator's CLICKTRAIL_LINK_CACHE_SIZE (now sized in bytes) is refused, never silently ignored."""
    monkeypatch.setenv("CLICKTRAIL_LINK_CACHE_SIZE", value)
    with pytest.raises(ValueError, match="CLICKTRAIL_LINK_CACHE_BYTES"):
        Settings.load(data_dir=tmp_path)


def _text_fields() -> list[str]:
    """Every setting read as text (str, optional str, a list of str), found from the model, not listed."""
    return sorted(
        name
        for name, info in Settings.model_fields.items()
        if "str" in str(info.annotation) and name != "data_dir"
    )


# A valid value of each text setting, the bytes that are not UTF-8 then appended to it.
VALID_TEXT = {
    "redis_url": "redis://127.0.0.1:6379/0",
    "clickhouse_url": "clickhouse://default:@127.0.0.1:9000/db",
    "trusted_proxies": "10.0.0.0/8",
    "clickhouse_alt_hosts": "127.0.0.1:9001",
    "redis_prefix": "ct:",
    "default_click_param": "ct_click",
}


def test_the_text_settings_are_found() -> None:
    assert {"public_url", "admin_token", "secret_key", "redis_url", "trusted_proxies"} <= set(_text_fields())


@pytest.mark.parametrize("field", _text_fields())
@pytest.mark.parametrize("bad", ["\udcff", "\udc80x", "a\udcc3"])  # surrogateescape: U+DC80-U+DCFF
def test_a_text_setting_that_is_not_utf8_stops_the_start(monkeypatch, tmp_path, field, bad) -> None:
    """The environment is read with surrogateescape: bytes that are not UTF-8 arrive as lone surrogates,
    which failed far from the setting (a 500 on every link answer for public_url, after the link was
    stored; a start-up traceback for admin_token)."""
    monkeypatch.setenv(f"CLICKTRAIL_{field.upper()}", VALID_TEXT.get(field, "text") + bad)
    with pytest.raises(ValidationError, match=field):
        Settings.load(data_dir=tmp_path)
