# What ssh runs: python -I -S /path/to/sshpin/launch.py ARGS (docs/architecture.md, "The
# launcher"). A script is compiled on every run, so this one is kept short.
import sys

if __name__ == "__main__":
    sys.path.append(__file__.rpartition("/")[0].rpartition("/")[0] or "/")
    if sys.argv[1:2] == ["known-hosts"]:
        from sshpin.hook import main as hook

        sys.exit(hook(sys.argv[2:]))
    from sshpin.cli import main

    sys.exit(main())
