# -*- test-case-name: tests.unit.test_collection -*-
"""
Tests for the test suite itself: trial runs every test once.
"""

from twisted.python.modules import getModule
from twisted.trial.runner import TestLoader
from twisted.trial.unittest import SynchronousTestCase


def collected(package="tests"):
    """
    :return: C{{test case class: [names of the test modules trial finds
        it in]}}, for every test module under C{package} and every class
        with tests, as trial's loader finds the classes of a module (in its
        namespace, imported or defined there).
    """
    loader = TestLoader()
    found = {}
    for module in getModule(package).walkModules():
        if not module.name.rsplit(".", 1)[-1].startswith("test_"):
            continue
        for cls in loader.findTestClasses(module.load()):
            if loader.getTestCaseNames(cls):
                found.setdefault(cls, []).append(module.name)
    return found


class CollectedOnceTests(SynchronousTestCase):
    """
    Each test case class is collected under one module name.
    """

    def test_everyClassOnce(self):
        """
        No test module imports another's test case class (to borrow a
        helper, say), which would have trial run its tests again under the
        importing module's name: shared fixtures live in modules of their
        own.
        """
        found = collected()
        self.assertTrue(found)
        twice = {"{}.{}".format(cls.__module__, cls.__qualname__): names
                 for cls, names in found.items() if len(names) > 1}
        self.assertEqual(twice, {})
