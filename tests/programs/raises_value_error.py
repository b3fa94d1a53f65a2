"""A program whose own code raises ValueError: exec must show its traceback and exit 1,
as python would, not take it for a misuse of exec."""

import asyncio


async def main() -> None:
    raise ValueError("the program's own error")


asyncio.run(main())
