"""The forms behind mailed links; FlaskForm carries and checks the CSRF token."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp

from ..accounts.forms import EMAIL


class ForgotPasswordForm(FlaskForm):
    email = StringField("Email address", validators=[
        DataRequired("Enter the email address of your account."),
        Regexp(EMAIL, message="Enter an email address like name@example.org."), Length(max=320)])


class ChoosePasswordForm(FlaskForm):
    new_password = PasswordField("New password", validators=[
        DataRequired("Choose a new password."),
        Length(min=8, max=1024, message="A password has 8 to 1024 characters.")])
    confirm_password = PasswordField("New password again", validators=[
        DataRequired("Type the new password again."),
        EqualTo("new_password", "The two new passwords differ; type the same one twice.")])
