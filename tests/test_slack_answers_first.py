"""Posts wait for the Slack requests in hand to be answered, never for long, and in order."""

from __future__ import annotations

import asyncio

from convoflow.adapters.slack.answers_first import AnswersFirst


class Posts:
    """Posts through `gate`: each records its name once the gate lets it go."""

    def __init__(self, gate: AnswersFirst) -> None:
        self.gate = gate
        self.posted: list[str] = []

    async def post(self, name: str) -> None:
        await self.gate.before_post()
        self.posted.append(name)

    def start(self, *names: str) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self.post(name)) for name in names]

    async def held_by_a_request(self, *names: str) -> list[asyncio.Task[None]]:
        """Posts started while a request is open, which is then answered."""
        with self.gate.answering():
            started = self.start(*names)
            await asyncio.sleep(0)
            assert self.gate.waiting == len(names)
        return started


async def test_a_post_waits_while_a_request_is_open_and_goes_once_it_is_answered() -> None:
    gate = AnswersFirst(longest_wait=30.0)
    posts = Posts(gate)
    with gate.answering():
        started = posts.start("first", "second")
        for _ in range(20):
            await asyncio.sleep(0)
        assert posts.posted == [] and gate.open == 1 and gate.waiting == 2
    await asyncio.gather(*started)
    assert posts.posted == ["first", "second"]
    assert gate.waits == 2 and gate.open == 0


async def test_a_post_with_no_request_open_does_not_wait() -> None:
    gate = AnswersFirst()
    with gate.answering():
        pass
    await gate.before_post()
    assert gate.waits == 0


async def test_a_steady_stream_of_requests_holds_a_post_up_only_for_the_longest_wait() -> None:
    gate = AnswersFirst(longest_wait=0.01)
    with gate.answering():
        await asyncio.wait_for(gate.before_post(), 5.0)  # returns although the request is still open
        assert gate.open == 1
    assert gate.waits == 1


async def test_a_request_that_fails_still_counts_as_answered() -> None:
    gate = AnswersFirst()
    try:
        with gate.answering():
            raise RuntimeError("the handler failed")
    except RuntimeError:
        pass
    assert gate.open == 0
    await asyncio.wait_for(gate.before_post(), 5.0)
    assert gate.waits == 0


async def test_posts_released_by_the_longest_wait_are_not_kept_while_requests_stay_open() -> None:
    gate = AnswersFirst(longest_wait=0.001)
    with gate.answering():
        for _ in range(5):
            await asyncio.wait_for(gate.before_post(), 5.0)
        assert gate.waits == 5 and gate.waiting == 0


async def test_once_the_requests_are_answered_the_posts_waiting_go_one_per_turn_of_the_loop_in_order() -> None:
    gate = AnswersFirst(longest_wait=30.0)
    posts = Posts(gate)
    names = [str(n) for n in range(5)]
    started = await posts.held_by_a_request(*names)
    seen = []
    while len(posts.posted) < 5:
        await asyncio.sleep(0)  # one turn of the loop
        seen.append(len(posts.posted))
    assert posts.posted == names
    assert all(later - earlier <= 1 for earlier, later in zip([0, *seen], seen))  # never two in one turn
    await asyncio.gather(*started)


async def test_a_request_arriving_while_posts_are_released_holds_the_rest_back() -> None:
    gate = AnswersFirst(longest_wait=30.0)
    posts = Posts(gate)
    names = [str(n) for n in range(4)]
    started = await posts.held_by_a_request(*names)
    while not posts.posted:
        await asyncio.sleep(0)
    with gate.answering():  # a new request: the posts still waiting wait for its answer
        gone = len(posts.posted)
        for _ in range(10):
            await asyncio.sleep(0)
        assert len(posts.posted) <= gone + 1 < 4  # one already released may still go
    await asyncio.gather(*started)
    assert posts.posted == names


async def test_a_post_with_no_request_open_goes_after_the_posts_still_waiting() -> None:
    gate = AnswersFirst(longest_wait=30.0)
    posts = Posts(gate)
    started = await posts.held_by_a_request("waited 0", "waited 1", "waited 2")
    await posts.post("late")  # no request open, but three posts ahead of it
    await asyncio.gather(*started)
    assert posts.posted == ["waited 0", "waited 1", "waited 2", "late"]
