"""The consent and logout forms; FlaskForm carries and checks the CSRF token."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, SubmitField
from wtforms.validators import DataRequired, Length


class ConsentForm(FlaskForm):
    allow = SubmitField("Allow")
    deny = SubmitField("Deny")


class LogoutForm(FlaskForm):
    client_id = HiddenField()
    post_logout_redirect_uri = HiddenField()
    state = HiddenField()


class DeviceCodeForm(FlaskForm):
    """The code a device shows (XXXX-XXXX), typed on the phone or computer."""

    user_code = StringField("Code shown on your device", validators=[
        DataRequired("Enter the code your device shows."), Length(max=32, message="A code has 8 letters.")])


class DeviceDecisionForm(FlaskForm):
    user_code = HiddenField()
    allow = SubmitField("Allow")
    deny = SubmitField("Deny")
