"""``faust -A consentgate.router.main worker``: the router as a plain faust app.

Configured from the environment (``CONSENTGATE_POLICY``, ``CONSENTGATE_BOOTSTRAP``, ...);
``consentgate router`` does the same with command-line options.
"""

from __future__ import annotations

from consentgate.router.run import RouterOptions, make_worker

app = make_worker(RouterOptions.from_env()).app
