"""
The plain TCP transport: C{tcp/server} and C{tcp/client}.
"""
