"""The web console: server-rendered pages (Jinja2 + htmx) on the notification server.

Pages live under ``/console``; each module here is one page family and calls
the same NS services as the REST API, with the same roles. ``web`` renders
pages with the security headers, ``sessions`` logs people in and checks CSRF.
"""
