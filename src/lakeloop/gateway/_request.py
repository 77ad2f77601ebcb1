"""One S3 request as every handler sees it: what was asked, by whom, and where to answer.

The S3 handlers once took the same eight or nine values positionally (method, bucket,
key, query, headers, the verified signature, the ASGI ``receive``/``send`` pair and the
request id) and handed them along on every call; they now take one :class:`S3Request`,
which also knows how to answer (:meth:`S3Request.reply`, :meth:`S3Request.xml`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lakeloop.gateway import _xml as xml
from lakeloop.gateway._auth import Auth
from lakeloop.gateway._credentials import Principal

__all__ = ["Receive", "S3Request", "Send", "respond"]

Send = Callable[[dict[str, Any]], Any]
Receive = Callable[[], Any]


async def respond(
    send: Send,
    status: int,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    head: bool = False,
    length: int | None = None,
    request_id: str = "",
) -> None:
    """Send one whole response (XML unless the headers name another type)."""
    hs = list(headers or [])
    hs.append((b"content-length", str(len(body) if length is None else length).encode()))
    hs.append((b"x-amz-request-id", request_id.encode()))
    if body and not any(k == b"content-type" for k, _ in hs):
        hs.append((b"content-type", b"application/xml"))
    await send({"type": "http.response.start", "status": status, "headers": hs})
    await send({"type": "http.response.body", "body": b"" if head else body})


@dataclass(slots=True)
class S3Request:
    """A verified S3 request: *bucket* is empty for the service, *key* for a bucket."""

    method: str
    bucket: str
    key: str
    params: dict[str, str]
    headers: dict[str, str]
    auth: Auth
    receive: Receive
    send: Send
    rid: str

    @property
    def principal(self) -> Principal:
        return self.auth.principal

    @property
    def head(self) -> bool:
        return self.method == "HEAD"

    async def reply(
        self,
        status: int,
        body: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        head: bool = False,
        length: int | None = None,
    ) -> None:
        await respond(
            self.send, status, body, headers, head=head, length=length, request_id=self.rid
        )

    async def xml(self, root: str, children: list[str]) -> None:
        await self.reply(200, xml.render(root, children))
