"""`python -m gan_cli` is the same command as `gan` (gan_cli.entry: Ctrl-C during start-up is one message, exit 130)."""

import os
import sys

try:
    from gan_cli.entry import main
except KeyboardInterrupt:  # Ctrl-C in the few milliseconds before entry's handler is set
    print("gan: error: interrupted while starting; nothing was written.", file=sys.stderr, flush=True)
    os._exit(130)

if __name__ == "__main__":
    main()
