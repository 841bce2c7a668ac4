"""sshpin: authentic host keys for stock OpenSSH, with no trust on first use.

Nothing is imported here: ``sshpin known-hosts`` runs on every ssh connection, and every
import on its path costs time (see benchmarks/).
"""

__version__ = "0.1.0"
