"""HTML forms for passkeys; FlaskForm carries and checks the CSRF token. `credential` is the
authenticator's answer as JSON, filled in by static/passkeys.js."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional


class RegisterPasskeyForm(FlaskForm):
    """On the account page beside the profile and password forms: ids of its own."""

    name = StringField("Name", id="passkey-name", validators=[Optional(), Length(max=100)])
    current_password = PasswordField("Current password", id="passkey-current-password", validators=[
        DataRequired("Enter your current password to add a passkey."), Length(max=1024)])
    credential = StringField("Passkey", id="passkey-credential", validators=[Optional(), Length(max=65536)])


class RemovePasskeyForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[
        DataRequired("Enter your current password to remove a passkey."), Length(max=1024)])


class PasskeyLoginForm(FlaskForm):
    credential = StringField("Passkey", validators=[Optional(), Length(max=65536)])
