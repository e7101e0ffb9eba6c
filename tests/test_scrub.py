"""The scrubber's patterns and keys (``widgettrace.exporters._scrub``), one by one.

The end-to-end proof is ``test_privacy_corpus.py``; this file pins each pattern, what must NOT be
filtered (ids, counts, routes, statements), the user's own keys and patterns, and the event walk.
"""

from __future__ import annotations

import pytest
from peers.secret_corpus import SECRETS, text_of

from widgettrace.exporters._scrub import FILTERED, Scrubber, scrub_event, scrubber_for
from widgettrace.instrumentation._config import load_settings


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_each_corpus_pattern_is_filtered_from_free_text(name: str) -> None:
    text = text_of(name)
    scrubbed = Scrubber().text(text)
    assert SECRETS[name] not in scrubbed
    assert FILTERED in scrubbed


def test_email_is_kept_when_pii_is_allowed() -> None:
    assert SECRETS["email"] in Scrubber(send_default_pii=True).text(text_of("email"))


@pytest.mark.parametrize(
    "text",
    [
        "SELECT * FROM widgets WHERE id = $1 AND owner = $2",
        "GET /api/widgets/{widget_id}/convert",
        "gen_ai.usage.input_tokens=512 output_tokens=64",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
        "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
        "order 1234567890123 shipped",  # 13 digits, not Luhn-valid
        "http://127.0.0.1:8000/api/widgets/w-1?page=2&sort=name",
        "converted 3 layers in 12.5 ms",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Scrubber().text(text) == text


def test_card_numbers_need_the_luhn_check() -> None:
    s = Scrubber()
    assert s.text("card 4539578763621486") == f"card {FILTERED}"
    assert s.text("card 4539578763621487") == "card 4539578763621487"


def test_a_pem_block_cut_short_is_still_filtered() -> None:
    text = "key: -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx7..."
    assert "MIIEow" not in Scrubber().text(text)


def test_url_userinfo_and_secret_query_values() -> None:
    s = Scrubber()
    assert s.url("https://bob:pw1@h.local/x?token=t1&page=2") == (
        f"https://{FILTERED}@h.local/x?token={FILTERED}&page=2"
    )
    assert s.text("postgres://app:pw2@db:5432/w") == f"postgres://{FILTERED}@db:5432/w"


def test_keys_decide_first() -> None:
    s = Scrubber()
    data = s.data(
        {
            "http.request.header.authorization": ("Basic abc",),
            "db.password": "x",
            "user.email": "a@b.org",
            "url.full": "https://h/?api_key=k1",
            "gen_ai.usage.input_tokens": 12,
            "widget.note": "AKIAIOSFODNN7QXZRT2P",
        }
    )
    assert data == {
        "http.request.header.authorization": FILTERED,
        "db.password": FILTERED,
        "user.email": FILTERED,
        "url.full": f"https://h/?api_key={FILTERED}",
        "gen_ai.usage.input_tokens": 12,
        "widget.note": FILTERED,
    }


def test_tree_scrubs_nested_frame_variables_like_span_data() -> None:
    s = Scrubber()
    tree = s.tree(
        {
            "attributes": {"http.url": "https://h/x?token=t2", "n": 3},
            "password": "'hunter2'",
            "msg": "'password=hunter3 rejected'",
            "items": ["ok", "sk-live-4f8a2c9e1b7d3f6a0c5e8b2d"],
            "status": "'token=abc123xyz'",
        }
    )
    assert tree == {
        "attributes": {"http.url": f"https://h/x?token={FILTERED}", "n": 3},
        "password": FILTERED,
        "msg": f"'password={FILTERED} rejected'",
        "items": ["ok", FILTERED],
        "status": f"'token={FILTERED}'",
    }


def test_scrub_event_leaves_ids_and_timestamps() -> None:
    event = {
        "event_id": "4539578763621486aa00000000000000",
        "timestamp": 1733400000.5,
        "contexts": {"trace": {"trace_id": "45395787636214860000000000000000", "span_id": "x"}},
        "message": "card 4539578763621486",
        "breadcrumbs": {"values": [{"message": "Bearer abc.def", "timestamp": 1.0}]},
    }
    scrub_event(event, Scrubber())
    assert event["event_id"] == "4539578763621486aa00000000000000"
    assert event["contexts"]["trace"]["trace_id"] == "45395787636214860000000000000000"
    assert event["message"] == f"card {FILTERED}"
    assert event["breadcrumbs"]["values"][0]["message"] == f"Bearer {FILTERED}"


def test_user_keys_and_patterns_from_settings() -> None:
    settings = load_settings(
        {
            "WIDGETTRACE_SCRUB_KEYS": "tenant_ref, ssn",
            "WIDGETTRACE_SCRUB_PATTERNS": r"ACME-\d{6} INT-[A-Z]{4}",
        }
    )
    s = scrubber_for(settings)
    assert s.data({"widget.tenant_ref": "t-1", "patient.ssn": "x", "n": "ok"}) == {
        "widget.tenant_ref": FILTERED,
        "patient.ssn": FILTERED,
        "n": "ok",
    }
    assert s.text("order ACME-123456 via INT-ABCD") == f"order {FILTERED} via {FILTERED}"


def test_a_bad_user_pattern_is_one_line_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings({"WIDGETTRACE_SCRUB_PATTERNS": "ok-[0-9]+ bad-[unclosed"})
    assert settings.scrub_patterns is None
    lines = [
        r.getMessage() for r in caplog.records if "WIDGETTRACE_SCRUB_PATTERNS" in r.getMessage()
    ]
    assert len(lines) == 1 and "not a regular expression" in lines[0]
    scrubber_for(settings).text("anything")  # the safe default really works


def test_json_list_of_patterns() -> None:
    settings = load_settings({"WIDGETTRACE_SCRUB_PATTERNS": '["id \\\\d{3}", "x{2,3}"]'})
    assert scrubber_for(settings).text("user id 123 xxx") == f"user {FILTERED} {FILTERED}"


class _ThreadRecordingScrubber(Scrubber):
    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()

    def text(self, value: str) -> str:
        import threading

        self.threads.add(threading.current_thread().name)
        return super().text(value)


def test_spans_are_scrubbed_on_the_export_thread_only() -> None:
    from test_sentry_support import sentry_pipeline

    scrubber = _ThreadRecordingScrubber()
    with sentry_pipeline(scrubber=scrubber) as p:
        with p.tracer.start_as_current_span("GET /x") as span:
            span.set_attribute("widget.note", "password=hunter2 in a note")
            span.set_attribute("db.statement", "SELECT 1 -- token=abc")
            span.add_event("note", {"detail": "Bearer abc.def"})
        p.flush()
        (tx,) = p.transport.transactions()
    assert scrubber.threads == {"widgettrace-sentry-export"}
    data = tx["contexts"]["trace"]["data"]
    assert data["widget.note"] == f"password={FILTERED} in a note"
    assert data["otel.events"][0]["attributes"]["detail"] == f"Bearer {FILTERED}"


def test_typed_attributes_of_log_and_span_v2_items_keep_their_shape() -> None:
    log = {
        "body": "login failed password=hunter2",
        "trace_id": "4539578763621486aa00000000000000",
        "attributes": {
            "db.password": {"value": "x", "type": "string"},
            "http.url": {"value": "https://h/?token=t", "type": "string"},
            "note": {"value": "Bearer abc", "type": "string"},
            "count": {"value": 3, "type": "integer"},
        },
    }
    scrub_event(log, Scrubber())
    assert log["body"] == f"login failed password={FILTERED}"
    assert log["trace_id"] == "4539578763621486aa00000000000000"
    assert log["attributes"] == {
        "db.password": {"value": FILTERED, "type": "string"},
        "http.url": {"value": f"https://h/?token={FILTERED}", "type": "string"},
        "note": {"value": f"Bearer {FILTERED}", "type": "string"},
        "count": {"value": 3, "type": "integer"},
    }


@pytest.mark.internal_errors_expected
def test_an_event_the_scrubber_fails_on_goes_out_without_its_text(
    monkeypatch: pytest.MonkeyPatch, fail_on_internal_errors: list[BaseException]
) -> None:
    from widgettrace.exporters import sentry as wsentry

    class Broken(Scrubber):
        def event(self, event: dict[str, object]) -> dict[str, object]:
            raise RuntimeError("scrubber bug")

    monkeypatch.setattr(wsentry, "_event_scrubber", Broken())
    event = {
        "event_id": "e1",
        "level": "error",
        "contexts": {"trace": {"trace_id": "t" * 32, "span_id": "s" * 16}},
        "exception": {"values": [{"type": "ValueError", "value": "password=hunter2"}]},
        "breadcrumbs": {"values": [{"message": "token=abc"}]},
    }
    sent = wsentry._scrub_before_send(event, {"widgettrace": True})
    assert sent == {
        "event_id": "e1",
        "level": "error",
        "contexts": {"trace": {"trace_id": "t" * 32, "span_id": "s" * 16}},
        "exception": {"values": [{"type": "ValueError", "value": FILTERED}]},
    }
    assert [str(e) for e in fail_on_internal_errors] == ["scrubber bug"]
