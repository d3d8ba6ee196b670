"""The benchmark suites behind ``make bench`` / ``resmon bench`` (BENCHMARKS.md).

Development tooling, not part of the product: the wheel ships ``protocol``,
``edge_agent``, ``hub``, ``simulator``, ``loadtest`` and ``resmon`` only, so
this package exists in a checkout (``make env`` installs the checkout in
development mode, which puts it on the path). It depends on every product
package; none of them imports it.

:mod:`benchmarks.runner` is the ``resmon bench`` command and the report; one
module per measured part holds that part's suites and their same-run
baselines.
"""
