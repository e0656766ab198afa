"""The TUI's screens: login, the main chat screen, and the modal helpers."""

from .help import HelpScreen
from .login import LoginScreen
from .main import MainScreen
from .modals import PromptScreen, QuickSwitcher, ResultsScreen, fuzzy_score

__all__ = ["HelpScreen", "LoginScreen", "MainScreen", "PromptScreen", "QuickSwitcher", "ResultsScreen",
           "fuzzy_score"]
