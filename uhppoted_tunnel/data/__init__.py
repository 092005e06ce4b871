# -*- test-case-name: tests.unit.test_sample -*-
"""
The files shipped for deployment, as package data: the sample TOML file
(C{uhppoted-tunnel.toml}), the twistd application (C{uhtunnel.tac}), the
systemd units (C{systemd/}) and the man page (C{uhppoted-tunnel.1}, built
from C{docs/} by Sphinx). C{uhppoted-tunnel sample} prints them.
"""
