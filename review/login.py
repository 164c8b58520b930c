"""Console and Django admin login, throttled per user name and per client address
(learning/throttling.py): over the limit the password is not checked."""

import math

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.exceptions import ValidationError

from learning.throttling import (
    client_address,
    login_attempt_begin,
    login_attempt_succeeded,
)


class ThrottledLoginMixin:
    """For an AuthenticationForm: count the attempt before the password is checked
    and refuse it, without a check, once the user or the address is over its limit."""

    retry_after: int | None = None

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        if not (username and self.cleaned_data.get("password")):
            return super().clean()  # nothing is checked: the fields' errors show
        address = client_address(self.request) if self.request else "unknown"
        wait = login_attempt_begin(username=username, address=address)
        if wait is not None:
            self.retry_after = wait
            raise ValidationError(
                f"Too many attempts, try again in {math.ceil(wait / 60)} min.",
                code="throttled",
            )
        cleaned = super().clean()  # raises on a wrong password: the count stays
        if getattr(self, "user_cache", None) is not None:
            login_attempt_succeeded(username=username, address=address)
        return cleaned


class ThrottledAuthenticationForm(ThrottledLoginMixin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass


class ThrottledLoginView(LoginView):
    """The console's login page: a refused attempt answers 429 with Retry-After."""

    form_class = ThrottledAuthenticationForm

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.retry_after is not None:
            response.status_code = 429
            response["Retry-After"] = str(form.retry_after)
        return response
