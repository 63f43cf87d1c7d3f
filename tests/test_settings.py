import subprocess
import sys

import pytest

from gateway.settings import Secret, SettingsError, documented_settings, load_settings


def test_defaults_load_and_are_frozen():
    s = load_settings(env={})
    assert s.http_port == 8080
    assert s.embedded_postgres and s.embedded_redis
    with pytest.raises(AttributeError):
        s.http_port = 1  # type: ignore[misc]


def test_environment_overrides_with_types():
    s = load_settings(env={"CG_HTTP_PORT": "9000", "CG_ACCESS_LOG": "false",
                           "CG_DATABASE_URL": "postgresql://u:pw@h/db",
                           "CG_SOURCES__CTI__API_KEYS": "k1,k2"})
    assert s.http_port == 9000 and s.access_log is False
    assert not s.embedded_postgres
    assert [k.get() for k in s.sources["cti"].api_keys] == ["k1", "k2"]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CG_HTTP_PORT": "eighty"}, "http_port"),
        ({"CG_HTTP_PORT": "70000"}, "http_port"),
        ({"CG_NO_SUCH_THING": "1"}, "no_such_thing"),
        ({"CG_LOG_FORMAT": "xml"}, "log_format"),
        ({"CG_SOURCES__CTI__AUTH": "magic"}, "sources.cti.auth"),
        ({"CG_SOURCES__CTI__COLOUR": "red"}, "sources.cti.colour"),
        ({"CG_SOURCES__X__AUTH": "webhook", "CG_SOURCES__X__WEBHOOK_SECRETS": "nope"}, "sources.x.webhook_secrets"),
        ({"CG_IDENTITY_HMAC_KEYS": ""}, "identity_hmac_keys"),
    ],
)
def test_bad_setting_names_the_key(env, named):
    with pytest.raises(SettingsError, match=named):
        load_settings(env=env)


def test_secrets_hidden_from_repr():
    s = load_settings(env={"CG_DATABASE_URL": "postgresql://user:hunter2@db/x",
                           "CG_SESSION_SECRET": "topsecret"})
    text = repr(s)
    assert "hunter2" not in text and "topsecret" not in text
    assert "dev-cti-key" not in text
    assert repr(Secret("x")) == "Secret('**********')"


def test_secret_not_echoed_in_error():
    with pytest.raises(SettingsError) as info:
        load_settings(env={}, session_secret=12345)
    assert "12345" not in str(info.value)


def test_cli_stops_with_message_naming_setting(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gateway", "migrate"], capture_output=True, text=True,
                          env={"CG_HTTP_PORT": "not-a-port", "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 2
    assert "http_port" in proc.stderr


def test_every_setting_documented_in_readme():
    from gateway.settings import PROJECT_ROOT

    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    for name, doc in documented_settings().items():
        assert doc, f"setting {name} has no doc metadata"
        assert f"`{name}`" in readme, f"setting {name} is not documented in README.md"
