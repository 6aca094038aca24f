"""Passkeys (WebAuthn): registration, a second factor after the password, passwordless login
(the blueprint is views.bp, registered by the factory after the accounts package)."""
