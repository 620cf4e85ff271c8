"""NVML errors sorted by what the agent does about them.

nvidia-ml-py raises NVMLError subclasses carrying the C return code in `.value`; the codes
are NVML's stable ABI, so they are matched here by number and the module (real or the
tests' fake) is never needed to classify an error.
"""

from __future__ import annotations

UNINITIALIZED = 1
NOT_SUPPORTED = 3
NO_PERMISSION = 4
NOT_FOUND = 6
DRIVER_NOT_LOADED = 9
TIMEOUT = 10
LIBRARY_NOT_FOUND = 12
FUNCTION_NOT_FOUND = 13
GPU_IS_LOST = 15
RESET_REQUIRED = 16
LIB_RM_VERSION_MISMATCH = 18
NO_DATA = 21
NOT_READY = 27

# The value is simply not there for this GPU or driver: report None, carry on.
_NOT_AVAILABLE = {NOT_SUPPORTED, NO_PERMISSION, NOT_FOUND, FUNCTION_NOT_FOUND, NO_DATA, NOT_READY}
# NVML as a whole is unusable: drop the session and initialise again at the next poll.
_SESSION = {UNINITIALIZED, DRIVER_NOT_LOADED, LIBRARY_NOT_FOUND, LIB_RM_VERSION_MISMATCH}

_HINTS = {
    DRIVER_NOT_LOADED: "NVIDIA driver not loaded (is the nvidia kernel module loaded? "
    "see lsmod, dmesg)",
    LIBRARY_NOT_FOUND: "NVML library (libnvidia-ml.so.1) not found: the NVIDIA driver is "
    "not installed",
    LIB_RM_VERSION_MISMATCH: "NVML and the loaded NVIDIA kernel module differ in version "
    "(driver upgraded without a reboot?); reboot or reload the nvidia module",
    GPU_IS_LOST: "GPU is lost (fell off the bus); a GPU reset or reboot is needed",
    RESET_REQUIRED: "GPU requires a reset or reboot",
    NO_PERMISSION: "no permission to use NVML",
}


def code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def is_timeout(exc: BaseException) -> bool:
    return code(exc) == TIMEOUT


def is_session_error(exc: BaseException) -> bool:
    return code(exc) in _SESSION


def is_not_available(exc: BaseException) -> bool:
    # NVMLLibraryMismatchError: an unversioned call the installed driver lacks.
    return code(exc) in _NOT_AVAILABLE or type(exc).__name__ == "NVMLLibraryMismatchError"


def is_absent(exc: BaseException) -> bool:
    """No NVIDIA driver on this host at all (not a sick one)."""
    return code(exc) == LIBRARY_NOT_FOUND


def describe(exc: BaseException) -> str:
    """A reason a person can act on, with NVML's own words in brackets."""
    raw = str(exc) or type(exc).__name__
    hint = _HINTS.get(code(exc) or -1)
    return f"{hint} (NVML: {raw})" if hint else f"NVML: {raw}"
