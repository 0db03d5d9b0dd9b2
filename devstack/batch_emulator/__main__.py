"""`python -m devstack.batch_emulator [--host --port --data-dir --account-name --account-key-file ...]`; the
account key comes from BATCH_EMULATOR_ACCOUNT_KEY or --account-key-file, never the command line."""
from __future__ import annotations

import logging
import sys

from .config import ConfigError, from_args
from .server import serve_forever


def main(argv: list[str] | None = None) -> int:
    try:
        config = from_args(argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s")
    try:
        serve_forever(config)
    except OSError as exc:
        logging.getLogger("devstack.batch_emulator").error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
