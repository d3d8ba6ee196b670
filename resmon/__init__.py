"""resmon: real-time customer resource usage monitoring for ISPs.

This package holds what the roles share: the ``resmon`` command line, logging
set-up, and the embedded servers used by ``resmon demo`` and the tests. The
roles themselves live in the top-level packages ``edge_agent``, ``hub``,
``simulator`` and ``protocol``.
"""

__version__ = "0.1.0"
