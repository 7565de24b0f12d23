"""goldrush-follower: follow GoldRush pipeline logs and emit only the new lines as JSON events."""

__version__ = "0.1.0"
