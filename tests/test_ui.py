"""The web UI over real servers: the gateway's /ui with logins and grants, and the pieces.

The browser tests (test_ui_browser.py) drive the pages in Chromium; these check, over real
HTTP, that a principal never sees another's namespace through any page, that every key
is escaped, and that sessions are what they claim.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _uilake import XSS_KEY, XSS_META
from _uiserver import server
from lakeloop.ui._charts import IntervalRow, interval_chart, line_chart
from lakeloop.ui._session import COOKIE, CSRF_COOKIE, SessionSigner

# what only bob's namespace holds: none of it may reach alice's pages
BOBS = ("secret-plan", "classified", "secretset", "secret-model", "plans/")


@pytest.fixture(scope="module")
def gateway(ui_lake: dict[str, Any]) -> Iterator[str]:
    env = {"LAKELOOP_CREDENTIALS": str(ui_lake["credentials"])}
    with server(["gateway"], ui_lake["lake"], env) as url:
        yield url


@pytest.fixture
def clients() -> Iterator[list[httpx.Client]]:
    """Clients a test opens, closed when it ends."""
    opened: list[httpx.Client] = []
    yield opened
    for c in opened:
        c.close()


def client_for(url: str, pool: list[httpx.Client], **options: Any) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30, **options)
    pool.append(client)
    return client


def csrf_of(html: str) -> str:
    """The CSRF token a page's form carries."""
    found = re.search(r'name="csrf" value="([^"]*)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def post_login(
    client: httpx.Client, key: tuple[str, str], path: str = "/ui/login", **options: Any
) -> httpx.Response:
    """What a browser does: open the login form, then post it with its token."""
    token = csrf_of(client.get(path).text)
    return client.post(
        path, data={"access_key": key[0], "secret": key[1], "csrf": token}, **options
    )


def login(url: str, key: tuple[str, str], pool: list[httpx.Client]) -> httpx.Client:
    client = client_for(url, pool)
    r = post_login(client, key)
    assert r.status_code == 303, r.text
    return client


def crawl(client: httpx.Client, start: str, limit: int = 250) -> dict[str, str]:
    """Every UI page reachable from *start* by links (up to *limit*), path -> HTML."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo and len(seen) < limit:
        url = todo.pop(0)
        if url in seen:
            continue
        r = client.get(url)
        assert r.status_code in (200, 404), (url, r.status_code)
        seen[url] = r.text
        if "text/html" not in r.headers.get("content-type", ""):
            continue
        for href in re.findall(r'href="(/ui/[^"]*)"', r.text):
            link = href.replace("&amp;", "&")
            if link not in seen and "/raw/" not in link and "/static/" not in link:
                todo.append(link)
    return seen


def test_a_principal_sees_no_trace_of_another_namespace(
    gateway: str, ui_lake: dict[str, Any], clients: list[httpx.Client]
) -> None:
    alice = login(gateway, ui_lake["alice"], clients)
    pages = crawl(alice, "/ui/")
    assert len(pages) > 30  # the crawl reached datasets, runs, models, decisions, objects
    assert any("/ui/models/digits-lr/decisions/" in p for p in pages)
    assert any(p.startswith("/ui/runs/") for p in pages)
    for path, html in pages.items():
        for word in (*BOBS, ui_lake["secret_run"]):
            assert word not in html, (path, word)
    # and asked for directly, every kind of URL answers 404, as for what does not exist
    secret_run = ui_lake["secret_run"]
    for path in [
        "/ui/ns/secret",
        "/ui/ns/secret?prefix=plans/",
        "/ui/object/secret?key=plans/secret-plan.csv",
        "/ui/thumb/secret?key=plans/classified.png",
        "/ui/raw/secret?key=plans/secret-plan.csv",
        "/ui/search?ns=secret",
        "/ui/datasets/secretset",
        "/ui/datasets/secretset/diff?old=1&new=1",
        f"/ui/runs/{secret_run}",
        f"/ui/runs/{secret_run[:12]}",
        "/ui/models/secret-model",
        "/ui/models/secret-model/decisions/1",
        "/ui/ns/_runs",
        "/ui/ns/_registry?prefix=models/",
        "/ui/object/_catalog?key=datasets/secretset.json",
    ]:
        r = alice.get(path)
        assert r.status_code == 404, path
        assert "secret-plan" not in r.text and "classified" not in r.text
    nothing = alice.get("/ui/ns/no-such-namespace")
    assert nothing.status_code == 404
    # a search for bob's words finds nothing of his
    found = alice.get("/ui/search", params={"q": "secret"}).text
    assert "secret-plan" not in found and "classified" not in found
    # bob, for his part, sees his namespace and not alice's
    bob = login(gateway, ui_lake["bob"], clients)
    home = bob.get("/ui/").text
    assert "/ui/ns/secret" in home and "/ui/ns/photos" not in home
    assert bob.get("/ui/object/photos?key=tables/sales.csv").status_code == 404
    assert bob.get("/ui/models/digits-lr").status_code == 404
    assert "secret-model" in bob.get("/ui/models").text


def test_login_sessions_and_cookies(
    gateway: str, ui_lake: dict[str, Any], clients: list[httpx.Client]
) -> None:
    anon = client_for(gateway, clients)
    r = anon.get("/ui/ns/photos?prefix=digits/")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/ui/login?next=")
    assert urllib.parse.unquote(r.headers["location"]).endswith("/ui/ns/photos?prefix=digits/")
    assert anon.get("/ui", follow_redirects=False).headers["location"] == "/ui/"
    bad = post_login(anon, (ui_lake["alice"][0], "wrong"))
    assert bad.status_code == 401 and COOKIE not in bad.cookies
    unknown = post_login(anon, ("LLNOSUCHKEY", "x"))
    assert unknown.status_code == 401
    # an open redirect is refused: after login, only pages of the UI
    r = post_login(anon, ui_lake["alice"], "/ui/login?next=https://evil.example/")
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    for bad in ["//evil.example/", "/\\evil.example/", "/ui/\\x", "/ui/\tx", "https:/ui/"]:
        r2 = post_login(client_for(gateway, clients), ui_lake["alice"], "/ui/login?" +
                        urllib.parse.urlencode({"next": bad}))  # fmt: skip
        assert r2.headers["location"] == "/ui/", bad
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui/" in cookie
    # a tampered cookie is no session
    value = r.cookies[COOKIE]
    forged = client_for(gateway, clients, cookies={COOKIE: value[:-2] + "xx"})
    assert forged.get("/ui/").status_code == 303
    # the security headers keep the page to its own scripts
    page = login(gateway, ui_lake["alice"], clients).get("/ui/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_a_revoked_grant_hides_the_namespace_at_the_next_page(
    gateway: str, ui_lake: dict[str, Any], clients: list[httpx.Client]
) -> None:
    from lakeloop.gateway import Credentials

    creds = Credentials(ui_lake["credentials"])
    access, secret = creds.create("carol")
    creds.grant("carol", "photos", "read")
    carol = login(gateway, (access, secret), clients)
    assert carol.get("/ui/ns/photos").status_code == 200
    creds.revoke("carol", "photos")
    import time

    deadline = time.monotonic() + 10  # the gateway rereads the file within a second
    while carol.get("/ui/ns/photos").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    creds.delete("carol")
    deadline = time.monotonic() + 10
    while carol.get("/ui/").status_code != 303:  # the key is gone: back to the login
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_models_and_runs_need_their_own_grants_besides_the_datasets(
    gateway: str, ui_lake: dict[str, Any], clients: list[httpx.Client]
) -> None:
    from lakeloop.gateway import Credentials

    creds = Credentials(ui_lake["credentials"])
    access, secret = creds.create("dave")
    creds.grant("dave", "photos", "read")  # alice's namespace, without @models or @runs
    try:
        dave = login(gateway, (access, secret), clients)
        assert dave.get("/ui/ns/photos").status_code == 200
        assert dave.get("/ui/models/digits-lr").status_code == 404  # alice sees it
        assert "digits-lr" not in dave.get("/ui/models").text
        assert "digits-lr" not in dave.get("/ui/runs").text
    finally:
        creds.delete("dave")


def test_every_post_needs_its_csrf_token(
    gateway: str, ui_lake: dict[str, Any], clients: list[httpx.Client]
) -> None:
    """A page of another site can make a browser post to the UI, with the browser's cookies
    but without a token it cannot read: it neither logs the victim in nor out."""
    alice = ui_lake["alice"]
    victim = client_for(gateway, clients)
    form = victim.get("/ui/login")
    cookie = form.headers["set-cookie"]
    assert CSRF_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/ui/" in cookie
    fields = {"access_key": alice[0], "secret": alice[1]}
    # no token, or a token the attacker got on its own visit: refused, no session
    no_token = victim.post("/ui/login", data=fields)
    assert no_token.status_code == 403 and COOKIE not in no_token.cookies
    attacker = client_for(gateway, clients)
    theirs = csrf_of(attacker.get("/ui/login").text)
    assert theirs != csrf_of(form.text)
    forged = victim.post("/ui/login", data={**fields, "csrf": theirs})
    assert forged.status_code == 403 and COOKIE not in forged.cookies
    # a token without the cookie it was made for (the cookie is SameSite=Strict)
    bare = client_for(gateway, clients)
    cut = bare.post("/ui/login", data={**fields, "csrf": csrf_of(form.text)})
    assert cut.status_code == 403 and COOKIE not in cut.cookies
    assert victim.get("/ui/").status_code == 303  # nobody was logged in
    # logged in, logging out needs the session's token too
    session = login(gateway, alice, clients)
    home = session.get("/ui/")
    assert home.status_code == 200
    assert session.post("/ui/logout").status_code == 403
    assert session.post("/ui/logout", data={"csrf": theirs}).status_code == 403
    assert session.get("/ui/").status_code == 200  # still logged in
    out = session.post("/ui/logout", data={"csrf": csrf_of(home.text)})
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert session.get("/ui/").status_code == 303


def test_a_new_secret_ends_the_sessions_opened_with_the_old_one(
    gateway: str, ui_lake: dict[str, Any], clients: list[httpx.Client]
) -> None:
    import json
    import subprocess
    import sys
    import time

    from _uiserver import _env
    from lakeloop.gateway import Credentials

    creds = Credentials(ui_lake["credentials"])
    access, secret = creds.create("erin")
    creds.grant("erin", "photos", "read")
    try:
        erin = login(gateway, (access, secret), clients)
        assert erin.get("/ui/ns/photos").status_code == 200
        r = subprocess.run(
            [sys.executable, "-m", "lakeloop", "user", "new-secret", "erin", "--json",
             "--credentials", str(ui_lake["credentials"])],
            env=_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        new = json.loads(r.stdout)["keys"]
        assert list(new) == [access] and new[access] != secret
        deadline = time.monotonic() + 30  # the gateway rereads the file within a second
        while erin.get("/ui/ns/photos").status_code != 303:  # back to the login
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert post_login(client_for(gateway, clients), (access, secret)).status_code == 401
        again = login(gateway, (access, new[access]), clients)
        assert again.get("/ui/ns/photos").status_code == 200
    finally:
        creds.delete("erin")


def test_signed_requests_to_ui_paths_are_s3_requests(gateway: str, ui_lake: dict[str, Any]) -> None:
    """S3 clients always sign; what they send under /ui/ gets S3's answer, never a page."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    access, secret = ui_lake["admin"]
    s3 = boto3.client(
        "s3", endpoint_url=gateway, aws_access_key_id=access, aws_secret_access_key=secret,
        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}),
    )  # fmt: skip
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="ui", Key="login")
    assert err.value.response["Error"]["Code"] in ("NoSuchBucket", "InvalidBucketName")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["photos", "secret"]


def test_keys_and_metadata_are_escaped(
    ui_lake: dict[str, Any], clients: list[httpx.Client]
) -> None:
    with server(["ui"], ui_lake["lake"]) as url:
        client = client_for(url, clients)
        pages = [
            client.get("/ns/photos", params={"prefix": "xss/"}),
            client.get("/object/photos", params={"key": XSS_KEY}),
            client.get("/search", params={"q": "script"}),
            client.get("/search", params={"q": '<script>alert("q")</script>'}),
            client.get("/ns/" + urllib.parse.quote('<script>alert("ns")</script>')),
        ]
        for r in pages:
            assert "<script>alert" not in r.text and "<img src=x" not in r.text, r.url
        assert "&lt;script&gt;alert(&#34;key&#34;)&lt;/script&gt;" in pages[1].text
        assert "&lt;img src=x onerror=alert(&#34;meta&#34;)&gt;" in pages[1].text
        assert XSS_META  # the metadata value is in the lake, as written
        # a download is never rendered by the browser, whatever the object claims to be
        raw = client.get("/raw/photos", params={"key": XSS_KEY})
        assert raw.headers["content-type"] == "application/octet-stream"
        assert raw.headers["content-disposition"].startswith("attachment;")
        assert raw.content == b"hello"


def test_every_preview_kind_renders(ui_lake: dict[str, Any], clients: list[httpx.Client]) -> None:
    with server(["ui"], ui_lake["lake"]) as url:
        client = client_for(url, clients)

        def preview(key: str) -> str:
            r = client.get("/object/photos", params={"key": key})
            assert r.status_code == 200, key
            return r.text

        parquet = preview("tables/metrics.parquet")
        assert 'data-kind="table"' in parquet and "30 rows in 3 row groups" in parquet
        assert "<th>epoch<br>" in parquet and "<td>0.5</td>" in parquet
        jsonl = preview("tables/events.jsonl")
        assert 'data-kind="table"' in jsonl and "<td>click</td>" in jsonl
        doc = preview("notes/config.json")
        assert 'data-kind="json"' in doc and "&#34;layers&#34;: [" in doc
        assert 'data-kind="text"' in preview("notes/readme.txt")
        binary = preview("blobs/weights.bin")
        assert 'data-kind="binary"' in binary and "00 01 02 03" in binary
        broken = preview("broken/truncated.png")
        assert 'id="preview-error"' in broken and "89 50 4e 47" in broken


def test_the_local_ui_serves_the_owner_and_stays_on_loopback(ui_lake: dict[str, Any]) -> None:
    import subprocess
    import sys

    from _uiserver import _env

    r = subprocess.run(
        [sys.executable, "-m", "lakeloop", "ui", "--lake", str(ui_lake["lake"]),
         "--host", "0.0.0.0"],
        env=_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "loopback" in r.stderr and "--login" in r.stderr
    assert "Traceback" not in r.stderr
    # on loopback it serves every namespace to the owner, without a login
    with server(["ui"], ui_lake["lake"]) as url, httpx.Client(base_url=url) as client:
        home = client.get("/")
        assert home.status_code == 200
        assert "/ns/photos" in home.text and "/ns/secret" in home.text
        assert "log out" not in home.text
    # with --login it asks for a key, as the gateway's /ui does
    env = {"LAKELOOP_CREDENTIALS": str(ui_lake["credentials"])}
    with server(["ui", "--login"], ui_lake["lake"], env) as url, httpx.Client(base_url=url) as c:
        assert c.get("/runs").headers["location"] == "/login?next=%2Fruns"
        r = post_login(c, ui_lake["bob"], "/login")
        assert r.status_code == 303
        home = c.get("/").text
        assert "/ns/secret" in home and "/ns/photos" not in home


def test_session_values() -> None:
    signer = SessionSigner(b"s" * 32, lifetime=60)
    value = signer.dump("LLKEY", "the secret", now=1000.0)
    session = signer.load(value, now=1050.0)
    assert session is not None and session.access_key == "LLKEY"
    assert signer.matches(session, "the secret") and not signer.matches(session, "another")
    assert "the secret" not in str(session)
    assert signer.load(value, now=1061.0) is None  # expired
    assert SessionSigner(b"t" * 32, lifetime=60).load(value, now=1000.0) is None  # other secret
    body, sig = value.split(".")
    assert signer.load(body + "." + sig[::-1], now=1000.0) is None
    for junk in ("", "x", "a.b.c", ".", "e30.", None):
        assert signer.load(junk, now=1000.0) is None
    # CSRF tokens: made for one cookie value by this server only
    token = signer.csrf_token(value)
    assert signer.check_csrf(value, token)
    assert not signer.check_csrf(value + "x", token)
    assert not SessionSigner(b"t" * 32, lifetime=60).check_csrf(value, token)
    for cookie, tok in ((None, token), (value, None), ("", ""), (value, "")):
        assert not signer.check_csrf(cookie, tok)


def test_charts_escape_labels_and_draw_open_bounds() -> None:
    svg = line_chart({"<b>acc</b>": [(1, 0.5), (2, 0.75), (3, float("nan"))]}, title="<t>")
    assert "<b>" not in svg and "&lt;b&gt;acc&lt;/b&gt;" in svg
    assert svg.count("<circle") == 2  # NaN is left out
    rows = [
        IntervalRow("<v1>", 0.01, -0.02, None, "promote"),
        IntervalRow("v2", -0.05, None, -0.03, "block"),
    ]
    svg = interval_chart(rows, references=[(0.0, "zero"), (-0.02, "-margin")])
    assert "<v1>" not in svg and "&lt;v1&gt;" in svg
    assert svg.count("<circle") == 2 and "#dc2626" in svg and "#16a34a" in svg
    assert "no values" in interval_chart([])


def test_listing_pages_find_every_folder_and_object_once(tmp_path: Path) -> None:
    """Pages of a prefix, concatenated, are exactly its folders and objects (compared with
    a brute-force split of every key), whatever the page size."""
    import random

    from lakeloop import Lake
    from lakeloop.ui._listing import list_page

    rng = random.Random(7)
    keys = set()
    for _ in range(250):
        depth = rng.choice([1, 1, 2, 3])
        keys.add(
            "/".join(rng.choice(["a", "b", "ab", "b-", "é", "z9"]) for _ in range(depth))
            + f"{rng.randrange(50)}"
        )
    with Lake.open(tmp_path / "lake", create=True, background=False) as lake:
        ns = lake.create_namespace("keys")
        ns.put_many([(k, b"x") for k in keys])
        for prefix in ["", "a/", "b/", "ab/b-/", "nothing/"]:
            under = sorted(k for k in keys if k.startswith(prefix))
            want_objects = [k for k in under if "/" not in k[len(prefix) :]]
            want_folders = sorted(
                {
                    prefix + k[len(prefix) :].split("/")[0] + "/"
                    for k in under
                    if "/" in k[len(prefix) :]
                }
            )
            for size in (1, 7, 1000):
                objects: list[str] = []
                folders: list[str] = []
                cursor = None
                while True:
                    page_objects, page_folders, cursor = list_page(ns, prefix, cursor, size)
                    assert len(page_objects) + len(page_folders) <= size
                    objects += [o.key for o in page_objects]
                    folders += page_folders
                    if cursor is None:
                        break
                assert objects == want_objects and sorted(folders) == want_folders, (prefix, size)
        # a start before the prefix, inside it, and past it (the store's range bounds)
        under_b = sorted(k for k in keys if k.startswith("b/"))
        assert [i.key for i in ns.list("b/", start_after="a")] == under_b
        assert [i.key for i in ns.list("b/", start_after=under_b[5])] == under_b[6:]
        assert list(ns.list("b/", start_after="c")) == []


def test_a_decision_whose_promotion_was_refused_does_not_show_champion_moved(
    tmp_path: Path,
) -> None:
    """A decision records that it asks to promote before the promotion is tried; when the
    compare-and-set refuses it (champion moved meanwhile) the UI must not say it moved."""
    from sklearn.linear_model import LogisticRegression

    from lakeloop import Lake
    from lakeloop.registry import Registry

    x, y = [[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]
    with Lake.open(tmp_path / "lake", create=True, background=False) as lake:
        reg = Registry(lake)
        v1, v2, v3 = (reg.register("m", LogisticRegression().fit(x, y)) for _ in range(3))
        base = {"kind": "ci", "outcome": "promote", "passed": True, "promoted": True}
        first = reg.record_decision("m", {**base, "candidate": v1.ref, "champion": None})
        reg.promote(v1.ref, decision=first, reason="first")
        won = reg.record_decision("m", {**base, "candidate": v2.ref, "champion": v1.ref})
        lost = reg.record_decision("m", {**base, "candidate": v3.ref, "champion": v1.ref})
        reg.promote(v2.ref, decision=won, reason="won")
        with pytest.raises(Exception, match="champion"):
            reg.promote(v3.ref, decision=lost, reason="lost the race")
    with server(["ui"], tmp_path / "lake") as url, httpx.Client(base_url=url) as client:

        def moved(rec: dict[str, Any]) -> str:
            page = client.get(f"/models/m/decisions/{rec['id']}")
            assert page.status_code == 200
            found = re.search(r"<th>champion moved</th><td>(\w+)</td>", page.text)
            assert found, page.text[:2000]
            return found.group(1)

        assert [moved(r) for r in (first, won, lost)] == ["yes", "yes", "no"]
        listing = client.get("/models/m").text
        assert listing.count(" promoted</td>") == 2
