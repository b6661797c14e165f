"""Memory of idle TLS connections: RSS of an ACME-only ``service run`` before and while it holds N
connections on its ACME port, each with its handshake done and nothing sent (what a browser's spare
connections, or a flood the connection guard has not yet evicted, cost the process).

    .venv/bin/python bench/tls_idle_memory.py [--connections 200] [--baseline-src DIR]

``--baseline-src``: an older checkout's ``src`` (``git archive <commit> src | tar -x -C /tmp/base``), run
the same way right after, for a before and after of one run.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import acme_issue  # noqa: E402 - the same service start as the ACME bench


def held_rss(connections: int, src: Path | None) -> tuple[float, float]:
    """RSS in MiB before the connections and while they are held."""
    with tempfile.TemporaryDirectory(prefix="lancert-bench-tls-") as tmp:
        proc, directory, root, _eab, _template, _hosts = acme_issue.start_lancert(Path(tmp), src)
        try:
            port = int(directory.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
            context = ssl.create_default_context(cafile=str(root))
            time.sleep(0.5)
            before = rss_mib(proc.pid)
            name = f"acme.{acme_issue.ZONE}"
            held = [context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=name)
                    for _ in range(connections)]
            time.sleep(0.5)
            during = rss_mib(proc.pid)
            for sock in held:
                sock.close()
            return before, during
        finally:
            proc.terminate()
            proc.wait(10)


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--baseline-src", type=Path, help="an older lancert's src, run after this one")
    opts = parser.parse_args()
    runs = [("lancert", None)] + ([("lancert-base", opts.baseline_src)] if opts.baseline_src else [])
    print(f"| server | RSS before | RSS with {opts.connections} idle TLS connections | KiB per connection |")
    print("|---|--:|--:|--:|")
    for name, src in runs:
        before, during = held_rss(opts.connections, src)
        each = (during - before) * 1024 / opts.connections
        print(f"| {name} | {before:.1f} MiB | {during:.1f} MiB | {each:.0f} |")


if __name__ == "__main__":
    main()
