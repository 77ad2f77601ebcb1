"""A real gateway for the tests: uvicorn on a free loopback port, in a thread.

One lake and one server serve a whole test session (starting uvicorn costs time); tests
make their own buckets. The credentials file lives in a temporary folder, pointed at by
``LAKELOOP_CREDENTIALS``, never in the user's home.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakeloop.store import Lake


@dataclass
class Key:
    name: str
    access: str
    secret: str


@dataclass
class GatewayServer:
    url: str
    lake: Lake
    credentials: Any
    keys: dict[str, Key] = field(default_factory=dict)

    def user(self, name: str, grants: dict[str, str] | None = None) -> Key:
        access, secret = self.credentials.create(name)
        for ns, role in (grants or {}).items():
            self.credentials.grant(name, ns, role)
        self.credentials.refresh(every=0)
        key = Key(name, access, secret)
        self.keys[name] = key
        return key

    @property
    def admin(self) -> Key:
        return self.keys["admin"]

    def bucket(self, prefix: str = "b") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.lake.create_namespace(name)
        return name

    def boto3(self, key: Key | None = None, **config: Any) -> Any:
        import boto3
        from botocore.config import Config

        key = key or self.admin
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=key.access,
            aws_secret_access_key=key.secret,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
        )

    def env(self, key: Key | None = None) -> dict[str, str]:
        key = key or self.admin
        env = dict(os.environ)
        env.update(
            AWS_ACCESS_KEY_ID=key.access,
            AWS_SECRET_ACCESS_KEY=key.secret,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE="/dev/null",
            AWS_SHARED_CREDENTIALS_FILE="/dev/null",
            AWS_EC2_METADATA_DISABLED="true",
        )
        return env


def start(tmp: Path, settings: dict[str, Any] | None = None) -> tuple[GatewayServer, Any]:
    import uvicorn

    from lakeloop.gateway import Credentials, Gateway

    creds = Credentials(tmp / "config" / "credentials.json")
    lake = Lake.open(tmp / "lake", create=True, settings=settings, background=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        Gateway(lake, creds),
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop="asyncio",
        http="httptools",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    gw = GatewayServer(f"http://127.0.0.1:{port}", lake, creds)
    gw.user("admin", {"*": "admin"})

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        lake.close()

    return gw, stop


class InProcess:
    """The gateway app called in process through httpx's ASGI transport (no sockets)."""

    def __init__(self, root: Path, settings: dict[str, Any] | None = None) -> None:
        from lakeloop.gateway import Credentials, Gateway

        self.lake = Lake.open(root / "lake", create=True, settings=settings, background=False)
        self.creds = Credentials(root / "credentials.json")
        self.access, self.secret = self.creds.create("fuzzer")
        self.creds.grant("fuzzer", "*", "admin")
        self.app = Gateway(self.lake, self.creds)
        self.bucket = "fuzz"
        self.lake.create_namespace(self.bucket)

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        query: list[tuple[str, str]] | None = None,
        *,
        sign: bool = True,
    ) -> Any:
        """One request, signed with the fuzzer's key unless *sign* is False: the response."""
        import hashlib
        from urllib.parse import quote

        import anyio
        import httpx

        from lakeloop import _sigv4 as sigv4

        hs = {"host": "testserver", "content-length": str(len(body)), **(headers or {})}
        # a test may sign a payload hash other than the body's (streaming modes, lies)
        payload_hash = hs.pop("x-amz-content-sha256-override", None)
        if sign:
            hs = sigv4.sign_headers(
                method,
                path,
                query or [],
                hs,
                access_key=self.access,
                secret_key=self.secret,
                amz_date=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                payload_hash=payload_hash or hashlib.sha256(body).hexdigest(),
            )
        url = "http://testserver" + quote(path, safe="/~")
        if query:
            url += "?" + sigv4.canonical_query(query)

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport) as client:
                return await client.request(method, httpx.URL(url), content=body, headers=hs)

        return anyio.run(go)
