"""
The transports that carry frames between the halves of a tunnel, one
folder each, with the endpoint building and proxies they share.
"""
