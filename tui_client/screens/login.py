"""Log in to (or register on) a homeserver."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Input, Label, Static


class LoginScreen(Screen[None]):
    """Homeserver, user and password; Register also takes an optional registration token.

    | Key | Action |
    | --- | --- |
    | Tab / Shift+Tab | next / previous field |
    | Enter | log in |
    | Ctrl+Q | quit |
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+q", "app.quit", "Quit")]

    DEFAULT_CSS = """
    LoginScreen {
        align: center middle;
    }
    LoginScreen #login-form {
        width: 60;
        height: auto;
        border: round $accent;
        padding: 1 2;
    }
    LoginScreen .login-row {
        height: 1;
        margin-top: 1;
    }
    LoginScreen .login-row Label {
        width: 12;
        color: $text-muted;
    }
    LoginScreen .login-row Input {
        width: 1fr;
    }
    LoginScreen #login-title {
        text-style: bold;
        width: 100%;
        content-align: center middle;
    }
    LoginScreen #login-buttons {
        height: auto;
        margin-top: 1;
        align: center middle;
    }
    LoginScreen Button {
        margin: 0 1;
    }
    LoginScreen #login-error {
        color: $error;
        height: auto;
    }
    """

    class Submitted(Message):
        """The user asked to log in or register."""

        def __init__(self, homeserver: str, user: str, password: str, token: str, register: bool) -> None:
            super().__init__()
            self.homeserver = homeserver
            self.user = user
            self.password = password
            self.registration_token = token or None
            self.register = register

    def __init__(self, homeserver: str, user: str = "") -> None:
        super().__init__()
        self._homeserver = homeserver
        self._user = user

    def compose(self) -> ComposeResult:
        with Vertical(id="login-form"):
            yield Static("Parley — log in to Matrix", id="login-title")
            for field_id, label, value, placeholder in (
                ("homeserver", "Homeserver", self._homeserver, "https://matrix.example.org"),
                ("user", "User", self._user, "@alice:example.org or alice"),
                ("password", "Password", "", ""),
                ("token", "Reg. token", "", "optional; only to register"),
            ):
                with Horizontal(classes="login-row"):
                    yield Label(label)
                    yield Input(value, id=field_id, placeholder=placeholder, password=field_id == "password",
                                compact=True)
            yield Static("", id="login-error")
            with Horizontal(id="login-buttons"):
                yield Button("Log in", id="login", variant="primary")
                yield Button("Register", id="register")

    def on_mount(self) -> None:
        self.query_one("#password" if self._user else "#user", Input).focus()

    def show_error(self, message: str) -> None:
        self.query_one("#login-error", Static).update(message)
        for button in self.query(Button):
            button.disabled = False

    def _submit(self, register: bool) -> None:
        values = {name: self.query_one(f"#{name}", Input).value.strip()
                  for name in ("homeserver", "user", "password", "token")}
        if not values["user"] or not values["password"]:
            self.show_error("User and password are needed.")
            return
        self.query_one("#login-error", Static).update("Connecting…")
        for button in self.query(Button):
            button.disabled = True
        self.post_message(self.Submitted(values["homeserver"], values["user"], values["password"],
                                         values["token"], register))

    @on(Button.Pressed, "#login")
    @on(Input.Submitted)
    def _login(self) -> None:
        self._submit(register=False)

    @on(Button.Pressed, "#register")
    def _register(self) -> None:
        self._submit(register=True)
