"""The setup code: alphabet, single use, expiry and rotation, lockout, the race, and bad input."""

from __future__ import annotations

import json
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from terminal_harness import RunningTerminal
from websockets.sync.client import connect

from lancert.terminal.codes import (
    ALPHABET,
    BURN_COOLDOWN,
    CODE_LENGTH,
    CODE_LIFETIME,
    MAX_WRONG_ATTEMPTS,
    SetupCodes,
)
from lancert_cli import lancert

REFUSED = {"error": "invalid, expired or already used setup code"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_codes_have_eight_characters_without_look_alikes() -> None:
    assert not set("0O1IL") & set(ALPHABET)
    assert len(set(ALPHABET)) == len(ALPHABET) == 31
    codes = SetupCodes(FakeClock())
    for _ in range(50):
        code = codes.generate().code
        assert len(code) == CODE_LENGTH
        assert set(code) <= set(ALPHABET)


def test_code_works_once() -> None:
    codes = SetupCodes(FakeClock())
    code = codes.generate().code
    assert codes.consume(code) is True
    assert codes.consume(code) is False
    assert codes.current() is None


def test_code_expires_after_300_seconds_and_rotates() -> None:
    clock = FakeClock()
    codes = SetupCodes(clock)
    first = codes.generate()
    assert first.seconds_left == 300
    clock.now += CODE_LIFETIME - 1
    assert codes.current().code == first.code
    assert codes.current().seconds_left == 1
    clock.now += 1
    rotated = codes.current()
    assert rotated.code != first.code
    assert rotated.seconds_left == 300
    assert codes.consume(first.code) is False
    assert codes.consume(rotated.code) is True


def test_countdown_never_shows_more_than_the_lifetime() -> None:
    # At this clock value (now + 300.0) - now is 300.00000000000006: CI once saw "refreshes in 301 s".
    clock = FakeClock()
    clock.now = 130835.82526461179
    assert (clock.now + CODE_LIFETIME) - clock.now > CODE_LIFETIME
    codes = SetupCodes(clock)
    assert codes.generate().seconds_left == 300
    for source in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"):
        codes.consume("WRONGONE", source)
    assert codes.current().cooldown_seconds == BURN_COOLDOWN


def test_five_wrong_attempts_from_two_addresses_burn_the_code_and_cool_down() -> None:
    clock = FakeClock()
    codes = SetupCodes(clock)
    code = codes.generate().code
    for source in ("10.0.0.1",) * 4 + ("10.0.0.2",):
        assert codes.consume("WRONGXXX", source) is False
    replacement = codes.current()
    assert replacement.code != code
    assert replacement.cooldown_seconds == BURN_COOLDOWN
    assert codes.consume(code) is False
    assert codes.consume(replacement.code) is False  # refused unchecked during the cooldown
    clock.now += BURN_COOLDOWN
    assert codes.consume(replacement.code) is True


def test_three_wrong_attempts_keep_the_code_for_the_same_address() -> None:
    codes = SetupCodes(FakeClock())
    code = codes.generate().code
    for _ in range(3):
        assert codes.consume("WRONGXXX", "10.0.0.1") is False
    assert codes.consume(code.lower(), "10.0.0.1") is True


def test_one_address_guessing_burns_only_its_own_attempts() -> None:
    clock = FakeClock()
    codes = SetupCodes(clock)
    code = codes.generate().code
    for _ in range(50):  # a flood from one machine: 4 wrong codes are checked, the rest refused unchecked
        assert codes.consume("WRONGXXX", "192.168.1.66") is False
    shown = codes.current()
    assert (shown.code, shown.cooldown_seconds, shown.wrong_attempts) == (code, 0, 4)
    assert shown.blocked_sources == ("192.168.1.66",)
    assert codes.consume(code, "192.168.1.66") is False  # even the right code, from the guesser
    assert codes.consume(code, "192.168.1.20") is True  # the cashier's POS pairs


def test_an_ipv6_guesser_is_counted_by_its_64_prefix() -> None:
    codes = SetupCodes(FakeClock())
    code = codes.generate().code
    for host in range(1, 5):  # privacy addresses of one machine
        assert codes.consume("WRONGXXX", f"2001:db8:1:2::{host}") is False
    assert codes.consume(code, "2001:db8:1:2::99") is False
    assert codes.current().blocked_sources == ("2001:db8:1:2::/64",)
    assert codes.consume(code, "::ffff:192.168.1.20") is True


# -- on a running terminal, with its clock moved by the test ---------------------------------------------


def test_expired_code_gets_the_same_401_and_a_new_code_is_shown(terminal: RunningTerminal) -> None:
    old = terminal.code()
    terminal.advance(CODE_LIFETIME + 1)
    shown = terminal.current()
    assert shown["code"] != old["code"]
    assert 0 < shown["seconds_left"] <= 300
    refused = terminal.pair_raw({"posId": "late", "setupCode": old["code"]})
    assert (refused.status_code, refused.json()) == (401, REFUSED)
    assert terminal.pair_raw({"posId": "late", "setupCode": shown["code"]}).status_code == 200


def test_used_code_gets_the_same_401(terminal: RunningTerminal) -> None:
    code = terminal.code()["code"]
    assert terminal.pair_raw({"posId": "once", "setupCode": code}).status_code == 200
    again = terminal.pair_raw({"posId": "twice", "setupCode": code})
    assert (again.status_code, again.json()) == (401, REFUSED)


def test_lockout_after_five_wrong_codes_from_two_addresses(terminal: RunningTerminal) -> None:
    code = terminal.code()["code"]
    wrong = "2" * 8 if code != "2" * 8 else "3" * 8
    for source in ("127.0.0.2",) * 4 + ("127.0.0.3",):
        response = terminal.pair_raw({"posId": "guesser", "setupCode": wrong}, source=source)
        assert (response.status_code, response.json()) == (401, REFUSED)
    burnt = terminal.pair_raw({"posId": "guesser", "setupCode": code}, source="127.0.0.4")
    assert (burnt.status_code, burnt.json()) == (401, REFUSED)
    shown = terminal.current()
    assert shown["code"] != code
    assert shown["cooldown_seconds"] > 0
    assert terminal.pair_raw({"posId": "patient", "setupCode": shown["code"]}).status_code == 401
    terminal.advance(BURN_COOLDOWN + 1)
    assert terminal.pair_raw({"posId": "patient", "setupCode": shown["code"]}).status_code == 200


def test_two_pos_racing_with_one_code_get_one_bundle(terminal: RunningTerminal) -> None:
    code = terminal.code()["code"]
    barrier = threading.Barrier(4)

    def attempt(i: int) -> int:
        barrier.wait()
        return terminal.pair_raw({"posId": f"racer-{i}", "setupCode": code}).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(attempt, range(4)))
    assert statuses == [200, 401, 401, 401]


POS_ID_RULE = "posId: must be 1 to 64 characters of letters, digits, '-' or '_'"


@pytest.mark.parametrize(("body", "error"), [
    ({"posId": "", "setupCode": "X"}, POS_ID_RULE),
    ({"posId": "a" * 65, "setupCode": "X"}, POS_ID_RULE),
    ({"posId": "pos 1", "setupCode": "X"}, POS_ID_RULE),
    ({"posId": "pos/../1", "setupCode": "X"}, POS_ID_RULE),
    ({"posId": 123, "setupCode": "X"}, POS_ID_RULE),
    ({"setupCode": "X"}, "posId: missing"),
    ({"posId": "123"}, "setupCode: missing"),
    ({"posId": "123", "setupCode": 12345678}, "setupCode: Input should be a valid string"),
    ({"posId": "123", "setupCode": "X", "admin": True}, "admin: unknown field"),
    (["posId", "123"], "body: must be a JSON object"),
    (b'{"posId": "123", "setupCode": ', "body: malformed JSON"),
    (b"\xff\xfe", "body: malformed JSON"),
])
def test_bad_pairing_input_is_a_400_naming_the_problem(
    terminal: RunningTerminal, body: object, error: str
) -> None:
    response = terminal.pair_raw(body)
    assert (response.status_code, response.json()) == (400, {"error": error})


def test_bad_input_does_not_count_as_a_wrong_code(terminal: RunningTerminal) -> None:
    code = terminal.code()["code"]
    for _ in range(MAX_WRONG_ATTEMPTS + 1):
        assert terminal.pair_raw({"posId": "bad id", "setupCode": "WRONG"}).status_code == 400
    assert terminal.current()["wrong_attempts"] == 0
    assert terminal.pair_raw({"posId": "good", "setupCode": code}).status_code == 200


def test_oversized_body_is_refused(terminal: RunningTerminal) -> None:
    body = json.dumps({"posId": "123", "setupCode": "X", "pad": "x" * 10_000}).encode()
    response = terminal.pair_raw(body)
    assert (response.status_code, response.json()) == (413, {"error": "body: larger than 4096 bytes"})

    def chunks():  # no Content-Length: the limit must hold while streaming
        for _ in range(10):
            yield b"x" * 1024

    streamed = httpx.post(
        terminal.https, content=chunks(), trust_env=False, headers={"Content-Type": "application/json"},
        verify=ssl.create_default_context(cadata=terminal.root_pem.decode()),
    )
    assert streamed.status_code == 413


def test_bad_input_over_wss_gets_the_same_answers(terminal: RunningTerminal) -> None:
    ctx = ssl.create_default_context(cadata=terminal.root_pem.decode())
    cases = [
        ('{"posId": "a b", "setupCode": "X"}', 400, POS_ID_RULE),
        ("{nope", 400, "body: malformed JSON"),
        ('{"posId": "ok", "setupCode": "WRONGONE"}', 401, REFUSED["error"]),
    ]
    terminal.code()
    for message, status, error in cases:
        with connect(terminal.wss, ssl=ctx, proxy=None) as ws:
            ws.send(message)
            assert json.loads(ws.recv(timeout=30)) == {"status": status, "error": error}


def test_terminal_code_cli_prints_code_countdown_and_details(terminal: RunningTerminal) -> None:
    text = lancert("terminal", "code", "--state-dir", str(terminal.state_dir)).stdout
    shown = terminal.current()
    assert f"code:      {shown['code']}\n" in text
    assert "refreshes: in 300 s\n" in text
    assert f"HTTPS:     {terminal.https}\n" in text
    assert f"WSS:       {terminal.wss}\n" in text
    assert f"port:      {terminal.info['port']}\n" in text
    as_json = json.loads(lancert("terminal", "code", "--state-dir", str(terminal.state_dir), "--json").stdout)
    assert as_json["code"] != shown["code"]  # a tap makes a new code
    assert (as_json["seconds_left"], as_json["https"], as_json["wss"]) == (300, terminal.https, terminal.wss)
    assert terminal.pair_raw({"posId": "cli-code", "setupCode": as_json["code"]}).status_code == 200


def test_terminal_code_cli_without_a_running_terminal_says_so(tmp_path) -> None:
    result = lancert("terminal", "code", "--state-dir", str(tmp_path), check=False)
    assert result.returncode == 1
    hint = f"start it: lancert terminal run --state-dir {tmp_path}"
    assert result.stderr == f"lancert: terminal is not running ({hint})\n"
