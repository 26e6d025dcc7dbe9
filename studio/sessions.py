"""Who is asking: this visitor's id in the queue and the run store, and whether a
browser session still exists (the queue and the store drop the work of the gone)."""
from __future__ import annotations

import uuid

import streamlit as st

from studio.session_keys import KEY_VISITOR


def session_id() -> str:
    """This visitor's id in the queue and the run store: ``<Streamlit session>/<random>``.

    The random part lives in the session state, so it is unique even where
    Streamlit gives every session the same id (``AppTest``).
    """
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    ctx = get_script_run_ctx()
    own = st.session_state.setdefault(KEY_VISITOR, uuid.uuid4().hex[:12])
    return f"{ctx.session_id if ctx is not None else 'no-session'}/{own}"


def session_alive(session: str) -> bool:
    """Whether a browser session still exists (True outside a server, e.g. AppTest)."""
    from streamlit.runtime import Runtime
    if not Runtime.exists():
        return True
    return Runtime.instance().is_active_session(session.split("/", 1)[0])
