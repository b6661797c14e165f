"""Hostile clients at the terminal (issue 9): guessers on the LAN, odd bodies and frames."""

from __future__ import annotations

import threading

import httpx
from terminal_harness import RunningTerminal


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
    assert screen["guessing_from"] == ["127.0.0.2"] and screen["cooldown_seconds"] == 0
    page = httpx.get(terminal.info["screen"], params={"token": terminal.info["token"]}, trust_env=False)
    assert "Someone is guessing setup codes from 127.0.0.2" in page.text
    assert "Someone at 127.0.0.2 is guessing setup codes" in terminal.log()
