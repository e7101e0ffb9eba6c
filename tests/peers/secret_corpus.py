"""The secret corpus: credentials in the formats applications leak, one distinct value each.

Shared by ``secrets_app.py`` (which puts every value in every place an event or span can carry
text) and ``tests/test_privacy_corpus.py`` (which counts each value in the bytes that reached the
receiver and the local log: it must be 0). Every value is fake but has the real format (the card
number passes the Luhn check, the JWT decodes, the AWS key has the AKIA prefix and length).

``SECRETS`` maps a pattern name to the value the app leaks; ``TEXTS`` to the text it is leaked
in (a log line, an exception message) when that differs from the bare value.
"""

from __future__ import annotations

__all__ = ["PII", "SECRETS", "TEXTS", "URL_SECRETS", "text_of"]

_PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKjMzEfYyjiWA4R4"

#: pattern name -> the secret value (what must never appear in the output)
SECRETS: dict[str, str] = {
    "query_token": "qtok4c1b9e7f2a6d",
    "query_api_key": "qkey8e2f1a9c7b3d",
    "query_password": "qpwd5b7e9c2a1f4e",
    "kv_password": "kvpw0d9c8b7a6f5e",
    "kv_secret_json": "jsec3a5c7e9b1d2f",
    "openai_key": "sk-live-4f8a2c9e1b7d3f6a0c5e8b2d",
    "aws_access_key": "AKIAIOSFODNN7QXZRT2P",
    "aws_secret_key": "wJalrXUtnFEMIK7MDENGbPxRfiCYQXZRT2PKEY9",
    "github_token": "ghp_R8a2Xk9vQ4m7Lp1Zt6Wn3Bc5Yd0Fh2Jg4Ks6",
    "github_pat": "github_pat_11ABCDEFG0aB1cD2eF3gH4_iJ5kL6mN7oP8qR9sT0uV1wX2yZ3",
    "slack_token": "xoxb-2417362819-5738291047362-Qz8Rk2Vb7Nm4Lp9Xc3Wt",
    "slack_webhook": "https://hooks.slack.com/services/T0A1B2C3D/B4E5F6G7H/z9Y8x7W6v5U4t3S2r1Q0",
    "stripe_key": "sk_live_51Hq8ZbL4mN2vX7cR9tY3pK6w",
    "google_api_key": "AIzaSyB7xQ2m9Lk4Vn8Rt1Zc6Wp3Yd5Fh0Jg2Ks",
    "jwt": (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1LTQyIiwibmFtZSI6IldpZGdldCJ9."
        "Xq3v9Lk2Rt7Zc1Wp6Yd4Fh8Jg0Ks5Mn2Bv9Qx7Ly3T"
    ),
    "bearer": "brr7Hq2Lk9Vx4Zc8Wp1Yd6Fh3Jg5",
    "basic": "dXNlcjpiYXNpY3B3ZDlLeDJWbTdR",
    "pem_private_key": _PEM_BODY,
    "postgres_password": "pgpw6Yd4Fh8Jg0Ks",
    "dsn_password": "dsnpw2Bv9Qx7Ly3T",
    "card_number": "4539578763621486",
    "card_number_spaced": "4539 5787 6362 1486",
    "client_secret": "csec9Wp1Yd6Fh3Jg",
    "cookie_session": "sess7Lp1Zt6Wn3Bc",
    "header_api_key": "hkey4Ks6Mn2Bv9Qx",
    "email": "jane.doe+widgets@example.org",
}

#: pattern name -> the text the value is leaked in (free text: log lines, exception messages)
TEXTS: dict[str, str] = {
    "query_token": f"fetching https://hub.local/api/widgets?token={SECRETS['query_token']}&page=2",
    "query_api_key": f"GET /v1/search?q=widgets&api_key={SECRETS['query_api_key']} failed",
    "query_password": f"login at /auth?user=bob&password={SECRETS['query_password']}",
    "kv_password": f"login failed for user=bob password={SECRETS['kv_password']} retrying",
    "kv_secret_json": f'config {{"api_key": "{SECRETS["kv_secret_json"]}", "retries": 3}}',
    "openai_key": f"calling the model with key {SECRETS['openai_key']}",
    "aws_access_key": f"uploading with {SECRETS['aws_access_key']}",
    "aws_secret_key": f"aws_secret_access_key={SECRETS['aws_secret_key']}",
    "github_token": f"cloning with {SECRETS['github_token']}",
    "github_pat": f"cloning with {SECRETS['github_pat']}",
    "slack_token": f"slack said no to {SECRETS['slack_token']}",
    "slack_webhook": f"posting to {SECRETS['slack_webhook']}",
    "stripe_key": f"charging with {SECRETS['stripe_key']}",
    "google_api_key": f"geocoding with {SECRETS['google_api_key']}",
    "jwt": f"session {SECRETS['jwt']} expired",
    "bearer": f"Authorization: Bearer {SECRETS['bearer']}",
    "basic": f"Authorization: Basic {SECRETS['basic']}",
    "pem_private_key": (
        "-----BEGIN PRIVATE KEY-----\n"
        f"{SECRETS['pem_private_key']}\n"
        "cjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvuNMoSfm76oqFvAp8Gy0\n"
        "-----END PRIVATE KEY-----"
    ),
    "postgres_password": (
        f"could not connect to postgres://app:{SECRETS['postgres_password']}@db.local:5432/widgets"
    ),
    "dsn_password": f"redis dsn redis://:{SECRETS['dsn_password']}@cache.local:6379/0",
    "card_number": f"charge declined for card {SECRETS['card_number']}",
    "card_number_spaced": f"charge declined for card {SECRETS['card_number_spaced']}",
    "client_secret": f"client_secret={SECRETS['client_secret']}",
    "cookie_session": f"Cookie: session_id={SECRETS['cookie_session']}",
    "header_api_key": f"X-Api-Key: {SECRETS['header_api_key']}",
    "email": f"notifying {SECRETS['email']}",
}

#: pattern names whose value the client also sends in the request's query string
URL_SECRETS = {"query_token": "token", "query_api_key": "api_key", "query_password": "password"}

#: pattern names that are personal data, not credentials (sent only with PII allowed)
PII = frozenset({"email"})


def text_of(name: str) -> str:
    """The free text that leaks pattern ``name``."""
    return TEXTS.get(name, f"value {SECRETS[name]}")
