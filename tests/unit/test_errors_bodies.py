"""A local reply's JSON body, encoded once per distinct answer: the same bytes as encoding it each time, and a
bounded table whatever the details (some carry the caller's words)."""

from __future__ import annotations

from http import HTTPStatus

import orjson

from meshbatch import errors
from meshbatch.errors import BadRequest, Overloaded, ProxyError, Unavailable


def encoded(error: ProxyError) -> bytes:
    payload = {"error": HTTPStatus(error.status).phrase.lower(), "reason": error.reason}
    if error.detail:
        payload["detail"] = error.detail
    return orjson.dumps(payload)


def test_the_bodies_are_those_encoded_each_time() -> None:
    cases = [ProxyError(), BadRequest("invalid_body", 'the body is not valid JSON ("x" at offset 3)'),
             Overloaded("ingest_log_full", "the ingest log is full", retry_after=3), Unavailable(),
             BadRequest("bad", "ünïcödé \\ \" \n detail")]
    for error in cases:
        assert error.body() == encoded(error)
        assert error.body() == encoded(error)  # the second time from the table
        assert error.error == HTTPStatus(error.status).phrase.lower()


def test_the_table_of_bodies_stays_bounded_whatever_the_details() -> None:
    for i in range(3 * errors.BODIES_KEPT):
        error = BadRequest("bad_request", f"the caller's value {i}")
        assert error.body() == encoded(error)
        assert len(errors._BODIES) <= errors.BODIES_KEPT
