"""sshpin's speed, as ratios measured in one run on this machine: ``python3 benchmarks/run.py``.

Every figure compares two commands run in the same way, alternated round by round so that a
noisy neighbour slows both alike, and takes the median of each. Absolute times are printed
for reference only; the ratios are the result. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' provider (tests/)

from sshpin.commands.demo import Sshd, keygen, make_tls, write_ssh_config
from sshpin.commands.snippet import hook_command, sshpin_command
from tests.refserver import CapsulAPI, ReferenceServer, fill_cache, generated_key

TOKEN = "bench-token"
Run = Callable[[], object]
Row = tuple[str, str, str, bool]
timings: list[str] = []  # absolute medians, printed for reference only


def timed(fn: Run) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(rounds: int, **commands: Run) -> dict[str, float]:
    """Median wall time of each command, run in turn ``rounds`` times after one warm-up."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for fn in commands.values():
        fn()  # warm the page cache and the config's compiled copy
    for _ in range(rounds):
        for name, fn in commands.items():
            samples[name].append(timed(fn))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    timings.append(", ".join(f"{name} {value * 1000:.1f} ms" for name, value in medians.items()))
    return medians


def run(argv: list[str], env: dict[str, str], want: str | None = None) -> Run:
    def go() -> None:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0 or (want is not None and want not in done.stdout):
            raise SystemExit(f"benchmark command failed: {argv}\n{done.stdout}{done.stderr}")

    return go


def fleet_rows(work: Path, context: object, ca_path: str, rounds: int) -> list[Row]:
    """Issue 12: a 100,000-capsul account against a 10-capsul one, each on its own reference
    server (pages of 1,000, gzip, ``?host=``)."""
    import ssl

    assert isinstance(context, ssl.SSLContext)
    rows: list[Row] = []
    servers = {}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SSHPIN_", "PYTHON"))}
    envs = {}
    for name, count in (("small", 10), ("large", 100_000)):
        api = CapsulAPI({TOKEN})
        api.generate(count)
        api.page_size = 1000
        api.gzip = True
        servers[name] = ReferenceServer(api, context).start()
        config = work / f"config-{name}.toml"
        config.write_text(
            "[[provider]]\n"
            'name = "capsul"\ntype = "capsul"\n'
            f'api_url = "{servers[name].api_url}"\n'
            'hosts = ["capsul-*"]\n'
            f'ca_bundle = "{ca_path}"\n'
        )
        config.chmod(0o600)
        envs[name] = dict(base, SSHPIN_CONFIG=str(config), SSHPIN_TOKEN_CAPSUL=TOKEN)
    hook = hook_command()
    counter = iter(range(10**7))
    from sshpin.store.cachedir import ProviderCache

    def cold(name: str, index: int, paged: bool) -> Run:
        line = generated_key(index)[0]

        def go() -> None:
            cache = work / f"fleet-{name}-{next(counter)}"
            if paged:  # a provider already seen to page: a cold miss is one lookup
                ProviderCache(str(cache), "capsul").mark_paged()
            argv = [*hook, "known-hosts", "HOSTNAME", f"capsul-g{index:06d}", *line.split()]
            run(argv, dict(envs[name], SSHPIN_CACHE_DIR=str(cache)), want=line.split()[1])()

        return go

    t = alternate(rounds, small=cold("small", 7, False), large=cold("large", 54_321, True))
    ratio = t["large"] / t["small"]
    rows.append(("cold lookup, 100,000 capsuls vs a cold fetch of 10", "<= 1.5",
                 f"{ratio:.2f}", ratio <= 1.5))  # fmt: skip
    # a new host once the listing was seen to page (a cache holding other hosts already)
    warm = work / "fleet-warm"
    warm_env = dict(envs["large"], SSHPIN_CACHE_DIR=str(warm))
    run([*hook, "known-hosts", "HOSTNAME", "capsul-g000001", *generated_key(1)[0].split()],
        warm_env)()  # fmt: skip
    fresh = iter(range(1000, 10**6))
    large_api = servers["large"].api

    def new_host() -> None:
        i = next(fresh)
        line = generated_key(i)[0]
        run([*hook, "known-hosts", "HOSTNAME", f"capsul-g{i:06d}", *line.split()], warm_env,
            want=line.split()[1])()  # fmt: skip

    sent, asked = large_api.bytes_sent, large_api.count()
    t = alternate(rounds, small=cold("small", 7, False), new=new_host)
    per_call = (large_api.bytes_sent - sent) / max(1, large_api.count() - asked)
    ratio = t["new"] / t["small"]
    rows.append(("a new host on 100,000 vs a cold fetch on 10", "<= 1.5", f"{ratio:.2f}",
                 ratio <= 1.5))  # fmt: skip
    rows.append(("bytes per hook call on 100,000 (KiB)", "<= 256", f"{per_call / 1024:.1f}",
                 per_call <= 256 * 1024))  # fmt: skip
    # cache refresh --all over 100 pages: time and peak RSS of the process
    measure = (
        "import resource, subprocess, sys, time; t = time.monotonic(); "
        "d = subprocess.run(sys.argv[1:], capture_output=True); "
        "print(d.returncode, time.monotonic() - t, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    whole = work / "fleet-all"
    done = subprocess.run(
        [sys.executable, "-c", measure, *sshpin_command(), "cache", "refresh", "--all"],
        env=dict(envs["large"], SSHPIN_CACHE_DIR=str(whole)), capture_output=True, text=True,
    )  # fmt: skip
    code, seconds, rss_kib = done.stdout.split()
    mib = int(rss_kib) / 1024
    ok = code == "0"
    rows.append(("`cache refresh --all`, 100,000 capsuls: seconds", "<= 120",
                 f"{float(seconds):.1f}", ok and float(seconds) <= 120))  # fmt: skip
    rows.append(("`cache refresh --all`, 100,000 capsuls: peak RSS (MiB)", "<= 256",
                 f"{mib:.0f}", ok and mib <= 256))  # fmt: skip
    large_api.status_override = 503  # provider down: every capsul from the cache
    line = generated_key(77_777)[0]
    run([*hook, "known-hosts", "HOSTNAME", "capsul-g077777", *line.split()],
        dict(envs["large"], SSHPIN_CACHE_DIR=str(whole)), want=line.split()[1])()  # fmt: skip
    for server in servers.values():
        server.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30, help="rounds per figure (default 30)")
    parser.add_argument("--fleet-only", action="store_true", help="only the large-account rows")
    args = parser.parse_args()
    rounds = args.rounds
    work = Path(tempfile.mkdtemp(prefix="sshpin-bench-"))
    os.chmod(work, 0o700)
    context, ca_path = make_tls(str(work))
    api = CapsulAPI({TOKEN})
    server = ReferenceServer(api, context).start()
    sshd: Sshd | None = None
    rows: list[tuple[str, str, str, bool]] = []
    try:
        rows += fleet_rows(work, context, ca_path, rounds)
        if args.fleet_only:
            return report(rows, rounds)
        config = work / "config.toml"
        config.write_text(
            "[[provider]]\n"
            'name = "capsul"\ntype = "capsul"\n'
            f'api_url = "{server.api_url}"\n'
            'hosts = ["capsul-*", "127.0.0.1"]\n'
            f'ca_bundle = "{ca_path}"\n'
        )
        config.chmod(0o600)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SSHPIN_", "PYTHON"))}
        base.update(SSHPIN_CONFIG=str(config), SSHPIN_TOKEN_CAPSUL=TOKEN)

        def env(cache: Path) -> dict[str, str]:
            return dict(base, SSHPIN_CACHE_DIR=str(cache))

        from sshpin.providers import load_config

        loaded = load_config(str(config))
        assert loaded is not None
        trust = loaded.provider("capsul").get("trust")  # cached under this config's trust
        now = time.time()
        small, large = work / "cache10", work / "cache10k"
        fill_cache(str(small), "capsul", 10, now, trust)
        ids = fill_cache(str(large), "capsul", 10_000, now, trust)
        from sshpin.store.cachedir import ProviderCache

        entry = ProviderCache(str(large), "capsul").read_host(ids[5])
        assert entry is not None
        key = entry.keys[0]
        ProviderCache(str(small), "capsul").write_host(
            type(entry)(ids[5], ids[5], "capsul id", now, [key], source="bench", trust=trust)
        )
        hook = hook_command()
        hit = [*hook, "known-hosts", "HOSTNAME", ids[5], key.key_type, key.base64]
        floor = [sys.executable, "-I", "-S", "-c", "pass"]
        unmanaged = [*hook, "known-hosts", "HOSTNAME", "example.org", key.key_type, key.base64]
        console = [*sshpin_command(), *hit[len(hook) :]]

        t = alternate(
            rounds,
            floor=run(floor, base),
            plain=run([sys.executable, "-c", "pass"], base),
            hit=run(hit, env(small), want=key.base64),
            unmanaged=run(unmanaged, env(small)),
            console=run(console, env(small), want=key.base64),
        )
        rows.append(
            (
                "cached hit vs `python -I -S -c pass`",
                "<= 1.4",
                f"{t['hit'] / t['floor']:.2f}",
                t["hit"] / t["floor"] <= 1.4,
            )
        )
        rows.append(
            (
                "unmanaged host vs the same floor",
                "<= 1.5",
                f"{t['unmanaged'] / t['floor']:.2f}",
                t["unmanaged"] / t["floor"] <= 1.5,
            )
        )
        rows.append(
            (
                "(for reference) `python -c pass` (with site) vs floor",
                "-",
                f"{t['plain'] / t['floor']:.2f}",
                True,
            )
        )
        rows.append(
            (
                "(for reference) cached hit through the console script vs floor",
                "-",
                f"{t['console'] / t['floor']:.2f}",
                True,
            )
        )

        t = alternate(
            rounds,
            small=run(hit, env(small), want=key.base64),
            large=run(hit, env(large), want=key.base64),
        )
        rows.append(
            (
                "cached hit, 10,000 hosts cached vs 10",
                "<= 1.10",
                f"{t['large'] / t['small']:.2f}",
                t["large"] / t["small"] <= 1.10,
            )
        )

        listing = [*sshpin_command(), "cache", "list"]
        t = alternate(
            5,
            list10=run(listing, env(small), want=ids[5]),
            list10k=run(listing, env(large), want=ids[9999]),
        )
        rows.append(
            (
                "`sshpin cache list`, 10,000 hosts: seconds (absolute; and vs 10 hosts)",
                "< 1 s",
                f"{t['list10k']:.2f} s ({t['list10k'] / t['list10']:.1f}x)",
                t["list10k"] < 1.0,
            )
        )

        # A real sshd: ssh through the hook against ssh with a static known_hosts file.
        host_key = str(work / "host_key")
        client = str(work / "client")
        host_pub = keygen(host_key)
        client_pub = keygen(client)
        (work / "authorized").write_text(client_pub + "\n")
        sshd = Sshd(
            str(work / "sshd"),
            [host_key],
            str(work / "authorized"),
            extra=["MaxStartups 200", "MaxSessions 200"],
        ).start()
        api.add("capsul-bench", [host_pub], ipv4="127.0.0.1")
        with open(config, "a") as conf:  # the provider vouches for this sshd's port too
            conf.write(f"ports = [22, {sshd.port}]\n")
        hooked_cfg = work / "ssh_hooked"
        write_ssh_config(str(hooked_cfg), hook, "127.0.0.1 capsul-*")
        static_cfg = work / "ssh_static"
        write_ssh_config(str(static_cfg), hook, "nothing-matches-this")
        empty = work / "known_hosts_empty"
        empty.write_text("")
        static = work / "known_hosts_static"
        static.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(host_pub.split()[:2])}\n")

        def ssh(cfg: Path, known: Path, cache: Path) -> list[str]:
            return [
                "ssh",
                "-F",
                str(cfg),
                "-i",
                client,
                "-p",
                str(sshd.port),
                "-o",
                f"UserKnownHostsFile={known}",
                "-o",
                "StrictHostKeyChecking=yes",
                "127.0.0.1",
                "true",
            ]

        # The least any KnownHostsCommand can cost: a shell script printing the static line.
        shell_hook = work / "shell-hook"
        shell_hook.write_text(f"#!/bin/sh\ncat {static}\n")
        shell_hook.chmod(0o700)
        shell_cfg = work / "ssh_shell"
        write_ssh_config(str(shell_cfg), [str(shell_hook)], "127.0.0.1")
        ssh_cache = work / "cache-ssh"
        t = alternate(
            max(10, rounds // 2),
            hooked=run(ssh(hooked_cfg, empty, ssh_cache), env(ssh_cache)),
            static=run(ssh(static_cfg, static, ssh_cache), env(ssh_cache)),
            shell=run(ssh(shell_cfg, empty, ssh_cache), env(ssh_cache)),
        )
        rows.append(
            (
                "`ssh host true` through the hook vs a static known_hosts",
                "<= 1.10",
                f"{t['hooked'] / t['static']:.3f}",
                t["hooked"] / t["static"] <= 1.10,
            )
        )
        rows.append(
            (
                "(for reference) the same through a /bin/sh hook vs static",
                "-",
                f"{t['shell'] / t['static']:.3f}",
                True,
            )
        )

        # 64 concurrent cold connections: how many requests reach the provider?
        cold = work / "cache-cold"
        before = api.count()
        procs = [
            subprocess.Popen(
                ssh(hooked_cfg, empty, cold),
                env=env(cold),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(64)
        ]
        failures = sum(p.wait() != 0 for p in procs)
        requests = api.count() - before
        rows.append(
            (
                "64 concurrent cold connections: provider requests",
                "1",
                f"{requests} ({64 - failures}/64 connected)",
                requests == 1 and failures == 0,
            )
        )

        # A cold fetch against one bare HTTPS GET of the same document with requests.
        fetch_code = (
            "import requests, sys; r = requests.get(sys.argv[1], timeout=10, verify=sys.argv[2],"
            f" headers={{'Authorization': 'Bearer {TOKEN}'}}); r.raise_for_status(); r.json()"
        )
        bare = [sys.executable, "-c", fetch_code, server.api_url + "/capsuls", ca_path]
        counter = iter(range(10**6))
        host_b64 = host_pub.split()[1]

        def cold_hook() -> None:
            cache = work / f"cold-{next(counter)}"
            argv = [*hook, "known-hosts", "HOSTNAME", "capsul-bench", "ssh-ed25519", host_b64]
            run(argv, env(cache), want=host_b64)()

        t = alternate(rounds, cold=cold_hook, bare=run(bare, base))
        rows.append(
            (
                "cold fetch vs one bare HTTPS GET with requests",
                "<= 1.5",
                f"{t['cold'] / t['bare']:.2f}",
                t["cold"] / t["bare"] <= 1.5,
            )
        )
        # Throughput: scp of a large file through `sshpin proxy` against scp straight to sshd.
        big = work / "big.bin"
        with open(big, "wb") as f:
            for _ in range(128):
                f.write(os.urandom(1 << 20))
        proxied_cfg = work / "ssh_proxied"
        proxied_cfg.write_text(
            f"Host capsul-*\n    ProxyCommand {' '.join(hook)} proxy %h %p\n"
            + hooked_cfg.read_text()
        )
        api.add("capsul-bench", [host_pub], ipv4="127.0.0.1")

        def scp(cfg: Path, host: str, upload: bool) -> list[str]:
            remote = f"{host}:{work}/copy-{'up' if upload else 'down'}"
            local = [str(big)] if upload else []
            files = [*local, remote] if upload else [f"{host}:{big}", str(work / "down")]
            return ["scp", "-q", "-F", str(cfg), "-i", client, "-P", str(sshd.port), "-o",
                    f"UserKnownHostsFile={empty}", *files]  # fmt: skip

        for upload in (True, False):
            t = alternate(
                5,
                direct=run(scp(hooked_cfg, "127.0.0.1", upload), env(ssh_cache)),
                proxy=run(scp(proxied_cfg, "capsul-bench", upload), env(ssh_cache)),
            )
            way = "upload" if upload else "download"
            ratio = t["direct"] / t["proxy"]
            rows.append((f"scp {way} of 128 MiB through `sshpin proxy`: throughput vs direct",
                         ">= 0.9", f"{ratio:.2f}", ratio >= 0.9))  # fmt: skip
    finally:
        if sshd is not None:
            sshd.stop()
        server.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return report(rows, rounds)


def report(rows: list[Row], rounds: int) -> int:
    width = max(len(r[0]) for r in rows)
    print(
        f"sshpin benchmarks: {rounds} rounds, medians, {sys.executable} "
        f"(Python {sys.version.split()[0]}), {os.cpu_count()} CPUs"
    )
    print(f"| {'figure'.ljust(width)} | target  | measured | ok  |")
    print(f"|{'-' * (width + 2)}|---------|----------|-----|")
    for figure, target, measured, ok in rows:
        print(
            f"| {figure.ljust(width)} | {target:<7} | {measured:<8} | {'yes' if ok else 'NO':<3} |"
        )
    print("\nmedians (for reference; the ratios above are the result):")
    for line in timings:
        print(f"  {line}")
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
