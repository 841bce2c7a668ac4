"""``python -m sshpin``."""

from sshpin.cli import main

raise SystemExit(main())
