"""Property: whatever guessers and the clock do, the setup-code rules bound what can be guessed, and a POS
that never guessed wrong is always checked."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lancert.terminal.codes import SetupCodes

# The specification's numbers, written out (not imported; README "The setup code and the odds of guessing
# it"): 300 s per code, 4 checked wrong guesses per address and code, and past 5 in all, one check for an
# address that has not guessed wrong, none for one that has. Guesses never replace the code.
LIFETIME, PER_ADDRESS, IN_ALL = 300, 4, 5

SOURCE = st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "2001:db8::1", "2001:db8::2",
                          "::ffff:10.0.0.1"])


def _key(source: str) -> str:
    return source.removeprefix("::ffff:")


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
@settings(max_examples=300, deadline=None)
def test_guesses_are_bounded_per_address_and_in_all_and_never_replace_the_code(actions: list) -> None:
    clock = Clock()
    codes = SetupCodes(clock)
    codes.generate()
    used: set[str] = set()
    wrong: dict[tuple[str, str], int] = {}  # (code, address) -> checked wrong guesses
    in_all: dict[str, int] = {}

    def checked(code: str, source: str) -> bool:
        mine = wrong.get((code, _key(source)), 0)
        return mine < PER_ADDRESS and (in_all.get(code, 0) < IN_ALL or mine == 0)

    for kind, value in actions:
        if kind == "wait":
            clock.now += value
            continue
        shown = codes.current()
        if kind == "right":
            if shown is None:
                continue
            accepted = codes.consume(shown.code, value)
            assert accepted == checked(shown.code, value)
            if accepted:
                assert shown.code not in used
                used.add(shown.code)
                assert codes.current() is None
            continue
        guess, source = value
        if shown is None or guess == shown.code:
            continue
        assert codes.consume(guess, source) is False
        if checked(shown.code, source):
            wrong[shown.code, _key(source)] = wrong.get((shown.code, _key(source)), 0) + 1
            in_all[shown.code] = in_all.get(shown.code, 0) + 1
        after = codes.current()
        assert after is not None and after.code == shown.code  # guessing never replaces the code
        assert after.wrong_attempts == in_all.get(shown.code, 0)
        addresses = {a for (c, a) in wrong if c == shown.code}
        # 4 for one address; past that, 5 + one per address that had not guessed wrong: at most A + 3.
        assert in_all.get(shown.code, 0) <= max(PER_ADDRESS, len(addresses) + 3)
