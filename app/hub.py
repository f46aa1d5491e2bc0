"""In-memory broadcast of run events to websocket subscribers.

Channels are strings: ``run:<id>`` carries one run's ``metric``, ``status`` and ``log``
messages, ``runs`` carries the ``status`` and ``progress`` messages of every run. Each
subscriber owns a bounded ``asyncio.Queue``. Publishing never waits: a subscriber whose
queue is full is dropped and told so through ``Subscription.dropped``, so one slow client
cannot delay the others. All methods except ``publish_threadsafe`` run on the event loop.
"""

import asyncio
import json
import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

ALL_RUNS_CHANNEL = "runs"
DEFAULT_QUEUE_SIZE = 256


def run_channel(run_id: str) -> str:
    return f"run:{run_id}"


@dataclass(frozen=True)
class Message:
    """One published event: the JSON text sent to clients and the dict it was made from."""

    payload: dict
    text: str


@dataclass(eq=False)
class Subscription:
    """A subscriber's queue on one channel; ``dropped`` is set when the hub removed it."""

    channel: str
    queue: asyncio.Queue
    dropped: asyncio.Event = field(default_factory=asyncio.Event)

    async def get(self) -> Message:
        return await self.queue.get()


class Hub:
    """Fan-out of messages from the event consumer to any number of subscribers."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE):
        self.queue_size = queue_size
        self._channels: dict[str, set[Subscription]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Set the event loop that ``publish_threadsafe`` hands messages to."""
        self._loop = loop

    def subscribe(self, channel: str) -> Subscription:
        subscription = Subscription(channel, asyncio.Queue(maxsize=self.queue_size))
        self._channels.setdefault(channel, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._channels.get(subscription.channel)
        if subscribers is None:
            return
        subscribers.discard(subscription)
        if not subscribers:
            del self._channels[subscription.channel]

    def subscriber_count(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))

    def publish(self, channel: str, payload: dict) -> None:
        """Queue ``payload`` for every subscriber of ``channel``; drop those that are full."""
        subscribers = self._channels.get(channel)
        if not subscribers:
            return
        message = Message(payload, json.dumps(payload))
        for subscription in list(subscribers):
            try:
                subscription.queue.put_nowait(message)
            except asyncio.QueueFull:
                logger.warning(
                    "dropped a subscriber of %s: its queue of %d messages is full",
                    channel,
                    self.queue_size,
                )
                self.unsubscribe(subscription)
                subscription.dropped.set()

    def publish_threadsafe(self, channel: str, payload: dict) -> None:
        """Schedule ``publish`` on the bound event loop; safe to call from any thread.

        Messages scheduled from one thread are published in the order of the calls.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self.publish, channel, payload)
        except RuntimeError:
            # The loop closed between the check and the call, during shutdown.
            logger.debug("event loop closed; %s message not published", channel)
