"""TOTP second factor: enrolment, verification, recovery codes (blueprint in `views`)."""
