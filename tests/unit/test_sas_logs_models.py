"""SAS expiry helpers, log redaction, the BES status model, the error envelope, and the retry policy."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from urllib3 import HTTPConnectionPool
from urllib3.exceptions import ReadTimeoutError

from shared import logs
from shared.adapters.classic.errors import StudioApiError, TransportError
from shared.adapters.classic.http import HttpPolicy, StudioHttp
from shared.adapters.classic.models import JobStatus
from shared.adapters.sas import needs_refresh, token_expiry

TOKEN = "?sv=2026-10-06&st=2026-01-01T00%3A00%3A00Z&se=2030-01-01T00%3A00%3A00Z&sr=b&sp=r&sig=abc%2Bdef%3D"


def test_token_expiry_and_refresh():
    assert token_expiry(TOKEN) == datetime(2030, 1, 1, tzinfo=UTC)
    assert not needs_refresh(TOKEN, timedelta(minutes=5), now=datetime(2029, 1, 1, tzinfo=UTC))
    assert needs_refresh(TOKEN, timedelta(minutes=5), now=datetime(2029, 12, 31, 23, 58, tzinfo=UTC))
    assert needs_refresh(None, timedelta(0)) and needs_refresh("?sv=1", timedelta(0))


def test_a_token_that_cannot_read_the_blob_needs_a_fresh_one():
    """A BES job given write-only output tokens (the app has no account key) echoes them in its results: the
    PATCH needs a token that reads."""
    write_only = TOKEN.replace("sp=r", "sp=cw")
    assert needs_refresh(write_only, timedelta(minutes=5), now=datetime(2029, 1, 1, tzinfo=UTC))
    assert not needs_refresh(TOKEN.replace("sp=r", "sp=rcw"), timedelta(minutes=5),
                             now=datetime(2029, 1, 1, tzinfo=UTC))


def test_a_bearer_token_in_a_log_line_is_redacted():
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJodHRwczovL3N0b3JhZ2UifQ.c2lnbmF0dXJl"
    assert jwt_like not in logs.scrub(f"token {jwt_like} refused")


def test_log_records_are_scrubbed(caplog):
    logs.install()
    logs.register_secret("super-secret-endpoint-key")
    log = logging.getLogger("test.redaction")
    with caplog.at_level(logging.INFO), logs.context(run="r1", invocation="i1"):
        log.info("url %s key %s", "https://a/b" + TOKEN, "super-secret-endpoint-key")
        log.info("conn AccountKey=abcdEFGH1234==; Authorization: Bearer eyJ0eXAi.abc")
        try:
            raise ValueError("https://x/y?sig=leaky")
        except ValueError:
            log.exception("boom")
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert "abc%2Bdef" not in text and "super-secret-endpoint-key" not in text
    assert "abcdEFGH1234" not in text and "eyJ0eXAi" not in text and "leaky" not in text
    assert "[run=r1] [invocation=i1]" in caplog.records[0].getMessage()


@pytest.mark.parametrize(("raw", "name"), [("Finished", "Finished"), (4, "Finished"), (0, "NotStarted"),
                                           ("2", "Failed"), ("Canceled", "Cancelled")])
def test_job_status_accepts_strings_and_legacy_integers(raw, name):
    assert JobStatus.model_validate({"StatusCode": raw, "Results": None, "Details": None}).StatusCode == name


def test_error_envelope_becomes_an_exception():
    body = {"error": {"code": "BadArgument", "message": "Invalid argument provided.",
                      "details": [{"code": "InvalidBlobExtension", "message": "bad ext"}]}}
    exc = StudioApiError.from_response(400, body, None, "patch")
    assert (exc.status, exc.code, exc.detail_code, exc.message, exc.transient) == \
        (400, "BadArgument", "InvalidBlobExtension", "bad ext", False)
    assert StudioApiError.from_response(503, "not json", 2.0, "x").transient


class FakeResponse:
    """What urllib3 answers: status, headers, the body's bytes."""

    def __init__(self, status, body=None, headers=None):
        self.status = status
        self.headers = headers or {}
        self.data = b"not json" if body is None else json.dumps(body).encode()


class FakePool:
    """Unit-level stand-in for the urllib3 pool: answers from a script."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = 0

    def for_url(self, url):
        return self

    def request(self, *args, **kwargs):
        self.calls += 1
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def make_http(script, attempts=5):
    sleeps: list[float] = []
    http = StudioHttp(HttpPolicy(max_attempts=attempts, backoff_seconds=0.01, max_backoff_seconds=5),
                      sleep=sleeps.append)
    http.pool = FakePool(script)  # type: ignore[assignment]
    return http, sleeps


def test_retries_honour_retry_after_then_succeed():
    http, sleeps = make_http([FakeResponse(503, {"error": {"code": "ServiceUnavailable"}}, {"Retry-After": "2"}),
                              FakeResponse(429, None, {"Retry-After": "1"}), FakeResponse(200, {})])
    assert http.request("GET", "http://h/x", "op", "k").status_code == 200
    assert http.pool.calls == 3 and sleeps[0] >= 2 and sleeps[1] >= 1


def test_permanent_errors_are_not_retried_and_budget_is_bounded():
    http, _ = make_http([FakeResponse(400, {"error": {"code": "BadArgument"}})])
    with pytest.raises(StudioApiError):
        http.request("GET", "http://h/x", "op", "k")
    assert http.pool.calls == 1
    http, sleeps = make_http([FakeResponse(500, None)] * 3, attempts=3)
    with pytest.raises(StudioApiError):
        http.request("GET", "http://h/x", "op", "k")
    assert http.pool.calls == 3 and len(sleeps) == 2


def test_a_model_the_endpoint_cannot_load_is_not_retried():
    body = {"error": {"code": "InternalError", "details": [{"code": "ResourceLoadFailed", "message": "no"}]}}
    http, _ = make_http([FakeResponse(500, body)] * 5)
    with pytest.raises(StudioApiError) as info:
        http.request("POST", "http://h/score", "score", "k")
    assert http.pool.calls == 1 and not info.value.transient


def test_a_submit_is_not_retried_after_a_read_timeout():
    http, _ = make_http([ReadTimeoutError(HTTPConnectionPool("h"), "http://h/jobs", "slow"), FakeResponse(200, "job")])
    with pytest.raises(TransportError):
        http.request("POST", "http://h/jobs", "submit", "k", idempotent=False)
    assert http.pool.calls == 1
    http, _ = make_http([ReadTimeoutError(HTTPConnectionPool("h"), "http://h/jobs", "slow"), FakeResponse(200, {})])
    assert http.request("GET", "http://h/x", "get", "k").status_code == 200


def test_unconfigured_hosts_are_refused():
    http = StudioHttp(allowed_hosts=lambda host: host == "good:1")
    with pytest.raises(ValueError, match="not a configured"):
        http.request("GET", "http://evil:2/x", "op", "k")


def test_scrubbing_while_other_threads_register_keys_is_safe(monkeypatch):
    """A fan-out registers each endpoint's key while other threads log and publish (found by the benchmark)."""
    import sys
    import threading

    from shared import logs
    from shared.logs import register_secret, scrub

    monkeypatch.setattr(logs, "_secrets", logs._secrets)  # the test's keys are forgotten afterwards

    errors: list[BaseException] = []
    stop = threading.Event()

    def register(prefix: str) -> None:
        for i in range(1500):
            register_secret(f"{prefix}-secret-key-{i:06d}")

    def scrubber() -> None:
        while not stop.is_set():
            try:
                scrub("nothing secret in here, just a long enough line of text")
            except BaseException as exc:
                errors.append(exc)
                return

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        readers = [threading.Thread(target=scrubber) for _ in range(3)]
        writers = [threading.Thread(target=register, args=(f"w{n}",)) for n in range(3)]
        for t in readers + writers:
            t.start()
        for t in writers:
            t.join()
        stop.set()
        for t in readers:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []
    assert scrub("token w1-secret-key-001499 here") == "token *** here"


def test_a_refused_call_is_safe_to_retry_and_one_cut_off_after_sending_is_not():
    import socket
    import threading

    http = StudioHttp(HttpPolicy(max_attempts=1, connect_timeout=2, read_timeout=2))
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(TransportError) as refused:
        http.request("GET", f"http://127.0.0.1:{port}/x", "get", "k")
    assert refused.value.maybe_processed is False

    server = socket.create_server(("127.0.0.1", 0))

    def read_then_hang_up() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.close()

    threading.Thread(target=read_then_hang_up, daemon=True).start()
    with pytest.raises(TransportError) as cut, server:
        http.request("POST", f"http://127.0.0.1:{server.getsockname()[1]}/jobs", "submit", "secret-key",
                     json_body={"a": 1}, idempotent=False)
    assert cut.value.maybe_processed is True and "secret-key" not in str(cut.value)


def test_studio_calls_go_through_a_configured_proxy_except_for_no_proxy_hosts(monkeypatch):
    from shared.adapters.transport import HttpPool

    for name in ("HTTP_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    pool = HttpPool(4)
    assert pool.for_url("https://ussouthcentral.services.azureml.net/x") is not pool.direct
    assert pool.for_url("https://127.0.0.1:8443/x") is pool.direct
    assert pool.for_url("http://ussouthcentral.services.azureml.net/x") is pool.direct  # no HTTP_PROXY


def test_studio_calls_trust_the_ca_bundle_requests_would(monkeypatch, tmp_path):
    from requests.utils import DEFAULT_CA_BUNDLE_PATH

    from shared.adapters.transport import HttpPool

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    assert HttpPool(2).direct.connection_pool_kw["ca_certs"] == DEFAULT_CA_BUNDLE_PATH
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path))  # a folder of hashed certificates, as requests allows
    assert HttpPool(2).direct.connection_pool_kw["ca_cert_dir"] == str(tmp_path)
