"""Property: whatever a guesser and the clock do, the setup-code rules bound what can be guessed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lancert.terminal.codes import SetupCodes

# The specification's numbers, written out (not imported): 300 s per code, 5 checked wrong guesses, then
# 30 s during which nothing is checked.
LIFETIME, WRONG_TRIES, COOLDOWN = 300, 5, 30

SOURCE = st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3"])

Action = st.one_of(
    st.tuples(st.just("wait"), st.floats(min_value=0, max_value=2 * LIFETIME)),
    st.tuples(st.just("guess"), st.tuples(st.text(alphabet="23456789ABC", min_size=8, max_size=8), SOURCE)),
    st.tuples(st.just("right"), SOURCE),
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@given(st.lists(Action, max_size=80))
@settings(max_examples=200, deadline=None)
def test_a_code_accepts_at_most_once_and_never_more_than_five_checked_wrong_guesses(actions: list) -> None:
    """At most 5 wrong guesses are checked per code (then it burns), at most 4 per address (then that
    address is refused, even with the right code, until the code changes)."""
    clock = Clock()
    codes = SetupCodes(clock)
    codes.generate()
    used: set[str] = set()
    wrong_on_code: dict[str, int] = {}
    wrong_by_source: dict[tuple[str, str], int] = {}
    for kind, value in actions:
        if kind == "wait":
            clock.now += value
            continue
        shown = codes.current()
        if kind == "right":
            if shown is None:
                continue
            accepted = codes.consume(shown.code, value)
            assert not (accepted and shown.cooldown_seconds > 0)  # the cooldown refuses even the right code
            blocked = wrong_by_source.get((shown.code, value), 0) >= 4
            assert accepted == (shown.cooldown_seconds == 0 and not blocked)
            if accepted:
                assert shown.code not in used
                used.add(shown.code)
                assert codes.current() is None
            continue
        guess, source = value
        if shown is None or guess == shown.code:
            continue
        assert codes.consume(guess, source) is False
        if shown.cooldown_seconds == 0 and wrong_by_source.get((shown.code, source), 0) < 4:
            wrong_by_source[shown.code, source] = wrong_by_source.get((shown.code, source), 0) + 1
            wrong_on_code[shown.code] = wrong_on_code.get(shown.code, 0) + 1
            assert wrong_on_code[shown.code] <= WRONG_TRIES
            assert codes.current().wrong_attempts == wrong_on_code[shown.code] % WRONG_TRIES
            if wrong_on_code[shown.code] == WRONG_TRIES:
                after = codes.current()
                assert after is not None and after.code != shown.code
                assert after.cooldown_seconds == COOLDOWN
