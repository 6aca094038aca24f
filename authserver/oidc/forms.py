"""The consent and logout forms; FlaskForm carries and checks the CSRF token."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, SubmitField


class ConsentForm(FlaskForm):
    allow = SubmitField("Allow")
    deny = SubmitField("Deny")


class LogoutForm(FlaskForm):
    client_id = HiddenField()
    post_logout_redirect_uri = HiddenField()
    state = HiddenField()
