"""
The application: options, the TOML file, connector strings, the tunnel
service, the twistd plugin, the console script and its commands (check,
daemonize, demo), the lockfile and logging.
"""
