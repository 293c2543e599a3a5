"""shortcutlab: find, fix and verify shortcut learning in medical-imaging classifiers."""

from shortcutlab.errors import ShortcutlabError

__version__ = "0.1.0"
__all__ = ["ShortcutlabError", "__version__"]
