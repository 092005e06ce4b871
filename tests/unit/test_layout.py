# -*- test-case-name: tests.unit.test_layout -*-
"""
The package's layout, as README's Architecture draws it: layers whose
imports point one way, no import cycles, modules of one concern and at
most 450 lines, shared code that names no transport, and no private name
used across modules.
"""

import ast
import os
import re

from twisted.trial.unittest import SynchronousTestCase

import uhppoted_tunnel

ROOT = os.path.dirname(uhppoted_tunnel.__file__)

#: Each folder's layer: a module may import its own layer and those below.
#: The interfaces and the version (the package itself) are at the bottom.
LAYERS = {
    "": 0,
    "interfaces": 0,
    "testing": 0,
    "core": 1,
    "emulator": 2,
    "link": 2,
    "transports": 3,
    "observe": 4,
    "ends": 5,
    "plugins": 6,
    "app": 7,
}

#: The transports that only their own folder (and plugin) may name.
TRANSPORT_WORDS = re.compile(r"zmq|zeromq|grpc|xmpp|autobahn|websocket", re.I)

#: The folders that hold shared code.
SHARED = ("core", "link", "ends", "observe", "app")

#: The longest module.
MAX_LINES = 450


def modules():
    """
    :return: C{{dotted name: path}} of every module in the package, the
        generated gRPC code aside.
    """
    found = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith(".py") or name.endswith("_pb2.py"):
                continue
            path = os.path.join(folder, name)
            dotted = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
            found[dotted.removesuffix(".__init__")] = path
    return found


def imports(path, names, everywhere=True):
    """
    :return: C{[(module, name)]} the module at C{path} imports from the
        package, the name C{None} for a whole module.
    """
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    nodes = ast.walk(tree) if everywhere else tree.body
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "uhppoted_tunnel":
            for alias in node.names:
                whole = node.module + "." + alias.name
                found.append((whole, None) if whole in names else (node.module, alias.name))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names if alias.name.startswith("uhppoted_tunnel"))
    return found


def layer(dotted):
    parts = dotted.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else ""]


class LayoutTests(SynchronousTestCase):
    """
    The layout holds as the code changes.
    """

    def setUp(self):
        self.modules = modules()

    def test_importsPointDown(self):
        """
        No module imports from a layer above its own, at the top or inside
        a function.
        """
        upward = []
        for dotted, path in self.modules.items():
            for target, _ in imports(path, self.modules):
                if layer(target) > layer(dotted):
                    upward.append("{} -> {}".format(dotted, target))
        self.assertEqual(upward, [])

    def test_noCycles(self):
        """
        The modules' top-level imports form no cycle.
        """
        graph = {dotted: {t for t, _ in imports(path, self.modules, everywhere=False) if t in self.modules}
                 for dotted, path in self.modules.items()}
        state, cycles = {}, []

        def visit(node, stack):
            state[node] = "open"
            stack.append(node)
            for after in sorted(graph[node]):
                if state.get(after) == "open":
                    cycles.append(stack[stack.index(after):] + [after])
                elif after not in state:
                    visit(after, stack)
            stack.pop()
            state[node] = "done"

        for node in sorted(graph):
            if node not in state:
                visit(node, [])
        self.assertEqual(cycles, [])

    def test_size(self):
        """
        No module is over L{MAX_LINES} lines.
        """
        long = {}
        for dotted, path in self.modules.items():
            with open(path, encoding="utf-8") as f:
                lines = sum(1 for _ in f)
            if lines > MAX_LINES:
                long[dotted] = lines
        self.assertEqual(long, {})

    def test_sharedNamesNoTransport(self):
        """
        Code outside a transport's folder and plugin names no transport,
        but for what a user reads (a string naming the likely peer).
        """
        named = []
        for dotted, path in self.modules.items():
            if dotted.split(".")[1:2] and dotted.split(".")[1] in SHARED or dotted == "uhppoted_tunnel.interfaces":
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        text = ast.unparse(node)
                    elif isinstance(node, ast.Name):
                        text = node.id
                    elif isinstance(node, ast.Attribute):
                        text = node.attr
                    else:
                        continue
                    if TRANSPORT_WORDS.search(text):
                        named.append("{}: {}".format(dotted, text))
        self.assertEqual(named, [])

    def test_noPrivateNamesAcross(self):
        """
        No module imports another module's private (underscored) name.
        """
        private = []
        for dotted, path in self.modules.items():
            for target, name in imports(path, self.modules):
                if name is not None and name.startswith("_") and not name.startswith("__"):
                    private.append("{}: {}.{}".format(dotted, target, name))
        self.assertEqual(private, [])
