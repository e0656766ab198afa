"""The TUI's screens: login, the main chat screen, and the modal helpers."""

from .help import HelpScreen
from .login import LoginScreen
from .main import MainScreen
from .modals import PromptScreen, QuickSwitcher, ResultsScreen, fuzzy_score
from .people import CreateGroupScreen, GroupRequest, UserSearchScreen
from .search import SearchHit, SearchScreen
from .viewer import ImageViewerScreen

__all__ = [
    "CreateGroupScreen", "GroupRequest", "HelpScreen", "ImageViewerScreen", "LoginScreen", "MainScreen",
    "PromptScreen", "QuickSwitcher", "ResultsScreen", "SearchHit", "SearchScreen", "UserSearchScreen",
    "fuzzy_score",
]
