"""The errors kizzasi_lite raises. Every one is a ``KizzasiError``, so one ``except`` catches all."""

from __future__ import annotations


class KizzasiError(Exception):
    """Base class of every error raised by kizzasi_lite."""


class ConfigError(KizzasiError, ValueError):
    """A configuration value is out of range or inconsistent; the message names the field."""


class InputError(KizzasiError, ValueError):
    """An input array has the wrong shape, dtype or non-finite values."""


class WeightsError(KizzasiError, ValueError):
    """A weights file is missing, corrupt, or does not match the model it is loaded into."""


class BackendUnavailableError(KizzasiError, ImportError):
    """The requested array backend is not installed or has no device here."""


class GuardrailInfeasibleError(KizzasiError):
    """The active constraints have no common solution; the message names the constraints."""


class MissingDependencyError(KizzasiError, ImportError):
    """An optional package needed for a feature (a file format, plots) is not installed; the
    message names the package and the extra that installs it."""
