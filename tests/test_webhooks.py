"""Webhooks: signed, durable notifications, checked by a real local HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import timedelta

import anthropic
import pytest
import standardwebhooks
from aiohttp import web

from managed_agents._webhooks.models import EndpointCreate
from managed_agents._webhooks.service import WebhookService
from managed_agents.testing.mock_claude import Turn
from tests.helpers import marker, session_input


class Receiver:
    """A real HTTP server on 127.0.0.1 whose answers the test scripts (status codes, down/up)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], str]] = []
        self.statuses: list[int] = []  # answered in order; then 200
        self.up = True
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _handle(self, request: web.Request) -> web.Response:
        if not self.up:
            request.transport.close()  # connection refused-like: no answer
            raise ConnectionResetError
        body = await request.text()
        self.requests.append(({k.lower(): v for k, v in request.headers.items()}, body))
        status = self.statuses.pop(0) if self.statuses else 200
        headers = {"location": "https://elsewhere.example"} if 300 <= status < 400 else None
        return web.Response(status=status, headers=headers)

    def start(self) -> Receiver:
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            app = web.Application()
            app.router.add_post("/hook", self._handle)
            self._runner = web.AppRunner(app)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        ready.wait(5)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def webhooks(harness) -> WebhookService:
    return WebhookService(harness.store.engine)


def endpoint(webhooks: WebhookService, url: str, **kw):
    spec = EndpointCreate(url=url, initial_retry_seconds=0.3, max_retry_seconds=1, **kw)
    return webhooks.create_endpoint(spec)


async def wait_for(predicate, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def run_session(harness, text: str = "hi") -> str:
    m = marker()
    harness.mock.script_for(m, Turn.text("done"))
    handle = await harness.sessions.create(session_input(f"{m} {text}"))
    await handle.result()
    return handle.id


def of_type(receiver, type_: str):
    return [(h, b) for h, b in receiver.requests if json.loads(b)["data"]["type"] == type_]


async def test_signed_thin_payload_verified_by_the_anthropic_sdk_and_standardwebhooks(
    harness, receiver, webhooks
) -> None:
    ep = endpoint(webhooks, receiver.url, enabled_events=["session.status_idled", "session.status_terminated"])
    assert ep.signing_secret.startswith("whsec_")
    session_id = await run_session(harness)
    await wait_for(lambda: len(receiver.requests) >= 2)
    headers, body = of_type(receiver, "session.status_idled")[0]
    client = anthropic.Anthropic(api_key="unused")
    event = client.beta.webhooks.unwrap(body, headers=headers, key=ep.signing_secret)
    assert event.type == "event" and event.id.startswith("whe_") and event.data.type == "session.status_idled"
    assert event.data.id == session_id
    payload = standardwebhooks.Webhook(ep.signing_secret).verify(body, headers)
    assert set(payload) == {"type", "id", "created_at", "data"}, "thin: fetch the session by id"
    assert headers["webhook-id"] == payload["id"]
    # Tampered body and stale timestamp are rejected by the verifier.
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(ep.signing_secret).verify(body.replace("idled", "idle!"), headers)
    stale = {**headers, "webhook-timestamp": str(int(time.time()) - 600)}
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(ep.signing_secret).verify(body, stale)
    # Only subscribed event types were sent.
    types = {json.loads(b)["data"]["type"] for _, b in receiver.requests}
    assert types == {"session.status_idled", "session.status_terminated"}
    log = webhooks.deliveries(ep.id)
    assert {d.outcome for d in log} == {"delivered"} and all(d.status_code == 200 for d in log)


async def test_500_then_200_is_retried_with_the_same_id(harness, receiver, webhooks) -> None:
    ep = endpoint(webhooks, receiver.url, enabled_events=["session.status_terminated"])
    receiver.statuses = [500, 503]
    await run_session(harness)
    await wait_for(lambda: len(receiver.requests) >= 3)
    ids = {h["webhook-id"] for h, _ in receiver.requests}
    assert len(ids) == 1, "every attempt carries one event id"
    assert len({b for _, b in receiver.requests}) == 1, "and the same body"
    outcomes = [(d.attempt, d.outcome, d.status_code) for d in reversed(webhooks.deliveries(ep.id))]
    assert outcomes == [(1, "failed", 500), (2, "failed", 503), (3, "delivered", 200)]


async def test_receiver_down_for_a_while_then_up(harness, receiver, webhooks) -> None:
    ep = endpoint(webhooks, receiver.url, enabled_events=["session.status_terminated"])
    receiver.up = False
    await run_session(harness)
    await wait_for(lambda: sum(d.outcome == "failed" for d in webhooks.deliveries(ep.id)) >= 2)
    receiver.up = True
    await wait_for(lambda: len(receiver.requests) == 1)
    # The receiver answers before the delivery activity logs the attempt: wait for the log too.
    await wait_for(lambda: any(d.outcome == "delivered" for d in webhooks.deliveries(ep.id)))
    log = webhooks.deliveries(ep.id)
    assert log[0].outcome == "delivered" and all(d.error for d in log[1:])


async def test_a_redirect_disables_the_endpoint(harness, receiver, webhooks) -> None:
    ep = endpoint(webhooks, receiver.url, enabled_events=["session.status_idled", "session.status_terminated"])
    receiver.statuses = [302]
    await run_session(harness)
    await wait_for(lambda: webhooks.get(ep.id).state == "disabled")
    assert "redirect" in (webhooks.get(ep.id).disabled_reason or "")
    await asyncio.sleep(1.5)
    assert len(receiver.requests) <= 2, "nothing more is sent to a disabled endpoint"
    webhooks.set_state(ep.id, True)
    await run_session(harness)
    await wait_for(lambda: any(d.outcome == "delivered" for d in webhooks.deliveries(ep.id)))


async def test_secret_rotation_signs_with_both_during_the_grace_period(harness, receiver, webhooks) -> None:
    ep = endpoint(webhooks, receiver.url, enabled_events=["session.status_terminated"])
    old = ep.signing_secret
    rotated = webhooks.rotate_secret(ep.id, grace=timedelta(seconds=3))
    new = rotated.signing_secret
    assert new != old
    await run_session(harness)
    await wait_for(lambda: len(receiver.requests) == 1)
    headers, body = receiver.requests[0]
    assert len(headers["webhook-signature"].split()) == 2
    for key in (old, new):
        standardwebhooks.Webhook(key).verify(body, headers)
    await asyncio.sleep(3.5)
    await run_session(harness)
    await wait_for(lambda: len(receiver.requests) == 2)
    headers, body = receiver.requests[1]
    standardwebhooks.Webhook(new).verify(body, headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(old).verify(body, headers)


async def test_gave_up_after_the_window_is_recorded_and_the_endpoint_disabled(harness, receiver, webhooks) -> None:
    ep = endpoint(webhooks, receiver.url, enabled_events=["session.status_terminated"], retry_window_seconds=2)
    receiver.statuses = [500] * 100
    await run_session(harness)
    await wait_for(lambda: webhooks.get(ep.id).state == "disabled")
    log = webhooks.deliveries(ep.id)
    assert log[0].outcome == "gave_up" and "retry window" in (log[0].error or "")


async def test_per_session_webhook_url(harness, receiver, webhooks) -> None:
    ep = endpoint(webhooks, receiver.url, enabled_events=[])  # subscribed to nothing globally
    m = marker()
    harness.mock.script_for(m, Turn.text("done"))
    body = session_input(f"{m} hi", webhooks=[{"url": receiver.url}])
    handle = await harness.sessions.create(body)
    await handle.result()
    await wait_for(lambda: len(of_type(receiver, "session.status_terminated")) == 1)
    other = await run_session(harness)
    await asyncio.sleep(1)
    assert all(json.loads(b)["data"]["id"] != other for _, b in receiver.requests)
    assert {d.outcome for d in webhooks.deliveries(ep.id)} == {"delivered"}


async def test_cli_manages_endpoints_and_redelivers(harness, receiver, webhooks) -> None:
    import subprocess
    import sys

    url = harness.settings.resolved_store_url()
    env_vars = {
        "MANAGED_AGENTS_STORE_URL": url,
        "TEMPORAL_ADDRESS": harness.client.service_client.config.target_host,
        "MANAGED_AGENTS_TASK_QUEUE": harness.settings.task_queue,
        "COLUMNS": "200",
    }
    import os

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "managed_agents", "webhooks", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env_vars},
        )

    created = await asyncio.to_thread(cli, "create", "--url", receiver.url, "-e", "session.status_terminated", "--json")
    assert created.returncode == 0, created.stderr
    ep = json.loads(created.stdout)
    assert ep["signing_secret"].startswith("whsec_")
    listed = await asyncio.to_thread(cli, "list", "--json")
    assert "signing_secret" not in listed.stdout, "secrets are shown once, at creation"
    bad = await asyncio.to_thread(cli, "create", "--url", "ftp://nope", "--json")
    assert bad.returncode == 2 and "http://" in bad.stderr
    await run_session(harness)
    await wait_for(lambda: len(receiver.requests) == 1)
    event_id = receiver.requests[0][0]["webhook-id"]
    again = await asyncio.to_thread(cli, "redeliver", event_id, "--endpoint", ep["id"])
    assert again.returncode == 0, again.stderr
    await wait_for(lambda: len(receiver.requests) == 2)
    assert receiver.requests[1][1] == receiver.requests[0][1], "the same event, byte for byte"
    log = await asyncio.to_thread(cli, "deliveries", ep["id"], "--json")
    assert [json.loads(line)["outcome"] for line in log.stdout.splitlines()] == ["delivered", "delivered"]


def _local_activities(history) -> list[tuple[int, str]]:
    """(the workflow task that recorded it, activity type) of each local activity in a history."""
    from temporalio.api.enums.v1 import EventType

    out = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            attrs = e.marker_recorded_event_attributes
            if attrs.marker_name == "core_local_activity":
                data = json.loads(attrs.details["data"].payloads[0].data)
                out.append((attrs.workflow_task_completed_event_id, data["activity_type"]))
    return out


async def test_a_session_end_is_noted_in_one_local_activity(harness, receiver, webhooks) -> None:
    """The idle event, the dream-index record and the terminated event of a session that ends with
    its turn go in one local activity, and each still does its job."""
    from managed_agents._dreams.records import DreamRecords

    endpoint(webhooks, receiver.url, enabled_events=["session.status_idled", "session.status_terminated"])
    m = marker()
    harness.mock.script_for(m, Turn.text("done"))
    handle = await harness.sessions.create(session_input(f"{m} hi"))
    await handle.result()
    await wait_for(lambda: len(receiver.requests) >= 2)
    assert sorted(json.loads(b)["data"]["type"] for _, b in receiver.requests) == [
        "session.status_idled",
        "session.status_terminated",
    ]
    assert handle.id in DreamRecords(harness.store.engine).finished_at([handle.id])

    local = _local_activities(await handle._handle.fetch_history())
    assert {name for _, name in local} == {"managed_agents.sessions.bookkeeping"}
    # One at the start (session.status_run_started), one for the end: never one per item.
    assert len(local) == 2 and local[0][0] != local[1][0], local
