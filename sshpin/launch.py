"""The hook's launcher: what ssh runs, as ``python -I -S /path/to/sshpin/launch.py ...``.

Why not the ``sshpin`` console script: that script starts Python with ``site`` (every ``.pth``
file in site-packages is executed; on the machine the benchmarks ran on, one imports certifi,
4.4 times the cost of a bare interpreter) and imports ``re`` before sshpin runs at all. ssh
runs the hook up to three times per connection, so ``setup`` names this file instead:

- ``-S`` skips site. The package is found from this file's own location (its parent
  directory holds ``sshpin/``), which works for installed and editable installs alike.
  Only the slow path, which needs requests, cryptography and keyring, runs ``site.main()``
  (see ``hostkeys.full_environment``).
- ``-I`` (isolated) ignores PYTHONPATH, PYTHONHOME, PYTHONSTARTUP and the user's site dir: no
  environment variable can put other code in the process that vouches for host keys.

Only string operations here: ``os.path`` may not be imported yet, and each import costs.
"""

import sys

if __name__ == "__main__":
    # -I puts no script directory on sys.path (it implies -P); __file__ is absolute (3.9+):
    # .../site-packages/sshpin/launch.py, and the package is imported from .../site-packages.
    # Appended, not prepended: the standard library keeps precedence over anything else
    # that directory holds (an old backport named like a stdlib module, say).
    sys.path.append(__file__.rpartition("/")[0].rpartition("/")[0] or "/")
    if sys.argv[1:2] == ["known-hosts"] and sys.argv[2:3] not in (["-h"], ["--help"]):
        from sshpin.hook import main as hook  # every ssh connection: not even the cli module

        sys.exit(hook(sys.argv[2:]))
    from sshpin.cli import main

    sys.exit(main())
