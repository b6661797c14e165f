"""Property: whatever a guesser and the clock do, the setup-code rules bound what can be guessed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lancert.terminal.codes import SetupCodes

# The specification's numbers, written out (not imported): 300 s per code, 5 checked wrong guesses, then
# 30 s during which nothing is checked.
LIFETIME, WRONG_TRIES, COOLDOWN = 300, 5, 30

Action = st.one_of(
    st.tuples(st.just("wait"), st.floats(min_value=0, max_value=2 * LIFETIME)),
    st.tuples(st.just("guess"), st.text(alphabet="23456789ABC", min_size=8, max_size=8)),
    st.tuples(st.just("right"), st.none()),
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@given(st.lists(Action, max_size=80))
@settings(max_examples=200, deadline=None)
def test_a_code_accepts_at_most_once_and_never_more_than_five_checked_wrong_guesses(actions: list) -> None:
    clock = Clock()
    codes = SetupCodes(clock)
    codes.generate()
    used: set[str] = set()
    wrong_on_code: dict[str, int] = {}
    for kind, value in actions:
        if kind == "wait":
            clock.now += value
            continue
        shown = codes.current()
        if kind == "right":
            if shown is None:
                continue
            accepted = codes.consume(shown.code)
            assert not (accepted and shown.cooldown_seconds > 0)  # the cooldown refuses even the right code
            if accepted:
                assert shown.code not in used
                used.add(shown.code)
                assert codes.current() is None
            continue
        if shown is None or value == shown.code:
            continue
        assert codes.consume(value) is False
        if shown.cooldown_seconds == 0:
            wrong_on_code[shown.code] = wrong_on_code.get(shown.code, 0) + 1
            assert wrong_on_code[shown.code] <= WRONG_TRIES
            if wrong_on_code[shown.code] == WRONG_TRIES:
                after = codes.current()
                assert after is not None and after.code != shown.code
                assert after.cooldown_seconds == COOLDOWN
