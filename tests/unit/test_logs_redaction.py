"""No credential reaches a log line: keys are stored only hashed (docs/api.md)."""

from __future__ import annotations

import logging
import sys

import pytest
from aiohttp.http_exceptions import BadHttpMessage

from meterflow.logs import JsonFormatter, TextFormatter, redact

KEY = "sk_test_jpzr6OWxwR-abc_UgUmY"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"b'Authorization: Bearer {KEY}\\r'", "b'Authorization: [redacted]\\r'"),
        ('{"authorization": "Basic YWNjOnNrX3Rlc3Rf=="}', '{"authorization": "[redacted]"}'),
        (f"key {KEY} then", "key [redacted] then"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln ok", "token [redacted] ok"),
        ("basic validation failed, authorization pending", None),  # words, not credentials
    ],
)
def test_credentials_are_redacted(text: str, expected: str | None) -> None:
    assert redact(text) == (text if expected is None else expected)


def test_a_request_aiohttp_cannot_parse_is_logged_without_its_key() -> None:
    """aiohttp logs the offending header in full, traceback included: a key read from a file
    with a trailing `\\r` reached the API log in clear (found by a probe)."""
    header = f"Authorization: Bearer {KEY}\r"
    try:
        raise BadHttpMessage(f"Missing expected LF after header value: {header.encode()!r}")
    except BadHttpMessage:
        record = logging.LogRecord(
            "aiohttp.server",
            logging.ERROR,
            __file__,
            1,
            "Error handling request from %s %s",
            ("127.0.0.1", header),
            sys.exc_info(),
        )
    for formatter in (JsonFormatter(), TextFormatter("%(message)s")):
        written = formatter.format(record)
        assert "jpzr6OWxwR" not in written
        assert "[redacted]" in written
