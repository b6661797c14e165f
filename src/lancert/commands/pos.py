"""``lancert pos``: the POS side of paired mutual TLS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from websockets.exceptions import WebSocketException

from lancert.errors import LancertError
from lancert.pki import fingerprint_sha256, read_certificate
from lancert.pos.client import CA_FILE, PosClient

app = typer.Typer(help="The POS side of terminal pairing: pair once, then call over mutual TLS.",
                  no_args_is_help=True)


@app.command("pair")
def pair(
    terminal: Annotated[str, typer.Option("--terminal", help="https://HOST:PORT/ (or wss://HOST:PORT/).")],
    pos_id: Annotated[str, typer.Option("--pos-id", help="This POS's id: 1-64 letters, digits, - or _.")],
    code: Annotated[str, typer.Option("--code", help="The setup code shown on the terminal.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where key.pem (0600), cert.pem go.")],
    ca: Annotated[Path | None, typer.Option("--ca", help="Terminal root CA; else fetched.")] = None,
) -> None:
    """Pair with a terminal using its setup code; store the key, certificate and chain in DIR."""
    client = PosClient.pair(terminal, pos_id=pos_id, setup_code=code, directory=directory, ca=ca)
    client.close()
    root = read_certificate(directory / CA_FILE)
    typer.echo(f"paired posId {pos_id} with {client.terminal_url}")
    typer.echo(f"  key:   {directory / 'key.pem'} (mode 0600)")
    typer.echo(f"  cert:  {directory / 'cert.pem'}  chain: {directory / 'chain.pem'}")
    typer.echo(f"  terminal root CA SHA-256 {fingerprint_sha256(root)}"
               + ("" if ca else " (fetched on first use: compare it with the terminal's screen)"))


@app.command("call")
def call(
    directory: Annotated[Path, typer.Option("--dir", help="The directory `pos pair` wrote.")],
    url: Annotated[str, typer.Argument(help="https:// or wss:// URL on the terminal, or a path.")],
    data: Annotated[str | None, typer.Option("--data", help="JSON body (POST) or WebSocket message.")] = None,
) -> None:
    """Call the paired terminal over mutual TLS and print its answer (GET, or POST with --data; wss:// sends
    --data as one message, default {"type": "status"}, and prints the reply)."""
    if data is not None:
        try:
            body = json.loads(data)
        except json.JSONDecodeError:
            raise LancertError("--data: not valid JSON") from None
    else:
        body = None
    with PosClient(directory) as client:
        full = client.url(url)
        if urlsplit(full).scheme == "wss":
            try:
                with client.websocket(full) as ws:
                    ws.send(json.dumps(body if body is not None else {"type": "status"}))
                    reply = ws.recv(timeout=30)
            except (OSError, WebSocketException, TimeoutError) as exc:
                raise LancertError(f"WebSocket call failed: {exc}") from None
            _refuse_error_reply(reply)
            typer.echo(reply)
            return
        response = client.request("POST" if body is not None else "GET", full, data=body)
        if response.status_code >= 400:
            try:
                message = response.json().get("error")
            except (ValueError, AttributeError):
                message = None
            suffix = f": {message}" if message else ""
            raise LancertError(f"terminal answered {response.status_code}{suffix}")
        typer.echo(response.text)


def _refuse_error_reply(reply: str | bytes) -> None:
    """A WebSocket answer ``{"status": 4xx, "error": ...}`` ends the command like an HTTP 4xx does."""
    try:
        value = json.loads(reply)
    except ValueError:
        return
    if isinstance(value, dict) and isinstance(value.get("status"), int) and value["status"] >= 400:
        raise LancertError(f"terminal answered {value['status']}: {value.get('error', '')}".rstrip(": "))
