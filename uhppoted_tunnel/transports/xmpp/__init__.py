"""The xmpp transport."""
