"""The admin web console at `/console`: plain ES modules and CSS shipped in the package, no build step.

The pages call the admin API with the signed-in token (kept in the tab's sessionStorage); the
server only hands out the page shell, the static files, and who the token belongs to.
"""

from gateway.console.routes import router

__all__ = ["router"]
