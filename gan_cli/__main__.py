"""`python -m gan_cli` is the same command as `gan`."""

import os
import sys

try:
    from gan_cli.cli import main
except KeyboardInterrupt:  # Ctrl-C while the libraries load
    print("gan: error: interrupted while starting; nothing was written.", file=sys.stderr, flush=True)
    os._exit(130)  # not sys.exit: Python would re-raise the pending SIGINT on its way out and end as "killed by signal 2"

if __name__ == "__main__":
    main()
