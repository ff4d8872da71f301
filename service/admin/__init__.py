"""The provisioning admin console (`/admin`): the page a customer's IT admin uses to connect Okta or Entra.

Its own room: server-rendered pages (Jinja2), a little JavaScript served from `static/`, its own session and CSRF
helpers. It reads and writes through `service.store` like the API does and never imports `service.api`.
"""
