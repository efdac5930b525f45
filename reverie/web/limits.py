"""What bounds what one request may carry and how many heavy jobs a client may have, in front of Gradio.

The heavy jobs themselves (the shared slots, each job's time limit and cancel flag) are
reverie.web.jobs'; this module refuses requests before they reach them.

`RequestGuard` is ASGI middleware in front of Gradio's app (`Middleware(RequestGuard, guard=...)`):

- a body over `max_body` bytes is refused with 413, before it is read when it says its length;
- a JSON body carrying a `data:` URL (an image sent inline, which Gradio would decode, rotate and
  re-encode whole before any check of the page's: no size cap applies to it) is refused with 400;
- a client (a session; without one, its address) holding `per_client` heavy jobs waiting or
  running is refused another with 429;
- a cancel (Gradio's /cancel, what the Cancel and Stop buttons and gradio_client's `job.cancel()`
  send) also sets the cancel flag of that client's running jobs of that kind.

Refusals are one line in the JSON `detail`, which the page shows as an error.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from reverie.web.jobs import HEAVY, Jobs

DATA_URL_REFUSED = (
    "images must be uploaded as files (what the page and gradio_client's handle_file do), "
    "not sent inline as data: URLs"
)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
CALL_PATH = re.compile(r"/call/(?:v2/)?([^/]+)/?$")  # Gradio's REST routes that join the queue


def carries_data_url(value: Any) -> bool:
    """Whether a JSON value holds a file object (a dict) whose `url` or `path` is a `data:` URL."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                if key in ("url", "path") and isinstance(inner, str) and is_data_url(inner):
                    return True
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)
    return False


def is_data_url(text: str) -> bool:
    """Whether `text` is a data: URL (data inline, base64 or not)."""
    return text.lstrip()[:5].lower() == "data:"


class Guard:
    """What RequestGuard enforces for one page: the body cap, the per-client cap on heavy jobs of
    `blocks` (a launched gr.Blocks, whose queue is counted), and where cancels go (`jobs`)."""

    def __init__(self, blocks: Any, jobs: Jobs, max_body: int, per_client: int) -> None:
        self.blocks, self.jobs = blocks, jobs
        self.max_body, self.per_client = max_body, per_client
        self._joining: asyncio.Lock | None = None

    def heavy_fn(self, fn_index: Any = None, api_name: str | None = None) -> Any:
        """The page's heavy function named by `fn_index` or `api_name`, or None."""
        fns = self.blocks.fns
        if isinstance(fn_index, int) and not isinstance(fn_index, bool):
            fn = fns.get(fn_index)
        else:
            fn = next((fn for fn in fns.values() if fn.api_name == api_name), None)
        return fn if fn is not None and fn.concurrency_id == HEAVY else None

    def heavy_jobs_of(self, client: str) -> int:
        """How many heavy jobs `client` has waiting in Gradio's queue or running."""
        queue = self.blocks._queue
        waiting = [event for line in queue.event_queue_per_concurrency_id.values() for event in line.queue]
        running = [event for events in queue.active_jobs if events for event in events]
        heavy = [event for event in waiting + running if event.concurrency_id == HEAVY]
        return sum(1 for event in heavy if _client_of(event) == client)

    @property
    def joining(self) -> asyncio.Lock:
        """Held from counting a client's jobs until its new one is in the queue."""
        if self._joining is None:
            self._joining = asyncio.Lock()
        return self._joining

    def too_many(self) -> str:
        return (
            f"you have {self.per_client} jobs waiting or running, this page's limit per client; "
            "wait for one to finish (or cancel one), then try again"
        )


def _client_of(event: Any) -> str:
    """The client of a queued event: its session, or its address when it came without one (Gradio
    then names the session after the event itself)."""
    if event.session_hash != event._id:
        return event.session_hash
    request = getattr(event, "request", None)
    return f"address {request.client.host}" if request is not None and request.client else "unknown"


class RequestGuard:
    """ASGI middleware applying a `Guard` to every HTTP request (see the module docstring)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], guard: Guard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.lower(): value for key, value in scope.get("headers", [])}
        cap = self.guard.max_body
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > cap:
            await refuse(send, 413, too_large(cap))
            return
        if scope["method"] == "POST" and headers.get(b"content-type", b"").startswith(b"application/json"):
            await self._json(scope, receive, send)
        else:
            await self._counted(scope, receive, send)

    async def _json(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A JSON request: read whole (it is small), checked, then handed on."""
        cap = self.guard.max_body
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > cap:
                await refuse(send, 413, too_large(cap))
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            await refuse(send, 400, "the request's body is not valid JSON")
            return
        if carries_data_url(payload):
            await refuse(send, 400, DATA_URL_REFUSED)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        path = scope["path"]
        payload = payload if isinstance(payload, dict) else {}
        session = payload.get("session_hash")
        if path.endswith("/cancel"):
            fn = self.guard.heavy_fn(payload.get("fn_index"))
            if fn is not None and isinstance(session, str):
                self.guard.jobs.cancel(session, fn.api_name)
        call = CALL_PATH.search(path)
        joins = path.endswith("/queue/join") or call is not None
        fn = self.guard.heavy_fn(payload.get("fn_index"), call.group(1) if call else None) if joins else None
        if fn is None:
            await self.app(scope, replay, send)
            return
        client_address = scope.get("client") or ("unknown",)
        client = session if isinstance(session, str) and session else f"address {client_address[0]}"
        async with self.guard.joining:
            if self.guard.heavy_jobs_of(client) >= self.guard.per_client:
                await refuse(send, 429, self.guard.too_many())
                return
            await self.app(scope, replay, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Any other request (an upload's form): its body counted as it streams in, cut at the cap."""
        cap = self.guard.max_body
        size, refused, started = 0, False, False

        async def counting() -> Message:
            nonlocal size, refused
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > cap and not refused:
                    refused = True
                    if not started:
                        await refuse(send, 413, too_large(cap))
                    return {"type": "http.disconnect"}
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the app's own answer to a body it never got whole
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting, sending)


def too_large(cap: int) -> str:
    return f"the request is over this page's cap of {cap / 2**20:.3g} MB; send a smaller file"


async def refuse(send: Send, status: int, message: str) -> None:
    """Answer with `status` and `message` as the JSON `detail` (what Gradio's page shows)."""
    body = json.dumps({"detail": message, "error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = [
    "DATA_URL_REFUSED",
    "Guard",
    "RequestGuard",
    "carries_data_url",
    "is_data_url",
]
