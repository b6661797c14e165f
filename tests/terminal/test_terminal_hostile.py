"""Hostile clients at the terminal (issue 9): guessers on the LAN, odd bodies and frames."""

from __future__ import annotations

import json
import ssl
import threading
import time

import httpx
import pytest
from terminal_harness import RunningTerminal
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from lancert.pos import PosClient


def test_a_guessing_flood_from_one_address_does_not_block_pairing(terminal: RunningTerminal) -> None:
    """Before: the 5-wrong-codes rule burnt the code for everyone (3 of 3 pairings failed at one guess
    per second, 5 of 5 during a flood). Now the guesser only burns its own attempts."""
    stop = threading.Event()
    sent: list[int] = []

    def flood() -> None:
        while not stop.is_set():
            sent.append(terminal.pair_raw({"posId": "guesser", "setupCode": "22222222"},
                                          source="127.0.0.2").status_code)

    guesser = threading.Thread(target=flood)
    guesser.start()
    try:
        for attempt in range(3):
            code = terminal.code()["code"]
            count = len(sent)
            while len(sent) < count + 6:  # the guesser has used up its attempts on this code
                stop.wait(0.01)
            paired = terminal.pair_raw({"posId": f"cashier-{attempt}", "setupCode": code}, source="127.0.0.1")
            assert paired.status_code == 200, paired.text
    finally:
        stop.set()
        guesser.join(30)
    assert set(sent) == {401}
    terminal.code()
    for _ in range(6):
        terminal.pair_raw({"posId": "guesser", "setupCode": "22222222"}, source="127.0.0.2")
    screen = terminal.current()
    assert screen["guessing_from"] == ["127.0.0.2"]
    page = httpx.get(terminal.info["screen"], params={"token": terminal.info["token"]}, trust_env=False)
    assert "Someone is guessing setup codes from 127.0.0.2" in page.text
    assert "Someone at 127.0.0.2 is guessing setup codes" in terminal.log()


def test_two_guessing_addresses_do_not_keep_the_pos_from_pairing(terminal: RunningTerminal) -> None:
    """The finding: two addresses (4 + 1 wrong codes) burnt every new code within a fraction of a second,
    0 of 3 POS pairings succeeded. Two flooding addresses now, and the POS pairs 3 of 3."""
    stop = threading.Event()
    sent: list[int] = []

    def flood(source: str) -> None:
        while not stop.is_set():
            sent.append(terminal.pair_raw({"posId": "guesser", "setupCode": "22222222"},
                                          source=source).status_code)

    guessers = [threading.Thread(target=flood, args=(s,)) for s in ("127.0.0.2", "127.0.0.3")]
    for guesser in guessers:
        guesser.start()
    try:
        for attempt in range(3):
            code = terminal.code()["code"]
            count = len(sent)
            while len(sent) < count + 12:  # both have used up their attempts on this code
                stop.wait(0.01)
            assert terminal.current()["code"] == code
            paired = terminal.pair_raw({"posId": f"cashier-{attempt}", "setupCode": code}, source="127.0.0.1")
            assert paired.status_code == 200, paired.text
    finally:
        stop.set()
        for guesser in guessers:
            guesser.join(30)
    assert set(sent) == {401}


def _log_since(terminal: RunningTerminal, mark: int) -> str:
    return terminal.log()[mark:]


def test_an_invalid_utf8_pairing_frame_leaves_no_traceback(terminal: RunningTerminal) -> None:
    mark = len(terminal.log())
    ctx = ssl.create_default_context(cadata=terminal.root_pem.decode())
    for frame in (b"\xff\xfe{", b'{"posId": "a\xc3", "setupCode": "x"}'):
        with connect(terminal.wss, ssl=ctx, proxy=None, open_timeout=30) as ws:
            ws.send(frame, text=True)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code in (1007, 1008)
    with connect(terminal.wss, ssl=ctx, proxy=None, open_timeout=30) as ws:
        ws.send(b"\x00binary", text=False)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
        assert closed.value.rcvd is not None
    time.sleep(0.5)  # let the terminal write what it would write
    log = _log_since(terminal, mark)
    assert "Traceback" not in log and "ERROR" not in log, log


def test_pairing_over_https_wants_a_json_content_type(terminal: RunningTerminal) -> None:
    body = {"posId": "typed", "setupCode": "22222222"}
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        refused = terminal.pair_raw(body, headers={"Content-Type": content_type})
        assert (refused.status_code, refused.json()) == (
            415, {"error": "body: must be sent as Content-Type: application/json"})
    code = terminal.code()["code"]
    accepted = terminal.pair_raw({"posId": "typed", "setupCode": code},
                                 headers={"Content-Type": "application/json; charset=utf-8"})
    assert accepted.status_code == 200


HUGE_AMOUNT = '{"amount": 1' + "0" * 4400 + ', "currency": "EUR"}'  # past Python's 4,300-digit limit


def test_a_number_of_4400_digits_is_a_400_over_https_and_wss(terminal: RunningTerminal, tmp_path) -> None:
    code = terminal.code()["code"]
    with PosClient.pair(terminal.https, pos_id="digits", setup_code=code, directory=tmp_path,
                        ca=terminal.root_pem) as pos:
        ctx = ssl.create_default_context(cadata=terminal.root_pem.decode())
        ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
        answer = httpx.post(pos.url("/api/v1/sale"), content=HUGE_AMOUNT, verify=ctx, trust_env=False,
                            headers={"Content-Type": "application/json"}, timeout=30)
        assert (answer.status_code, answer.json()) == (400, {"error": "body: a number has too many digits"})
        with pos.websocket() as ws:
            ws.send(HUGE_AMOUNT.replace("{", '{"type": "sale", ', 1))
            assert json.loads(ws.recv(timeout=30)) == {"status": 400,
                                                       "error": "body: a number has too many digits"}
            ws.send(json.dumps({"type": "status"}))  # the socket is still open and answering
            assert json.loads(ws.recv(timeout=30))["posId"] == "digits"
    assert "Traceback" not in terminal.log()
