"""The tcp transport's options (its ends are L{uhppoted_tunnel.link.ends})."""
