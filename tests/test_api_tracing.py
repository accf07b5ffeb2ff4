"""OpenTelemetry tracing ([server] tracing = true): one span per request, fast path and FastAPI
routes alike, named by the redacted route, with the status and the request id; never an
identifier from the path."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

trace = pytest.importorskip("opentelemetry.trace")

from segone.api import background_server, create_app  # noqa: E402
from segone.config import Settings  # noqa: E402
from segone.online.engine import Engine  # noqa: E402
from segone.online.store import OnlineStore  # noqa: E402

WRITE, ADMIN = "wk_trace", "ak_trace"


class RecordedSpan(trace.NonRecordingSpan):
    def __init__(self, name: str, kind: Any) -> None:
        super().__init__(trace.INVALID_SPAN_CONTEXT)
        self.name, self.kind, self.attributes = name, kind, {}

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value


class Recorder(trace.TracerProvider, trace.Tracer):
    """The smallest tracer provider: it keeps the spans (OpenTelemetry's extension point; the
    SDK is not a dependency of segone)."""

    def __init__(self) -> None:
        self.spans: list[RecordedSpan] = []

    def get_tracer(self, *args: Any, **kwargs: Any) -> Recorder:
        return self

    def start_span(self, name: str, *args: Any, kind: Any = None, **kwargs: Any) -> RecordedSpan:
        span = RecordedSpan(name, kind)
        self.spans.append(span)
        return span

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self, name: str, *args: Any, kind: Any = None, **kwargs: Any
    ) -> Iterator[RecordedSpan]:
        yield self.start_span(name, kind=kind)


RECORDER = Recorder()
trace.set_tracer_provider(RECORDER)  # once per process; nothing else in the suite traces


@pytest.fixture(scope="module", params=["fast path", "routes"])
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("tracing")
    settings = Settings.from_dict(
        root,
        {
            "server": {
                "online_url": f"sqlite:///{root / 'online.db'}",
                "writer": "thread",
                "write_keys": [WRITE],
                "admin_tokens": [ADMIN],
                "tracing": True,
            }
        },
    )
    store = OnlineStore.open(settings.server.online_url)
    app = create_app(settings, Engine(store, settings))
    if request.param == "routes":
        app.fast = None
    with background_server(app) as base:
        yield base
    store.close()


def test_a_span_per_request_with_route_status_and_request_id(url: str) -> None:
    RECORDER.spans.clear()
    auth = {"Authorization": "Basic " + base64.b64encode(f"{WRITE}:".encode()).decode()}
    r = httpx.post(
        f"{url}/v1/track",
        json={"userId": "u-t", "event": "Traced"},
        headers={**auth, "X-Request-Id": "trace-me-1"},
    )
    assert r.status_code == 200
    r = httpx.get(
        f"{url}/v1/profiles/email:jane.trace@example.com",
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert r.status_code == 404
    spans = {s.name: s for s in RECORDER.spans}
    track = spans["POST /v1/track"]
    assert track.kind == trace.SpanKind.SERVER
    assert track.attributes["http.response.status_code"] == 200
    assert track.attributes["segone.request_id"] == "trace-me-1"
    profile = spans["GET /v1/profiles/{identifier}"]
    assert profile.attributes["http.response.status_code"] == 404
    assert "jane" not in repr([(s.name, s.attributes) for s in RECORDER.spans])
