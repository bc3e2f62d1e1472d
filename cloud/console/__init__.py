"""The back-office console: server-rendered pages (Jinja2 + htmx) under ``/console``.

``router`` holds the pages and `router.install(app)` mounts them with their
static files and error pages; ``read_models`` what the pages show;
``security`` the session cookie and CSRF contract. docs/console.md.
"""
