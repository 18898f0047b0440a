"""`python -m kubesft_trainer <subcommand>`: the trainer image's entry point."""

import sys

from kubesft_trainer.cli import main

sys.exit(main())
