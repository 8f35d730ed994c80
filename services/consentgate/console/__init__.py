"""The consent service's web console, served by its HTTP app (``consentgate consent serve``).

- ``/console/...`` for operators (one account from settings, a login form, a session
  cookie): overview, subject, recipients (APPI Art. 30 record, CSV), replays.
- ``/console/me`` for a data subject, through a signed, expiring link
  (``consentgate consent link SUBJECT``): their consent with toggles, their history, who
  received their data.

Modules, one concept each: :mod:`~.settings`, :mod:`~.signing` (HMAC tokens),
:mod:`~.auth` (credentials), :mod:`~.session` (cookies), :mod:`~.csrf`, :mod:`~.links`,
:mod:`~.sources` (the reports it reads), :mod:`~.overview`, :mod:`~.replays`,
:mod:`~.preferences`, :mod:`~.timeline_svg`, :mod:`~.render` (Jinja2, headers),
:mod:`~.state` (shared state, session checks), the routes in ``pages_*`` and the templates
in ``templates/``; :mod:`~.app` builds it and mounts it on the consent API's app
(``create_app(console=...)``), :mod:`~.wiring` from serve's settings. See docs/console.md.
"""
