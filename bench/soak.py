"""
A soak run of a tunnel pair on loopback (issue 25's "Done when")::

    clients --> udp/listen [host half] tcp/server <-- tcp/client [site half] udp/broadcast --> emulator

For C{--duration} seconds (600 by default) C{--clients} applications (16)
each send a get-controller request and wait for its reply (or 2 s) before
the next, C{--pace} seconds apart; the site half is killed (SIGKILL) every
C{--kill-every} seconds (120) and started again at once; an idle peer (a
TCP connection to the host's port that never sends a byte) is opened every
C{--idle-every} seconds (10) and closed C{--idle-for} seconds later (60).

The host half's resident memory (C{VmRSS}) is read every 5 s and its open
descriptors counted (C{/proc/PID/fd}) at the start (once the site is
connected) and at the end (idle peers closed, the site connected). It
prints the figures and exits 1 when the host's RSS after the first minute
strays more than C{--rss-band} MB (5) from its 1-minute value, or its
descriptors do not end where they started::

    python bench/soak.py [--duration 600] [--clients 16] [--json]

Loopback only, bounded in time: every child is stopped at the end (and
gets SIGTERM if this script dies). Only the standard library is needed.
"""

import argparse
import json
import os
import select
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from loadgen import (  # noqa: E402 (the folder is put on the path just above)
    GET_CONTROLLER,
    LOCALHOST,
    REQUEST_TIMEOUT,
    SERIALS,
    Child,
    NotReady,
    child_env,
    free_port,
    log,
    probe,
    request_for,
    start_emulator,
    tcp_listening,
    tunnel_command,
)

#: How often the host's memory is read.
RSS_INTERVAL = 5.0
#: The memory after the first minute is compared with the one at this time.
BASELINE_AT = 60.0
#: How long the site and the host have to settle at the end.
SETTLE = 5.0

now = time.monotonic


def rss_mb(pid):
    """The resident memory of a process in MB (VmRSS), or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def descriptors(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


class Pair:
    """
    The emulator, the host half and the site half (which can be killed and
    started again).
    """

    def __init__(self, workdir):
        self.workdir = workdir
        self.emulator, self.emulator_address = start_emulator(workdir)
        self.udp = free_port(socket.SOCK_DGRAM)
        self.tcp = free_port(socket.SOCK_STREAM)
        self.config = os.path.join(workdir, "empty.toml")
        with open(self.config, "w"):
            pass
        common = ["--rate-limit", "1000000", "--rate-limit-burst", "1000000", "--rate-limit-per-source", "1000000",
                  "--rate-limit-per-source-burst", "1000000", "--config", self.config]
        self.host = Child("host", tunnel_command() + [
            "--in", "%s/listen:%s:%d" % ("udp", LOCALHOST, self.udp),
            "--out", "tcp/server:%s:%d" % (LOCALHOST, self.tcp),
            "--lockfile", os.path.join(workdir, "host.pid")] + common, workdir, child_env())
        self.site_args = tunnel_command() + [
            "--in", "tcp/client:%s:%d" % (LOCALHOST, self.tcp),
            "--out", "udp/broadcast:%s:%d" % self.emulator_address,
            "--udp-timeout", "1s", "--max-retry-delay", "1s"] + common
        deadline = now() + 20
        while not tcp_listening(self.tcp):
            if now() > deadline or not self.host.alive():
                raise NotReady("the host did not listen:\n" + self.host.output())
            time.sleep(0.05)
        self.sites = 0
        self.site = None
        self.start_site()

    def start_site(self):
        self.sites += 1
        self.site = Child("site-%d" % self.sites, self.site_args + [
            "--lockfile", os.path.join(self.workdir, "site-%d.pid" % self.sites)], self.workdir, child_env())

    def kill_site(self):
        self.site.proc.kill()
        self.site.proc.wait()
        self.site.stop()

    def ready(self, deadline=20.0):
        return probe((LOCALHOST, self.udp), now() + deadline)

    def stop(self):
        for child in (self.site, self.host, self.emulator):
            if child is not None:
                child.stop()


class Clients:
    """
    Applications each sending one request at a time.
    """

    def __init__(self, count, target, pace):
        self.target = target
        self.pace = pace
        self.sockets = []
        self.waiting = {}
        self.next_at = {}
        for n in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((LOCALHOST, 0))
            s.setblocking(False)
            self.sockets.append(s)
            self.next_at[s] = 0.0
        self.sent = self.answered = self.timeouts = 0

    def turn(self, until):
        t = now()
        for n, s in enumerate(self.sockets):
            sent_at = self.waiting.get(s)
            if sent_at is not None and t - sent_at > REQUEST_TIMEOUT:
                self.timeouts += 1
                del self.waiting[s]
                self.next_at[s] = t
            if s not in self.waiting and t >= self.next_at[s]:
                try:
                    s.sendto(request_for(SERIALS[n % 2]), self.target)
                    self.sent += 1
                    self.waiting[s] = t
                except OSError:
                    self.next_at[s] = t + self.pace
        ready, _, _ = select.select(self.sockets, [], [], max(0.0, min(0.05, until - now())))
        for s in ready:
            try:
                data = s.recv(2048)
            except OSError:
                continue
            if s in self.waiting and len(data) >= 8 and data[1] == GET_CONTROLLER:
                del self.waiting[s]
                self.answered += 1
                self.next_at[s] = now() + self.pace

    def close(self):
        for s in self.sockets:
            s.close()


def soak(args, workdir):
    pair = Pair(workdir)
    idle = []
    try:
        if not pair.ready():
            raise NotReady("the tunnel relayed nothing:\n" + pair.host.output() + pair.site.output())
        fds_start = descriptors(pair.host.pid)
        clients = Clients(args.clients, (LOCALHOST, pair.udp), args.pace)
        started = now()
        rss = []
        next_rss = started
        next_kill = started + args.kill_every
        next_idle = started + args.idle_every
        kills = opened = 0
        end = started + args.duration
        while now() < end:
            t = now()
            if t >= next_rss:
                rss.append((round(t - started), rss_mb(pair.host.pid)))
                next_rss += RSS_INTERVAL
            if t >= next_kill:
                pair.kill_site()
                pair.start_site()
                kills += 1
                next_kill += args.kill_every
            if t >= next_idle:
                peer = socket.create_connection((LOCALHOST, pair.tcp))
                idle.append((t + args.idle_for, peer))
                opened += 1
                next_idle += args.idle_every
            while idle and idle[0][0] <= t:
                idle.pop(0)[1].close()
            clients.turn(min(end, next_rss, next_kill, next_idle))
        for _, peer in idle:
            peer.close()
        idle = []
        clients.close()
        time.sleep(SETTLE)
        settled = pair.ready(10.0)
        fds_end = descriptors(pair.host.pid)
        rss.append((round(now() - started), rss_mb(pair.host.pid)))
        alive = pair.host.alive()
        with open(pair.host.logfile, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    finally:
        for _, peer in idle:
            peer.close()
        pair.stop()
    baseline = min(rss, key=lambda sample: abs(sample[0] - BASELINE_AT))[1]
    later = [mb for at, mb in rss if at > BASELINE_AT and mb is not None]
    drift = max(abs(mb - baseline) for mb in later) if later else None
    return {
        "duration_s": args.duration,
        "clients": args.clients,
        "requests_sent": clients.sent,
        "answered": clients.answered,
        "timeouts": clients.timeouts,
        "site_kills": kills,
        "idle_peers": opened,
        "host_rss_mb": [(at, None if mb is None else round(mb, 1)) for at, mb in rss],
        "host_rss_1min_mb": None if baseline is None else round(baseline, 1),
        "host_rss_max_drift_after_1min_mb": None if drift is None else round(drift, 2),
        "host_fds_start": fds_start,
        "host_fds_end": fds_end,
        "host_alive": alive,
        "relays_after": settled,
        "host_log_lines": len(lines),
        "host_warnings": sum(1 for line in lines if " WARN " in line),
        "host_tracebacks": sum(1 for line in lines if "Traceback" in line),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--pace", type=float, default=0.1, help="seconds between a reply and the next request")
    parser.add_argument("--kill-every", type=float, default=120.0)
    parser.add_argument("--idle-every", type=float, default=10.0)
    parser.add_argument("--idle-for", type=float, default=60.0)
    parser.add_argument("--rss-band", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
        try:
            result = soak(args, workdir)
        except NotReady as e:
            log("%s", e)
            return 1
    ok = (result["host_alive"] and result["relays_after"] and result["host_fds_end"] == result["host_fds_start"]
          and result["host_rss_max_drift_after_1min_mb"] is not None
          and result["host_rss_max_drift_after_1min_mb"] <= args.rss_band and not result["host_tracebacks"])
    result["ok"] = ok
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print("%-36s %s" % (key, value))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
