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

from lancert.terminal.codes import SetupCodes
from lancert_cli import lancert

REFUSED = {"error": "invalid, expired or already used setup code"}

# The contract, from the specification (README "The setup code and the odds of guessing it"), written out
# here and never imported from the code: weakening a rule in lancert.terminal.codes must fail these tests.
SPEC_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # 31 symbols, no 0 O 1 I L
SPEC_LENGTH = 8
SPEC_LIFETIME = 300
SPEC_WRONG_PER_ADDRESS = 4  # checked wrong codes per address and per code
SPEC_WRONG_IN_ALL = 5  # checked wrong codes per code, after which an address gets only its first check


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_specified_alphabet_has_31_symbols_without_look_alikes() -> None:
    assert len(set(SPEC_ALPHABET)) == len(SPEC_ALPHABET) == 31
    assert not set("0O1IL") & set(SPEC_ALPHABET)


def test_codes_have_eight_characters_drawn_from_the_whole_alphabet() -> None:
    codes = SetupCodes(FakeClock())
    seen: set[str] = set()
    for _ in range(300):
        code = codes.generate().code
        assert len(code) == SPEC_LENGTH
        assert set(code) <= set(SPEC_ALPHABET)
        seen |= set(code)
    # 2,400 draws: the chance that one of the 31 symbols never comes up is below 31 * (30/31)^2400 < 1e-32.
    # A smaller alphabet would shrink the 31^8 codes the README's odds are computed from.
    assert seen == set(SPEC_ALPHABET)


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
    assert first.seconds_left == SPEC_LIFETIME == 300
    clock.now += 299.5
    assert codes.current().code == first.code
    assert codes.current().seconds_left == 1
    clock.now += 0.5
    rotated = codes.current()
    assert rotated.code != first.code
    assert rotated.seconds_left == 300
    assert codes.consume(first.code) is False
    assert codes.consume(rotated.code) is True


def test_a_code_still_works_in_its_last_second() -> None:
    clock = FakeClock()
    codes = SetupCodes(clock)
    code = codes.generate().code
    clock.now += 299.9
    assert codes.consume(code) is True


def test_a_code_is_refused_at_300_seconds() -> None:
    clock = FakeClock()
    codes = SetupCodes(clock)
    code = codes.generate().code
    clock.now += 300
    assert codes.consume(code) is False


def test_rotation_keeps_the_300_second_rhythm_of_the_screen() -> None:
    # The screen refreshes every 300 s from the last Generate Code: after 700 s the code shown is the third
    # one, 100 s into its life, not a code that starts its 300 s when somebody happens to look.
    clock = FakeClock()
    codes = SetupCodes(clock)
    codes.generate()
    clock.now += 700
    assert codes.current().seconds_left == 200


def test_countdown_never_shows_more_than_the_lifetime() -> None:
    # At this clock value (now + 300.0) - now is 300.00000000000006: CI once saw "refreshes in 301 s".
    clock = FakeClock()
    clock.now = 130835.82526461179
    assert (clock.now + 300.0) - clock.now > 300
    codes = SetupCodes(clock)
    assert codes.generate().seconds_left == 300


def test_wrong_codes_from_any_number_of_addresses_never_replace_the_code() -> None:
    """Before: 4 + 1 wrong codes from two addresses burnt the code and cooled the terminal down for 30 s,
    so two guessers kept every POS from pairing. Now only 300 s or Generate Code replace it."""
    codes = SetupCodes(FakeClock())
    code = codes.generate().code
    for i in range(40):
        assert codes.consume("WRONGXXX", f"10.0.{i // 4}.{i % 4 + 1}") is False
    assert codes.current().code == code
    assert codes.consume(code, "10.0.99.20") is True


def test_after_five_wrong_codes_in_all_an_address_gets_only_its_first_check() -> None:
    """The budget cannot be sprayed: past 5 wrong codes on a code, an address that guessed wrong is
    refused unchecked (even with the right code) and a new address gets one check."""
    codes = SetupCodes(FakeClock())
    code = codes.generate().code
    for source in ("10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"):
        assert codes.consume("WRONGXXX", source) is False
    assert codes.current().wrong_attempts == SPEC_WRONG_IN_ALL == 5
    assert codes.consume(code, "10.0.0.1") is False  # 3 wrong before: no 4th check now
    assert codes.consume(code, "10.0.0.2") is False
    assert codes.consume("WRONGXXX", "10.0.0.3") is False  # its one check
    assert codes.consume(code, "10.0.0.3") is False
    assert codes.current().wrong_attempts == 6
    assert codes.consume(code, "10.0.0.4") is True  # the POS: never guessed wrong, checked


def test_four_wrong_attempts_keep_the_code() -> None:
    codes = SetupCodes(FakeClock())
    code = codes.generate().code
    for source in ("10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"):
        assert codes.consume("WRONGXXX", source) is False
    assert codes.current().code == code
    assert codes.consume(code.lower(), "10.0.0.3") is True


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
    assert (shown.code, shown.wrong_attempts) == (code, SPEC_WRONG_PER_ADDRESS)
    assert shown.blocked_sources == ("192.168.1.66",)
    assert codes.consume(code, "192.168.1.66") is False  # even the right code, from the guesser
    assert codes.consume(code, "192.168.1.20") is True  # the cashier's POS pairs


def test_an_ipv6_guesser_in_the_pos_64_does_not_block_it() -> None:
    """A shop LAN is one /64: counting wrong codes per /64 let one guessing neighbour (or a host with
    two prefixes) block the POS beside it."""
    codes = SetupCodes(FakeClock())
    code = codes.generate().code
    for _ in range(10):
        assert codes.consume("WRONGXXX", "2001:db8:1:2::66") is False
    assert codes.current().blocked_sources == ("2001:db8:1:2::66",)
    assert codes.consume(code, "2001:db8:1:2::66") is False
    assert codes.consume(code, "2001:db8:1:2::20") is True


def test_an_ipv4_mapped_address_counts_as_the_ipv4_one() -> None:
    codes = SetupCodes(FakeClock())
    code = codes.generate().code
    for _ in range(4):
        codes.consume("WRONGXXX", "::ffff:192.168.1.66")
    assert codes.blocked("192.168.1.66")
    assert codes.consume(code, "192.168.1.66") is False


def test_wrong_tries_are_counted_per_code() -> None:
    # 4 wrong tries, then the code rotates out at 300 s: the new code gets its own 5 tries.
    clock = FakeClock()
    codes = SetupCodes(clock)
    codes.generate()
    for source in ("10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"):
        codes.consume("WRONGXXX", source)
    clock.now += 300
    second = codes.current().code
    for source in ("10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"):
        assert codes.consume("WRONGXXX", source) is False
    assert codes.consume(second, "10.0.0.3") is True


def test_generate_code_resets_every_address() -> None:
    codes = SetupCodes(FakeClock())
    codes.generate()
    for source in ("10.0.0.1",) * 4 + ("10.0.0.2",):
        codes.consume("WRONGXXX", source)
    fresh = codes.generate()
    assert (fresh.seconds_left, fresh.wrong_attempts, fresh.blocked_sources) == (300, 0, ())
    assert codes.consume(fresh.code, "10.0.0.1") is True


def test_a_code_works_at_once_even_on_a_clock_just_after_boot() -> None:
    # The monotonic clock starts near 0 at boot: nothing about a fresh code may depend on it being large.
    clock = FakeClock()
    clock.now = 0.0
    codes = SetupCodes(clock)
    shown = codes.generate()
    assert shown.seconds_left == 300
    assert codes.consume(shown.code) is True


def test_a_pos_may_type_the_code_with_spaces_dashes_or_lower_case() -> None:
    codes = SetupCodes(FakeClock())
    code = codes.generate().code
    assert codes.consume(f" {code[:4].lower()}-{code[4:]} ") is True


def test_the_environment_cannot_move_the_setup_code_clock(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only code in the process can give SetupCodes another clock (tests/lancert_with_hooks.py does, for
    the running terminal); the variable older versions obeyed must not stretch or cut a code's life."""
    offset = tmp_path / "offset"
    offset.write_text("0")
    monkeypatch.setenv("LANCERT_TERMINAL_CLOCK_OFFSET_FILE", str(offset))
    codes = SetupCodes()
    code = codes.generate().code
    offset.write_text("301")
    assert codes.current().code == code
    assert codes.consume(code) is True


def test_nothing_is_accepted_before_the_first_generate_code() -> None:
    codes = SetupCodes(FakeClock())
    assert codes.current() is None
    assert not codes.blocked("192.168.1.66")
    assert codes.consume("23456789") is False


# -- on a running terminal, with its clock moved by the test ---------------------------------------------


def test_expired_code_gets_the_same_401_and_a_new_code_is_shown(terminal: RunningTerminal) -> None:
    old = terminal.code()
    terminal.advance(300 + 1)
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


def test_two_guessing_addresses_neither_burn_the_code_nor_block_the_pos(terminal: RunningTerminal) -> None:
    code = terminal.code()["code"]
    wrong = "2" * 8 if code != "2" * 8 else "3" * 8
    for source in ("127.0.0.2",) * 4 + ("127.0.0.3",) * 4:
        response = terminal.pair_raw({"posId": "guesser", "setupCode": wrong}, source=source)
        assert (response.status_code, response.json()) == (401, REFUSED)
    shown = terminal.current()
    assert shown["code"] == code and sorted(shown["guessing_from"]) == ["127.0.0.2", "127.0.0.3"]
    refused = terminal.pair_raw({"posId": "guesser", "setupCode": code}, source="127.0.0.3")
    assert (refused.status_code, refused.json()) == (401, REFUSED)
    assert terminal.pair_raw({"posId": "cashier", "setupCode": code}, source="127.0.0.4").status_code == 200


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
    for _ in range(5 + 1):
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


@pytest.mark.slow
def test_terminal_code_cli_without_a_running_terminal_says_so(tmp_path) -> None:
    result = lancert("terminal", "code", "--state-dir", str(tmp_path), check=False)
    assert result.returncode == 1
    hint = f"start it: lancert terminal run --state-dir {tmp_path}"
    assert result.stderr == f"lancert: terminal is not running ({hint})\n"


def test_blocked_names_only_the_address_that_used_its_four_wrong_guesses() -> None:
    """What the terminal's screen and log say about a guesser (``SetupCodes.blocked``), per the README:
    4 wrong guesses per address on a code, then that address is refused; a new code starts everyone again."""
    clock = FakeClock()
    codes = SetupCodes(clock)
    code = codes.generate().code
    for attempt in range(4):
        assert not codes.blocked("192.168.1.66"), attempt
        codes.consume("WRONGXXX", "192.168.1.66")
    assert codes.blocked("192.168.1.66")
    assert not codes.blocked("192.168.1.20")
    clock.now += 300
    assert not codes.blocked("192.168.1.66")
    replacement = codes.current()
    assert replacement is not None and replacement.code != code


def test_blocked_counts_an_ipv6_guesser_by_its_address() -> None:
    codes = SetupCodes(FakeClock())
    codes.generate()
    for _ in range(4):
        codes.consume("WRONGXXX", "2001:db8:1:2::1")
    assert codes.blocked("2001:db8:1:2::1")
    assert not codes.blocked("2001:db8:1:2::ffff")


def test_after_a_pairing_no_address_is_blocked_until_the_next_code() -> None:
    codes = SetupCodes(FakeClock())
    code = codes.generate().code
    for _ in range(3):
        codes.consume("WRONGXXX", "192.168.1.66")
    assert codes.consume(code, "192.168.1.20") is True
    assert not codes.blocked("192.168.1.66")
    assert codes.consume("WRONGXXX", "192.168.1.66") is False  # nothing to guess: no code on screen
    fresh = codes.generate()
    assert (fresh.wrong_attempts, fresh.blocked_sources) == (0, ())
