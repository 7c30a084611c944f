"""`keychain proxy`: run the HTTP and gRPC front door for one chain."""

from __future__ import annotations

import asyncio
import logging

from .config import config_from_args
from .server import ProxyServer


def main(argv: list[str]) -> int:
    config = config_from_args(argv)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        import uvloop
    except ImportError:  # uvloop is optional; the standard loop works, only slower
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    try:
        asyncio.run(ProxyServer(config).serve(), loop_factory=loop_factory)
    except OSError as exc:
        logging.getLogger("keychain.proxy").error("cannot start error=%s", exc)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
