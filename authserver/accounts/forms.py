"""HTML forms; FlaskForm carries and checks the CSRF token."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=200)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    next = HiddenField()


class PostOnlyForm(FlaskForm):
    """A form with nothing but its CSRF token (logout, revoke buttons)."""
