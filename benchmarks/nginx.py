"""A private nginx answering a static 302: the HTTP ceiling of this machine. Its own config, pid file, logs
and temp dirs in a work directory; `daemon off`, so it is a child process we stop ourselves."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks import procs

STATIC_LOCATION = "https://shop.example.com/p/0?ct_click=0000000000000000"

CONFIG = """\
daemon off;
master_process on;
worker_processes {workers};
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 1000000;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            add_header Cache-Control "private, no-store" always;
            return 302 "{location}";
        }}
    }}
}}
"""


def nginx_binary() -> str:
    return procs.binary("nginx", "nginx-light", "/usr/sbin/nginx")


def nginx_version() -> str:
    out = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, check=False)
    return (out.stderr or out.stdout).strip().removeprefix("nginx version: ")


@contextmanager
def private_nginx(
    work: Path, *, workers: int, location: str = STATIC_LOCATION
) -> Iterator[tuple[int, subprocess.Popen]]:
    """Run nginx with `workers` worker processes on a free loopback port; yields (port, master process)."""
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    conf = work / "nginx.conf"
    conf.write_text(CONFIG.format(workers=workers, work=work, port=port, location=location))
    cmd = [nginx_binary(), "-p", str(work), "-c", str(conf), "-e", str(work / "error.log")]
    proc = procs.start(cmd, log_path=work / "stdout.log")
    try:
        procs.wait_http(proc, port, "/probe", ok=(302,), timeout_s=20)
        yield port, proc
    finally:
        procs.stop(proc)
