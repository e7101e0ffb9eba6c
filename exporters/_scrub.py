"""Scrubbing: what keeps secrets and personal data inside the process, for every sink.

One :class:`Scrubber` per process (:func:`get_scrubber`, built from the settings) is applied to
every text widgettrace sends anywhere: Sentry error and message events (exception values, frame
local variables, breadcrumbs, contexts, tags, request data; through the SDK's ``before_send``),
transactions and their spans (attributes, descriptions, span events; on the span processor's
export thread), the local log and Spotlight (the same envelopes), OTLP spans (a wrapping
exporter on the batch processor's thread) and whatever the other exporters hand it (log items,
span v2 items, browser events). ``docs/privacy.md`` lists exactly what is scrubbed where.

Two ways a value is recognised:

* by its key (attribute, dict key, variable name): keys whose dot/dash-separated segments are
  secret-like (``password``, ``token``, ``api_key``, ``authorization``, ``cookie``, ``session``,
  ``client_secret``... and Sentry's own deny list) become ``[Filtered]``; personal-data keys
  (``email``, ``user.email``, ``client.address``, IP headers) too unless PII is allowed; URL
  keys (``url.full``, ``http.url``, ``http.target``, ``url.query``) lose their userinfo and the
  values of secret-looking query parameters;
* by its content (:meth:`Scrubber.text`, any free text): ``key=value`` / ``key: value`` /
  ``"key": "value"`` pairs with secret-like keys, ``Bearer``/``Basic``/``Token``/``Digest``
  credentials, JWTs, PEM private-key blocks, AWS access keys, GitHub, GitLab, Slack (tokens and
  webhooks), Stripe, OpenAI-style ``sk-`` and Google API keys, npm and PyPI tokens, the userinfo of
  any URL or DSN (``postgres://user:pw@host``), card numbers that pass the Luhn check, and e-mail
  addresses unless PII is allowed.

Users add their own: ``WIDGETTRACE_SCRUB_KEYS`` (more secret key words) and
``WIDGETTRACE_SCRUB_PATTERNS`` (regular expressions whose matches become ``[Filtered]``).

API (small on purpose; call it once per value, on an export thread, never on the app's)::

    from widgettrace.exporters._scrub import get_scrubber, scrub_event
    s = get_scrubber()
    s.text("password=hunter2")          # 'password=[Filtered]'
    s.data({"http.url": "https://h/?token=x"})
    s.tree({"vars": {"password": "x"}})   # any JSON-like value, a scrubbed copy
    scrub_event(event)                    # a Sentry event / log / span payload, in place
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from sentry_sdk.scrubber import DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST

from widgettrace.instrumentation import semconv as sc

__all__ = [
    "FILTERED",
    "SCOPE_FLAG",
    "Scrubber",
    "dumps",
    "get_scrubber",
    "reset_scrubber",
    "scrub_event",
    "scrubber_for",
]

FILTERED = "[Filtered]"

# orjson, not the stdlib encoder: a FastAPI transaction costs ~1 us to encode instead of ~11 us,
# and orjson.Fragment splices already-encoded spans and data in without re-parsing them.
_orjson_dumps = orjson.dumps
_ORJSON_LENIENT = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; anything the encoder refuses becomes its ``str``."""
    try:
        return _orjson_dumps(value)
    except TypeError:
        pass
    try:
        return _orjson_dumps(value, default=str, option=_ORJSON_LENIENT)
    except TypeError:  # an integer beyond 64 bits, for one
        return json.dumps(value, default=str, separators=(",", ":")).encode()


# --- keys -------------------------------------------------------------------------------------

# Key segments (a key split on "." with "-" read as "_") that always hold secrets.
_SECRET_SEGMENTS = frozenset(
    s.lower().replace("-", "_")
    for s in [
        *DEFAULT_DENYLIST,
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "api_token",
        "bearer",
        "client_secret",
        "jwt",
        "passphrase",
        "pwd",
        "x_auth_token",
        "x_api_key",
        "api-key",
        "set_cookie",
        "proxy_authorization",
        "dsn",
        "private_key",
        "secret_key",
        "access_key",
        "signature",
    ]
)
_SECRET_PART = re.compile(
    r"passw|secret|api_?key|private_?key|access_?key|credential|(^|_)token$|^auth|cookie"
)
_PII_KEYS = frozenset(
    {sc.USER_EMAIL, sc.CLIENT_ADDRESS, "enduser.email", "net.peer.ip", "net.sock.peer.addr"}
)
_PII_SEGMENTS = frozenset(
    s.lower().replace("-", "_") for s in [*DEFAULT_PII_DENYLIST, "email", "x_real_ip"]
)
_URL_KEYS = frozenset({sc.URL_FULL, sc.HTTP_URL_OLD, sc.HTTP_TARGET_OLD, "url.query"})

_KEEP, _SECRET, _PII, _URL = 0, 1, 2, 3
#: Flag on a verdict: the key carries scope API data (user, tag, context) for the event.
SCOPE_FLAG = 4
_SCOPE_PREFIXES = ("user.", sc.WIDGET_TAG_PREFIX, sc.WIDGET_CONTEXT_PREFIX)

# --- content ----------------------------------------------------------------------------------

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_CREDENTIAL = re.compile(r"\b(Bearer|Basic|Token|Digest)(\s+)[^\s\"',;]+", re.IGNORECASE)
_SECRET_QUERY = re.compile(
    r"([?&;](?:[^=&;#\s]*(?:passw|secret|token|api_?key|apikey|auth|session|sig|signature|"
    r"credential|code)[^=&;#\s]*)=)[^&;#\s\"']*",
    re.IGNORECASE,
)
# key=value, key: value, "key": "value", 'key': 'value' (also with JSON-escaped quotes, as in a
# payload encoded into a string) with a secret-like key word. No leading
# "[\w.-]*" before the word: that made the regex quadratic (60 us on a short string).
_KEY_VALUE = re.compile(
    r"((?:passw(?:or)?d|passwd|pwd|secret|token(?!s)|api[_-]?key|apikey|access[_-]?key|"
    r"private[_-]?key|authorization|auth[_-]?token|credentials?|session[_-]?id|sessionid|"
    r"signature|cookie|dsn)[\w.-]*)"
    r"(\\?[\"']?\s*[=:]\s*\\?[\"']?)(?!\[Filtered\])([^\s\"'&,;}\]\\]+)",
    re.IGNORECASE,
)
# scheme://userinfo@ (URLs and DSNs): the whole userinfo goes.
_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/\s@\"'<>]+@", re.IGNORECASE)
_PEM = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY"
    r"(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
# Tokens recognisable by their format alone.
_TOKENS = re.compile(
    r"\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*"  # JWT (header.payload.signature)
    r"|\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z0-9]{16}\b"  # AWS key id
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}"  # GitHub
    r"|\bgithub_pat_\w{20,}"
    r"|\bglpat-[\w-]{20,}"  # GitLab
    r"|\bxox[abposre]-[\w-]{10,}"  # Slack token
    r"|hooks\.slack\.com/services/[\w/]+"  # Slack webhook
    r"|\b[rsp]k_(?:live|test)_\w{10,}"  # Stripe
    r"|\bsk-[\w-]{16,}"  # OpenAI / Anthropic style
    r"|\bAIza[\w-]{30,}"  # Google API key
    r"|\bnpm_[A-Za-z0-9]{30,}"  # npm
    r"|\bpypi-[\w-]{40,}"  # PyPI
)
# Pre-checks. Python's re tries every branch of an alternation at every position (a hint
# regex of the words below cost 24 us on a 50-character statement); ``in`` over a tuple of
# literals, run by map() in C, costs about 1 us. Each pattern above starts with one of these.
_CARD_HINT = re.compile(r"\d{4}[ -]?\d{4}[ -]?\d{4}")
_TOKEN_WORDS = (
    "eyJ", "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA", "ABIA", "ACCA",
    "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xox", "hooks.slack.com",
    "k_live_", "k_test_", "sk-", "AIza", "npm_", "pypi-",
)  # fmt: skip
_KEY_WORDS = (
    "passw", "pwd", "secret", "token", "key", "authorization", "credential", "session",
    "signature", "cookie", "dsn",
)  # fmt: skip
_CREDENTIAL_WORDS = ("bearer ", "basic ", "token ", "digest ")


def _any_in(text: Any, words: tuple[Any, ...]) -> bool:
    return any(map(text.__contains__, words))


_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return FILTERED if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)


def _classify_plain(key: str, extra_keys: tuple[str, ...]) -> int:
    if key in _URL_KEYS:
        return _URL
    if key in _PII_KEYS:
        return _PII
    lowered = key.lower().replace("-", "_")
    # Numbers of tokens (gen_ai.usage.input_tokens) are not tokens: segments are matched whole
    # or by the patterns above, which stop at "tokens".
    for raw in lowered.split("."):
        if raw in _SECRET_SEGMENTS or _SECRET_PART.search(raw):
            return _SECRET
        if raw in _PII_SEGMENTS:
            return _PII
    for word in extra_keys:
        if word in lowered:
            return _SECRET
    return _KEEP


def _finite(value: Any) -> Any:
    if type(value) is float and not math.isfinite(value):
        return str(value)  # JSON (and Sentry) have no NaN or infinity
    return value


class Scrubber:
    """Scrubs mappings by key (memoised per key) and text by content (see the module doc)."""

    def __init__(
        self,
        send_default_pii: bool = False,
        *,
        extra_keys: Iterable[str] = (),
        extra_patterns: Iterable[str | re.Pattern[str]] = (),
    ) -> None:
        self.send_default_pii = send_default_pii
        self._extra_keys = tuple(k.strip().lower().replace("-", "_") for k in extra_keys if k)
        self._extra_patterns = tuple(
            re.compile(p) if isinstance(p, str) else p for p in extra_patterns
        )
        self._verdicts: dict[str, int] = {}
        #: recent descriptions and names -> scrubbed (the same query or route recurs)
        self._texts: dict[str, str] = {}
        self._urls: dict[str, str] = {}

    # --- keys ---------------------------------------------------------------------------------

    def verdict(self, key: str) -> int:
        """0 keep, 1 secret, 2 personal data, 3 URL; | :data:`SCOPE_FLAG` for scope API keys."""
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = _classify_plain(key, self._extra_keys)
            if key.startswith(_SCOPE_PREFIXES) or key == sc.CLIENT_ADDRESS:
                verdict |= SCOPE_FLAG
            if len(self._verdicts) < 10000:  # attribute keys are few; never let this grow
                self._verdicts[key] = verdict
        return verdict

    def hides(self, key: str) -> bool:
        """Whether a value under ``key`` is dropped whole (a secret, or PII not allowed)."""
        verdict = self.verdict(key) & 3
        return verdict == _SECRET or (verdict == _PII and not self.send_default_pii)

    # --- content ------------------------------------------------------------------------------

    def text(self, value: str) -> str:
        """``value`` with every credential pattern (and, without PII, emails) filtered."""
        if len(value) < 8:
            return value
        lowered = value.lower()
        keyed = ("=" in value or ":" in value) and _any_in(lowered, _KEY_WORDS)
        tokens = _any_in(value, _TOKEN_WORDS)
        if (
            not keyed
            and not tokens
            and "@" not in value
            and "://" not in value
            and "-----BEGIN" not in value
            and (" " not in value or not _any_in(lowered, _CREDENTIAL_WORDS))
            and _CARD_HINT.search(value) is None
        ):
            # The common case (a route, a statement, a user agent): nothing to find.
            for pattern in self._extra_patterns:
                value = pattern.sub(FILTERED, value)
            return value
        if "-----BEGIN" in value:
            value = _PEM.sub(FILTERED, value)
        if "://" in value:
            if "@" in value:
                value = _USERINFO.sub(r"\1" + FILTERED + "@", value)
            if "?" in value:
                value = _SECRET_QUERY.sub(r"\1" + FILTERED, value)
        if " " in value and _any_in(lowered, _CREDENTIAL_WORDS):
            value = _CREDENTIAL.sub(r"\1\2" + FILTERED, value)
        if keyed:
            value = _KEY_VALUE.sub(r"\1\2" + FILTERED, value)
        if tokens:
            value = _TOKENS.sub(FILTERED, value)
        if _CARD_HINT.search(value):
            value = _CARD.sub(_card, value)
        if not self.send_default_pii and "@" in value:
            value = _EMAIL.sub(FILTERED, value)
        for pattern in self._extra_patterns:
            value = pattern.sub(FILTERED, value)
        return value

    #: The name the span processor used before this module existed.
    value = text

    def text_cached(self, value: str) -> str:
        """:meth:`text`, remembered for strings that recur (span descriptions, names)."""
        hit = self._texts.get(value)
        if hit is None:
            hit = self.text(value)
            if len(self._texts) >= 4096:  # queries and URLs vary without bound: start over
                self._texts.clear()
            self._texts[value] = hit
        return hit

    def url(self, url: str) -> str:
        """A URL without userinfo and secret query values (and everything :meth:`text` finds)."""
        hit = self._urls.get(url)
        if hit is None:
            hit = self.text(_SECRET_QUERY.sub(r"\1" + FILTERED, url) if "?" in url else url)
            if len(self._urls) >= 4096:  # URLs vary without bound: start over
                self._urls.clear()
            self._urls[url] = hit
        return hit

    # --- structures ---------------------------------------------------------------------------

    def data_json(
        self,
        attributes: Mapping[str, Any],
        scope_items: list[tuple[str, Any]] | None = None,
        keys: tuple[str, ...] | None = None,
    ) -> bytes:
        """:meth:`data`, encoded as JSON (``keys``: unused, kept for callers that pass it).

        Every string value is looked at (a token needs no space to be a secret), through a memo:
        the values spans repeat (methods, routes, hosts, statements) cost one lookup.
        """
        if not attributes:
            return b"{}"
        return dumps(self.data(attributes, scope_items))

    def data(
        self,
        attributes: Mapping[str, Any],
        scope_items: list[tuple[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A scrubbed, JSON-ready copy of span attributes (or any flat mapping).

        Scope API attributes (user.*, widget.tag.*, widget.context.*, client.address) are also
        appended, unscrubbed, to ``scope_items`` when given: the event-level mapping decides.
        """
        out: dict[str, Any] = {}
        verdicts = self._verdicts
        texts = self._texts
        pii = self.send_default_pii
        for key, raw in attributes.items():
            verdict = verdicts.get(key)
            if verdict is None:
                verdict = self.verdict(key)
            if verdict:
                if verdict & SCOPE_FLAG:
                    if scope_items is not None:
                        scope_items.append((key, raw))
                    verdict &= 3
                if verdict == _SECRET or (verdict == _PII and not pii):
                    out[key] = FILTERED
                    continue
            value = raw
            cls = type(value)
            if cls is str:
                if verdict == _URL:
                    value = self.url(value)
                else:
                    hit = texts.get(value)  # inlined text_cached: the common case
                    value = hit if hit is not None else self.text_cached(value)
            elif cls is float:
                value = _finite(value)
            elif cls is tuple or cls is list:
                value = [self.text(v) if type(v) is str else _finite(v) for v in value]
            out[key] = value
        return out

    def tree(self, value: Any, _depth: int = 0) -> Any:
        """A scrubbed copy of any JSON-like value: dict keys decide first, then every string."""
        if isinstance(value, str):
            # Short strings recur (source lines, reprs of the same objects): through the memo.
            return self.text_cached(value) if len(value) <= 200 else self.text(value)
        if _depth > 32:
            return value
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                skey = str(key)
                if skey in _ID_KEYS or item is None or item == "" or type(item) is bool:
                    out[key] = item
                    continue
                verdict = self.verdict(skey) & 3
                if isinstance(item, Mapping) and "value" in item and "type" in item:
                    # A typed attribute ({"value": ..., "type": "string"}: Sentry's log and
                    # span v2 items): the key decides about the value, the shape stays.
                    out[key] = self._typed(verdict, item)
                elif verdict == _SECRET or (verdict == _PII and not self.send_default_pii):
                    out[key] = FILTERED
                elif verdict == _URL and isinstance(item, str):
                    out[key] = self.url(item)
                else:
                    out[key] = self.tree(item, _depth + 1)
            return out
        if isinstance(value, (list, tuple)):
            return [self.tree(item, _depth + 1) for item in value]
        return value

    def _typed(self, verdict: int, item: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(item)
        value = item["value"]
        if verdict == _SECRET or (verdict == _PII and not self.send_default_pii):
            out["value"], out["type"] = FILTERED, "string"
        elif isinstance(value, str):
            out["value"] = self.url(value) if verdict == _URL else self.text(value)
        elif isinstance(value, list):
            out["value"] = [self.text(v) if isinstance(v, str) else v for v in value]
        return out

    def event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Scrub a Sentry event (error, message, log, span payload) in place; returns it.

        Identifiers, timestamps and SDK metadata are left alone (a trace id is never a card
        number); everything else is walked with :meth:`tree`.
        """
        for key, value in list(event.items()):
            if key in _STRUCTURAL or value is None or isinstance(value, (bool, int, float)):
                continue
            if key == "contexts" and isinstance(value, dict):
                event[key] = {
                    name: (ctx if name in _STRUCTURAL_CONTEXTS else self.tree(ctx, 1))
                    for name, ctx in value.items()
                }
            elif key == "exception" and isinstance(value, dict):
                for exc in value.get("values") or ():
                    self._exception(exc)
            elif key == "threads" and isinstance(value, dict):
                for thread in value.get("values") or ():
                    self._frames(thread.get("stacktrace"))
            else:
                event[key] = self.tree(value, 1)
        return event

    def _exception(self, exc: dict[str, Any]) -> None:
        for field in ("value", "type"):
            if isinstance(exc.get(field), str):
                exc[field] = self.text(exc[field])
        self._frames(exc.get("stacktrace"))

    def _frames(self, stacktrace: Any) -> None:
        if not isinstance(stacktrace, dict):
            return
        for frame in stacktrace.get("frames") or ():
            for field in ("vars", "context_line", "pre_context", "post_context"):
                if frame.get(field):
                    frame[field] = self.tree(frame[field], 1)


#: Event fields that hold identifiers, timestamps or SDK metadata, never user text.
_STRUCTURAL = frozenset(
    {
        "event_id",
        "timestamp",
        "start_timestamp",
        "received",
        "type",
        "level",
        "platform",
        "sdk",
        "release",
        "dist",
        "environment",
        "modules",
        "debug_meta",
        "trace_id",
        "span_id",
        "parent_span_id",
        "status",
        "is_segment",
        "end_timestamp",
        "severity_number",
        "transaction_info",
    }
)
#: Keys that hold identifiers and timestamps wherever they appear (a variable named ``status`` or
#: ``type`` is still scrubbed: only these are skipped below the top level).
_ID_KEYS = frozenset(
    {"event_id", "trace_id", "span_id", "parent_span_id", "timestamp", "start_timestamp"}
)
#: Contexts Sentry fills with its own identifiers and runtime facts.
_STRUCTURAL_CONTEXTS = frozenset({"runtime", "os", "device", "app"})

_lock = threading.Lock()
_default: Scrubber | None = None


def _split_patterns(raw: str | None) -> list[str]:
    if not raw:
        return []
    raw = raw.strip()
    if raw.startswith("["):
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            return [str(p) for p in parsed if p]
    return raw.split()


def scrubber_for(settings: Any) -> Scrubber:
    """A scrubber for a settings object (``send_default_pii``, ``scrub_keys``,
    ``scrub_patterns``; missing attributes mean the defaults)."""
    keys = [k for k in (getattr(settings, "scrub_keys", None) or "").split(",") if k.strip()]
    patterns = _split_patterns(getattr(settings, "scrub_patterns", None))
    return Scrubber(
        bool(getattr(settings, "send_default_pii", False)),
        extra_keys=keys,
        extra_patterns=patterns,
    )


def get_scrubber() -> Scrubber:
    """The process's scrubber, built once from the settings (:func:`reset_scrubber` forgets it)."""
    global _default
    scrubber = _default
    if scrubber is None:
        from widgettrace.instrumentation._config import get_settings

        scrubber = scrubber_for(get_settings())
        with _lock:
            if _default is None:
                _default = scrubber
            scrubber = _default
    return scrubber


def reset_scrubber() -> None:
    """Forget the process's scrubber (after the settings changed)."""
    global _default
    with _lock:
        _default = None


def scrub_event(event: dict[str, Any], scrubber: Scrubber | None = None) -> dict[str, Any]:
    """Scrub a Sentry event/log/span payload dict in place with the process's scrubber."""
    return (scrubber or get_scrubber()).event(event)
