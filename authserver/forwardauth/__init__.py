"""Forward-auth for reverse proxies: "who is this request, and may it pass?".

Deliberately empty: `rules` is imported by the settings, so this package must
not pull in Flask views (create_app registers `forwardauth.views.bp`).
"""
