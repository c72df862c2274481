"""`python -m gan_cli` is the same command as `gan` (gan_cli.entry: Ctrl-C during start-up is one message, exit 130)."""

from gan_cli.entry import main

if __name__ == "__main__":
    main()
