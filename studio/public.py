"""The public-host switch: what changes when the app faces anonymous visitors.

``MRCNN_PUBLIC`` (``1``/``true``, environment or Streamlit secret) says "strangers
press these buttons". Then:

- training and the weights download are reserved for an **operator**, who unlocks
  them once per session with ``MRCNN_ADMIN_PASSWORD`` (compared in constant time;
  with no password set they stay off for everyone);
- the limits on uploads and queued photos take their public defaults
  (:class:`studio.settings.Limits`);
- uncaught errors show no details (``client.showErrorDetails = "none"``), and no
  page shows a server path or a service URL.

In every mode an unexpected error is logged with a short id and the visitor is
shown one sentence quoting it (:func:`report_error`, :func:`guarded`).
"""
from __future__ import annotations

import hmac
import logging
import threading
import time
import uuid
from collections import defaultdict, deque

import streamlit as st

from studio.session_keys import KEY_OPERATOR, KEY_OPERATOR_MESSAGE, KEY_OPERATOR_PASSWORD

__all__ = ["ADMIN_PASSWORD_ENV", "PUBLIC_ENV", "client_address", "guarded", "is_operator",
           "operator_unlock", "public_mode", "report_error", "setting"]

logger = logging.getLogger("mrcnn.studio")

PUBLIC_ENV = "MRCNN_PUBLIC"
ADMIN_PASSWORD_ENV = "MRCNN_ADMIN_PASSWORD"
#: Wrong passwords one client address may try per window before it must wait.
MAX_FAILED_UNLOCKS = 5
FAILED_UNLOCK_WINDOW_S = 600.0


def setting(name: str, default=None):
    """``name`` from the environment, else from Streamlit secrets, else ``default``."""
    import os
    value = os.environ.get(name)
    if value not in (None, ""):
        return value
    try:
        if name in st.secrets:
            return st.secrets[name]
    except Exception:  # noqa: BLE001 - no secrets.toml (the usual case), or an unreadable one
        pass
    return default


def public_mode() -> bool:
    """Whether this app faces anonymous visitors (``MRCNN_PUBLIC``)."""
    return str(setting(PUBLIC_ENV, "")).strip().lower() in {"1", "true", "yes", "on"}


def apply_error_details() -> None:
    """Uncaught errors show no details on a public app; a private app keeps what its
    configuration says (Streamlit's default: everything)."""
    if public_mode() and st.get_option("client.showErrorDetails") != "none":
        st.set_option("client.showErrorDetails", "none")


def client_address() -> str | None:
    """The visitor's address as the server sees it (None from this machine itself).

    Streamlit's server believes ``X-Forwarded-For`` only from the proxies listed in
    ``FORWARDED_ALLOW_IPS`` (127.0.0.1 by default), so a remote visitor can't pick it.
    """
    try:
        return st.context.ip_address
    except Exception:  # noqa: BLE001 - no browser connection (AppTest, bare mode)
        return None


# ------------------------------------------------------------------ errors

def report_error(doing: str) -> str:
    """Log the exception being handled with a short id; tell the visitor one sentence.

    Call it from an ``except`` block. ``doing`` completes "... went wrong while
    ``doing``" and must hold nothing of the server's insides. Returns the id.
    """
    error_id = uuid.uuid4().hex[:8]
    logger.exception("Error %s while %s", error_id, doing)
    st.error(f"Something went wrong on the server while {doing} (error id `{error_id}`). "
             "Reload the page and try again; if it happens again, give the site's operator "
             "this id.", icon=":material/error:")
    return error_id


def guarded(page) -> None:
    """Run ``page()``; an unexpected error becomes :func:`report_error`'s sentence.

    Streamlit's own rerun and stop signals are ``BaseException``s and pass through.
    """
    apply_error_details()
    try:
        page()
    except Exception:  # noqa: BLE001 - logged with an id, never shown as a traceback
        report_error("showing this page")


# ---------------------------------------------------------------- operator

class _FailedUnlocks:
    """Wrong passwords per client address in the last window (one per process)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.times: dict = defaultdict(deque)

    def blocked(self, address, now: float) -> bool:
        with self.lock:
            times = self.times[address]
            while times and now - times[0] > FAILED_UNLOCK_WINDOW_S:
                times.popleft()
            return len(times) >= MAX_FAILED_UNLOCKS

    def add(self, address, now: float) -> None:
        with self.lock:
            self.times[address].append(now)


@st.cache_resource
def _failed_unlocks() -> _FailedUnlocks:
    return _FailedUnlocks()


def _password() -> str | None:
    value = setting(ADMIN_PASSWORD_ENV)
    return str(value) if value else None


def is_operator() -> bool:
    """Everyone is the operator of a private app; on a public one, who unlocked it."""
    return not public_mode() or st.session_state.get(KEY_OPERATOR) is True


def password_matches(given: str, password: str | None) -> bool:
    """Constant-time comparison; no password set matches nothing."""
    if not password or not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), password.encode("utf-8"))


def _try_unlock() -> None:
    given = st.session_state.get(KEY_OPERATOR_PASSWORD) or ""
    st.session_state[KEY_OPERATOR_PASSWORD] = ""
    failures = _failed_unlocks()
    address = client_address() or "local"
    now = time.monotonic()
    if failures.blocked(address, now):
        st.session_state[KEY_OPERATOR_MESSAGE] = (
            "Too many wrong passwords from your address: try again in ten minutes.")
        return
    if password_matches(given, _password()):
        st.session_state[KEY_OPERATOR] = True
        st.session_state[KEY_OPERATOR_MESSAGE] = None
        logger.info("An operator unlocked a session from %s", address)
    else:
        failures.add(address, now)
        st.session_state[KEY_OPERATOR_MESSAGE] = "That password is not right."
        logger.warning("A wrong operator password from %s", address)


def operator_unlock(reserved: str, key: str = "operator") -> bool:
    """Whether this session may use operator controls; on a public app that has not
    been unlocked, one sentence saying what is ``reserved`` and why, and the
    password field (when the operator set a password)."""
    if is_operator():
        return True
    if _password() is None:
        st.info(f"On this public demo {reserved} is switched off: it would take the server "
                "from every other visitor. Its operator can enable it by setting "
                f"{ADMIN_PASSWORD_ENV}.", icon=":material/lock:")
        return False
    st.info(f"On this public demo {reserved} is reserved for its operator: it would take "
            "the server from every other visitor.", icon=":material/lock:")
    with st.form(key=f"{key}_unlock", clear_on_submit=False, border=False):
        st.text_input("Operator password", type="password", key=KEY_OPERATOR_PASSWORD,
                      autocomplete="current-password")
        st.form_submit_button("Unlock", on_click=_try_unlock)
    message = st.session_state.get(KEY_OPERATOR_MESSAGE)
    if message:
        st.error(message, icon=":material/block:")
    return False
