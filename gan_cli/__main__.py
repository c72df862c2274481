"""`python -m gan_cli` is the same command as `gan`."""

import sys

try:
    from gan_cli.cli import main
except KeyboardInterrupt:  # Ctrl-C while the libraries load
    print("gan: error: interrupted while starting; nothing was written.", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    main()
