"""How the gateway reads what a stream offered: a client that hangs up right after `[DONE]`
got the whole completion; one that hangs up before it cancelled."""

import time

from cove.gateway.served import Offer, SseTap

CHUNK = b'data: {"id": "cmpl-9", "choices": [{"index": 0, "text": "x = 1"}]}\n\n'


def _tap() -> tuple[SseTap, list[Offer]]:
    done: list[Offer] = []
    return SseTap(time.perf_counter(), done.append), done


def test_a_hang_up_after_done_is_a_delivered_stream() -> None:
    tap, done = _tap()
    tap.feed(CHUNK)
    tap.feed(b"data: [DONE]\n\n")
    tap.finish(cancelled=True)
    assert len(done) == 1
    assert done[0].cancelled is False
    assert done[0].completion_id == "cmpl-9"
    assert done[0].text() == "x = 1"


def test_a_hang_up_before_done_is_a_cancelled_stream() -> None:
    tap, done = _tap()
    tap.feed(CHUNK)
    tap.finish(cancelled=True)
    assert done[0].cancelled is True
    assert done[0].lines_and_chars() == (1, 5)


def test_done_split_across_chunks_still_counts() -> None:
    tap, done = _tap()
    tap.feed(CHUNK + b"data: [DO")
    tap.feed(b"NE]\n\n")
    tap.finish(cancelled=True)
    assert done[0].cancelled is False
