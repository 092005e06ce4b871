"""
The plain TCP transport: C{tcp/server} and C{tcp/client} (its maker), and
the options every stream client shares (C{--proxy}).
"""
