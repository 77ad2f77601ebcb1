"""The aws command line, s3fs/fsspec, pyarrow and DuckDB, unmodified, against the gateway."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def _aws(gateway: Any, *args: str) -> str:
    cmd = [sys.executable, "-m", "awscli", "--endpoint-url", gateway.url, *args]
    done = subprocess.run(cmd, env=gateway.env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_aws_cli_cp_sync_ls(gateway: Any, tmp_path: Path) -> None:
    b = gateway.bucket("cli")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(5):
        (src / f"f{i}.txt").write_text(f"file {i}\n")
    (src / "sub" / "deep.bin").write_bytes(os.urandom(3000))
    _aws(gateway, "s3", "cp", "--recursive", str(src), f"s3://{b}/up/")
    listing = _aws(gateway, "s3", "ls", "--recursive", f"s3://{b}/")
    assert "up/sub/deep.bin" in listing and listing.count("up/f") == 5
    (src / "f9.txt").write_text("new\n")
    out = _aws(gateway, "s3", "sync", str(src), f"s3://{b}/up/")
    assert "f9.txt" in out and "f1.txt" not in out  # only the new file is copied
    dst = tmp_path / "dst"
    _aws(gateway, "s3", "sync", f"s3://{b}/up/", str(dst))
    assert (dst / "sub" / "deep.bin").read_bytes() == (src / "sub" / "deep.bin").read_bytes()
    assert sorted(p.name for p in dst.iterdir()) == sorted(p.name for p in src.iterdir())
    head = _aws(gateway, "s3api", "head-object", "--bucket", b, "--key", "up/f1.txt")
    assert '"ContentLength": 7' in head
    assert b in _aws(gateway, "s3", "ls")


def test_s3fs_through_fsspec(gateway: Any) -> None:
    import fsspec

    b = gateway.bucket("fs")
    fs = fsspec.filesystem(
        "s3",
        key=gateway.admin.access,
        secret=gateway.admin.secret,
        client_kwargs={"endpoint_url": gateway.url, "region_name": "us-east-1"},
        skip_instance_cache=True,
    )
    with fs.open(f"{b}/dir/a.txt", "wb") as f:
        f.write(b"through fsspec")
    fs.pipe(f"{b}/dir/b.txt", b"piped")
    assert fs.cat(f"{b}/dir/a.txt") == b"through fsspec"
    assert sorted(fs.ls(f"{b}/dir", detail=False)) == [f"{b}/dir/a.txt", f"{b}/dir/b.txt"]
    assert fs.info(f"{b}/dir/b.txt")["size"] == 5
    with fs.open(f"{b}/dir/a.txt", "rb") as f:
        f.seek(8)
        assert f.read() == b"fsspec"
    fs.rm(f"{b}/dir/a.txt")
    assert not fs.exists(f"{b}/dir/a.txt")


def test_pyarrow_parquet(gateway: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyarrow import fs as pafs

    b = gateway.bucket("pa")
    s3 = pafs.S3FileSystem(
        access_key=gateway.admin.access,
        secret_key=gateway.admin.secret,
        endpoint_override=gateway.url.removeprefix("http://"),
        scheme="http",
        region="us-east-1",
    )
    table = pa.table({"id": list(range(1000)), "name": [f"n{i}" for i in range(1000)]})
    pq.write_table(table, f"{b}/t/data.parquet", filesystem=s3)
    back = pq.read_table(f"{b}/t/data.parquet", filesystem=s3)
    assert back.equals(table)
    info = s3.get_file_info(pafs.FileSelector(f"{b}/t"))
    assert [i.path for i in info] == [f"{b}/t/data.parquet"]


def _duckdb(gateway: Any) -> Any:
    import duckdb
    import duckdb_extension_httpfs

    ext = (
        Path(duckdb_extension_httpfs.__file__).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / "httpfs.duckdb_extension"
    )
    if not ext.exists():
        pytest.fail(f"duckdb-extension-httpfs does not match duckdb {duckdb.__version__}")
    con = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    con.execute(f"LOAD '{ext}'")
    host = gateway.url.removeprefix("http://")
    con.execute(
        "CREATE SECRET lake (TYPE s3, KEY_ID ?, SECRET ?, ENDPOINT ?, URL_STYLE 'path', "
        "USE_SSL false, REGION 'us-east-1')",
        [gateway.admin.access, gateway.admin.secret, host],
    )
    return con


def test_duckdb_reads_csv_and_parquet(gateway: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    b = gateway.bucket("duck")
    s3 = gateway.boto3()
    s3.put_object(Bucket=b, Key="t.csv", Body=b"a,b\n1,x\n2,y\n3,z\n")
    table = pa.table({"v": [1.5, 2.5, 3.0]})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    s3.put_object(Bucket=b, Key="p/t.parquet", Body=sink.getvalue().to_pybytes())
    con = _duckdb(gateway)
    rows = con.execute(f"SELECT a, b FROM read_csv('s3://{b}/t.csv') ORDER BY a").fetchall()
    assert rows == [(1, "x"), (2, "y"), (3, "z")]
    total = con.execute(f"SELECT sum(v) FROM read_parquet('s3://{b}/p/*.parquet')").fetchone()
    assert total == (7.0,)
