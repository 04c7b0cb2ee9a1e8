"""The gateway's own HTTP endpoints (/metrics, the store dashboard): an aiohttp app started on a host and port.

aiohttp is imported by the caller's ``start``, never at import: a gateway with neither endpoint on does not
load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """``app`` listening on ``host:port`` (port 0: a free one, see ``runner.addresses``), or nothing held
    when it cannot bind. No access log (a scrape every 15 s would be most of the journal), no signals: the
    gateway owns them."""
    from aiohttp import web  # noqa: PLC0415 - only when an endpoint is on

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
