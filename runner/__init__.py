"""campaign-runner: declarative YAML broadcasts for chatbot Broadcasting APIs."""

__version__ = "0.1.0"
