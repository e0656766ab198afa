"""Sync tokens: encode/decode round trips, refusal of malformed ones, and the position-wise maximum."""

import pytest

from homeserver.core.tokens import STREAMS, SyncToken, TokenError


def test_round_trip_and_short_tokens() -> None:
    t = SyncToken(5, 1795601482971, 3, 0, 9, 2, 7)
    assert t.encode() == "s5_1795601482971_3_0_9_2_7"
    assert SyncToken.decode(t.encode()) == t
    # Older, shorter tokens: the missing streams start at 0.
    assert SyncToken.decode("s12_4") == SyncToken(events=12, typing=4)
    assert len(t.positions()) == len(STREAMS)


@pytest.mark.parametrize("bad", ["", "s", "x1_2", "s1__2", "s-1_2", "s+1_2", "s 1_2", "s1_2_3_4_5_6_7_8",
                                 "s\u0663_1", "s1.5_2", "s1_2_"])
def test_malformed_tokens_are_refused(bad: str) -> None:
    with pytest.raises(TokenError):
        SyncToken.decode(bad)


def test_advance_is_the_position_wise_maximum() -> None:
    a = SyncToken(1, 9, 3, 0, 5, 0, 2)
    b = SyncToken(4, 2, 3, 1, 0, 6, 2)
    assert a.advance(b) == SyncToken(4, 9, 3, 1, 5, 6, 2) == b.advance(a)
    assert a.advance(a) is a
    assert a.with_stream("to_device", 8).to_device == 8
