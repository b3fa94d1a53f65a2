"""Sets an event loop policy of its own (as a program choosing uvloop would)."""

import asyncio
import asyncio.unix_events


class Policy(asyncio.DefaultEventLoopPolicy):
    _loop_factory = asyncio.unix_events._UnixSelectorEventLoop


asyncio.set_event_loop_policy(Policy())
asyncio.run(asyncio.sleep(0))
