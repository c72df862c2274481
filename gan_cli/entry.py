"""The `gan` command's first lines: a Ctrl-C before training is one message and exit 130, wherever it lands.

Start-up imports torch, Hydra and OmegaConf, composes the config and builds the models. A KeyboardInterrupt
raised in the middle of that library code does not always arrive as one: a `finally` or `except` block on its
way out can replace it with an AttributeError from a half-initialised object (seen: numpy without `multiply`,
an OmegaConf node without its parent), and an import guarded by a broad `except` can swallow it, so the run
starts anyway. So SIGINT raises nothing here: the handler prints the message and ends the process at once.
Nothing of a run exists before training starts, and training installs its own handler (one Ctrl-C saves a
checkpoint at the end of the step, a second one stops at once) and restores this one afterwards.
"""

from __future__ import annotations

import os
import signal
import sys

from gan_cli.errors import INTERRUPTED, interrupted_message  # errors.py imports nothing of gan and no library


def _interrupted(signum, frame) -> None:
    command = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else ""
    print(interrupted_message(command), file=sys.stderr, flush=True)
    try:
        import logging

        logging.shutdown()  # flush train.log when a run directory exists
    finally:
        os._exit(INTERRUPTED)  # not sys.exit: no exception may travel through library code from here


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted)
    from gan_cli.cli import main as gan_main

    gan_main()
