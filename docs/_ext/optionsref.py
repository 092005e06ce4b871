"""
A Sphinx directive that writes the reference of every option and TOML key
from the declarations the command itself uses, so the documentation cannot
drift from the code:

- ``.. uhppoted-options::`` lists the general options
  (L{uhppoted_tunnel.app.options.Options}: its flags and parameters that
  no plugin declares), then each connector plugin's options under the
  plugin's title (L{uhppoted_tunnel.core.declare.Option}: help, TOML key,
  each with its command-line flag and its TOML key;
- ``.. uhppoted-file-keys::`` lists the TOML keys that have no flag
  (L{uhppoted_tunnel.app.config.KEYS} less the flags).
"""

import re

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

#: what reStructuredText would read as markup in a help text
_MARKUP = re.compile(r"([\\*`|_\[\]:<>@])")


def _text(help):
    """
    A help text as reStructuredText that shows it as it is.
    """
    return _MARKUP.sub(r"\\\1", " ".join(help.split()))


def general_options():
    """
    The options no plugin declares: C{(flag, TOML key or None, takes a
    value, help)}, in the command's order.
    """
    from uhppoted_tunnel.app import config
    from uhppoted_tunnel.app.options import PLUGINS, Options

    declared = {option.command_line for plugin in PLUGINS for option in plugin.options}
    found = []
    for name, _, _, help, *_ in Options.optParameters:
        if name not in declared:
            found.append((name, name if name in config.KEYS else None, True, help))
    for name, _, help in Options.optFlags:
        if name not in declared:
            found.append((name, name if name in config.KEYS else None, False, help))
    return found


def plugin_groups():
    """
    Each connector plugin that declares options: C{(title, plugin name,
    extra, [Option, ...])}, in the order C{--help} shows them.
    """
    from uhppoted_tunnel.app.options import PLUGINS

    return [(plugin.title, plugin.name, plugin.extra, list(plugin.options)) for plugin in PLUGINS if plugin.options]


def _entry(flag, key, value, help):
    head = "``--{}{}``".format(flag, " VALUE" if value else "")
    head += " (TOML ``{}``)".format(key) if key else " (command line only)"
    return [head, "    " + _text(help), ""]


def options_rst():
    """
    The whole reference, as reStructuredText lines.
    """
    from uhppoted_tunnel.core.declare import DISTRIBUTION, FLAG, LIST

    lines = ["General options", "---------------", "",
             "Every tunnel takes these; a TOML key of the same name sets each in a file's section or "
             "``[defaults]``.", ""]
    for flag, key, value, help in general_options():
        lines += _entry(flag, key, value, help)
    for title, name, extra, options in plugin_groups():
        heading = "{} options".format(title)
        lines += [heading, "-" * len(heading), ""]
        if extra:
            lines += ["For the ``{}/`` connectors, installed with ``pip install '{}[{}]'``.".format(
                name, DISTRIBUTION, extra), ""]
        for option in options:
            repeat = option.kind == LIST
            help = option.help + (" Repeatable." if repeat else "")
            lines += _entry(option.command_line, option.name, option.kind != FLAG, help)
    return lines


def file_keys_rst():
    """
    The TOML keys with no flag of the same name, as a bullet list.
    """
    from uhppoted_tunnel.app import config
    from uhppoted_tunnel.app.options import Options

    flags = {name for name, *_ in Options.optParameters} | {name for name, *_ in Options.optFlags}
    keys = sorted(key for key in config.KEYS if key not in flags)
    return ["* ``{}``".format(key) for key in keys] + [""]


class _Generated(SphinxDirective):
    has_content = False
    make = None

    def run(self):
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(type(self).make(), source="(generated)"), node)
        self.env.note_dependency(__file__)
        return node.children


class OptionsDirective(_Generated):
    make = staticmethod(options_rst)


class FileKeysDirective(_Generated):
    make = staticmethod(file_keys_rst)


def setup(app):
    app.add_directive("uhppoted-options", OptionsDirective)
    app.add_directive("uhppoted-file-keys", FileKeysDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
