"""`python -m kubesft.cli`: the same as the `kubesft` command."""

from kubesft.cli import main

raise SystemExit(main())
