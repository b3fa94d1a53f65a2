"""hello: four greetings on the console, a second apart (MirageOS's first unikernel)."""

from __future__ import annotations

from miragekit import v1

GREETINGS = 4


async def start(console: v1.Console, time: v1.Time) -> None:
    for i in range(GREETINGS):
        if i:
            await time.sleep(1.0)
        await console.log_s("hello")
