# -*- test-case-name: tests.loopback.test_nats -*-
"""
A real three-node NATS cluster with JetStream on 127.0.0.1, for the nats/
ends' loopback tests: Debian's C{nats-server}, each node with its own
configuration and store in the test's directory, the nodes' users
authenticated by nkey. A node is ready once its monitoring port answers
C{/healthz} with 200 (the server up and JetStream current); nodes are
killed and started again by the tests, and killed in cleanup.
"""

import json
import os
import shutil

import nkeys
import treq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.web.client import HTTPConnectionPool

from tests.loopback.processes import DEADLINE, LOOPBACK, free_ports, spawn, workdir
from tests.tools import require

#: How often a waiting test asks a node's monitoring port again.
POLL = 0.2

#: Starts of the cluster, each on new ports, when a node finds one of its
#: ports taken (another test's process took it between its choice and
#: the node's bind).
START_ATTEMPTS = 3


def make_seed(path):
    """
    Write a new user nkey seed to C{path} (mode 0600).

    :return: the user's public key.
    """
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    with open(path, "wb") as f:
        f.write(seed)
    os.chmod(path, 0o600)
    return nkeys.from_seed(bytearray(seed)).public_key.decode()


@inlineCallbacks
def get(node, path):
    """
    :return: C{(status, body)} of a GET on a node's monitoring port
        (C{node.monitor}), or C{(None, reason)} if it does not answer.
    """
    try:
        response = yield treq.get("http://{}:{}{}".format(LOOPBACK, node.monitor, path), timeout=2,
                                  pool=HTTPConnectionPool(reactor, persistent=False))
        body = yield response.content()
    except Exception as e:
        return None, str(e)
    return response.code, body


@inlineCallbacks
def healthy(node, timeout=DEADLINE):
    """
    Wait until a node (C{name}, C{monitor}, C{process}) answers
    C{/healthz} with 200.
    """
    deadline = reactor.seconds() + timeout
    while True:
        code, body = yield get(node, "/healthz")
        if code == 200:
            return
        if not node.process.running:
            raise AssertionError("nats-server {} ended: {}".format(node.name, node.process.recent()))
        if reactor.seconds() > deadline:
            raise AssertionError("nats-server {} not healthy within {}s: {} {!r}".format(
                node.name, timeout, code, body))
        yield deferLater(reactor, POLL, lambda: None)


class Node:
    """
    One node: its ports, its files and its process (while it runs).
    """

    def __init__(self, index, root, routes, users, ports):
        """
        :param routes: every node's cluster port, by index.
        :param ports: this node's client and monitoring ports.
        """
        self.name = "n{}".format(index)
        self.port, self.monitor = ports
        self.cluster = routes[index]
        self.config = os.path.join(root, self.name + ".conf")
        self.store = os.path.join(root, self.name + "-store")
        self.process = None
        others = ", ".join("nats-route://{}:{}".format(LOOPBACK, port) for i, port in enumerate(routes) if i != index)
        with open(self.config, "w") as f:
            f.write("server_name: {name}\nlisten: {host}:{port}\nhttp: {host}:{monitor}\n"
                    "jetstream {{ store_dir: \"{store}\", max_memory_store: 64MB, max_file_store: 256MB }}\n"
                    "cluster {{ name: uhtest, listen: {host}:{cluster}, routes: [{others}] }}\n"
                    "authorization {{ users = [ {users} ] }}\n".format(
                        name=self.name, host=LOOPBACK, port=self.port, monitor=self.monitor, store=self.store,
                        cluster=self.cluster, others=others,
                        users=", ".join("{{ nkey: {} }}".format(user) for user in users)))

    @property
    def address(self):
        return "{}:{}".format(LOOPBACK, self.port)

    @property
    def running(self):
        return self.process is not None and self.process.running


class Cluster:
    """
    Three nodes that route to each other, with JetStream, and the seeds
    of the users they admit (C{good}) and of one they do not (C{rogue}).
    """

    def __init__(self, testcase, size=3):
        self.testcase = testcase
        self.server = require("nats-server", "nats-server")
        root = os.path.join(workdir(testcase), "nats")
        os.makedirs(root)
        self.seeds = {name: os.path.join(root, name + ".nk") for name in ("good", "rogue")}
        self.root = root
        self.size = size
        self.users = [make_seed(self.seeds["good"])]
        make_seed(self.seeds["rogue"])
        self.configure()

    def configure(self):
        """
        Choose every node's ports (all different) and write its
        configuration, with an empty store.
        """
        ports = free_ports(3 * self.size)
        routes = ports[:self.size]
        self.nodes = [Node(i, self.root, routes, self.users, ports[self.size + 2 * i:self.size + 2 * i + 2])
                      for i in range(self.size)]
        for node in self.nodes:
            shutil.rmtree(node.store, ignore_errors=True)

    @inlineCallbacks
    def start(self):
        """
        Start every node, and wait until each is healthy; if a node finds
        a port taken, stop them all and start again on new ports.
        """
        for attempt in range(1, START_ATTEMPTS + 1):
            for node in self.nodes:
                self.run(node)
            try:
                for node in self.nodes:
                    yield healthy(node)
                return
            except AssertionError as e:
                if attempt == START_ATTEMPTS or "address already in use" not in str(e):
                    raise
            for node in self.nodes:
                if node.running:
                    yield self.kill(node)
            self.configure()

    def run(self, node):
        node.process = spawn(self.testcase, [self.server, "-c", node.config], node.name)

    @inlineCallbacks
    def restart(self, node):
        self.run(node)
        yield healthy(node)

    @inlineCallbacks
    def kill(self, node):
        """
        SIGKILL a node, and wait until it has ended.
        """
        node.process.send_signal("KILL")
        yield node.process.ended

    @inlineCallbacks
    def subscriptions(self, node):
        """
        :return: the subjects each client of a node subscribes to: a list
            of sets, one a connection.
        """
        code, body = yield get(node, "/connz?subs=1")
        if code != 200:
            raise AssertionError("connz on {}: {} {!r}".format(node.name, code, body))
        return [set(c.get("subscriptions_list") or ()) for c in json.loads(body)["connections"]]
