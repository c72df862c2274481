"""`python -m gan_cli` is the same command as `gan`."""

from gan_cli.cli import main

if __name__ == "__main__":
    main()
