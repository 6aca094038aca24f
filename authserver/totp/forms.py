"""HTML forms for the second factor; FlaskForm carries and checks the CSRF token."""

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length, Optional


class SecondFactorForm(FlaskForm):
    """At /login/totp: the current code, or one recovery code."""

    code = StringField("Code", validators=[Optional(), Length(max=64)])
    recovery_code = StringField("Recovery code", validators=[Optional(), Length(max=64)])
    # The authenticator's answer (PublicKeyCredential JSON), filled in by static/passkeys.js.
    credential = StringField("Passkey", validators=[Optional(), Length(max=65536)])


class CodeForm(FlaskForm):
    """Confirm, regenerate or turn off: a current code (or, where allowed, a recovery code)."""

    code = StringField("Code", validators=[DataRequired(), Length(max=64)])
