"""Waiting in line on the page: a network run through the fair queue while the visitor
sees their place and an estimate, and the stored result when there already is one."""
from __future__ import annotations

from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout

import streamlit as st

from studio.jobs import JobRequest
from studio.public import client_address
from studio.services import Services
from studio.sessions import session_id


def run_through_queue(services: Services, job: JobRequest, *, slot: str = "main",
                      what: str = "your photo", wrap=lambda result: result, pin: bool = True):
    """The stored result of ``job`` (a ``studio.jobs`` request), or a run through the
    fair queue while the page shows the visitor's place in line; ``wrap(result)`` is
    what gets stored. ``pin``: this is the result the visitor is looking at (the store
    keeps it while the session lives); a side result, such as a rerun of part of it,
    is not. Raises ``QueueFull`` with a sentence for the visitor."""
    key = job.key
    session = session_id()
    stored = services.store.get(session, key, pin=pin)
    if stored is not None:
        return stored
    why = services.store.why_missing(session, key)
    if why:
        st.info(f"Running the network again for {what}: its results were dropped because "
                f"{why}.", icon=":material/history:")
    queued = services.queue.submit(session, key, job.kind, job.payload, slot=slot,
                                   batch_group=job.batch_group, address=client_address())
    result = wait_in_line(services, queued, what)
    stored = services.store.get(session, key, pin=pin)
    if stored is None:
        stored = wrap(result)
        services.store.put(session, key, stored, pin=pin)
    return stored


def wait_in_line(services: Services, job, what: str):
    """Block until ``job`` is done, showing the visitor's place and an estimate.

    The box says once that the visitor is waiting (a status box, which screen readers
    announce); the place and the estimate change below it in plain text, which they
    read when asked, instead of hearing every change."""
    session = session_id()
    box = st.empty()
    finished = False
    shown = None
    try:
        while True:
            try:
                result = job.future.result(timeout=0.4)
                finished = True
                return result
            except FutureTimeout:
                pass
            except CancelledError:
                finished = True
                raise RuntimeError(f"The run for {what} was dropped: a newer request from "
                                   "this page replaced it.") from None
            text = standing_text(services.queue.standing(job), what)
            if text != shown:               # unchanged: nothing to send to the browser
                with box.container():
                    st.info(f"{what[0].upper()}{what[1:]} is in the shared queue: the "
                            "results appear here when it has been through the network.",
                            icon=":material/hourglass_top:")
                    st.caption(text)
                shown = text
    finally:
        if not finished:
            services.queue.detach(session, job)
        try:
            box.empty()
        except BaseException:  # noqa: BLE001 - the page is going away anyway
            pass


def standing_text(standing, what: str) -> str:
    """"2 photos ahead of yours, about 8 s" and its variants. Past 10 s the estimate
    moves in steps of 5 s: each change is a message to the browser, and a crowd of
    waiting tabs redrawing every second takes CPU from the network."""
    seconds = max(1, round(standing.eta_s))
    if seconds > 10:
        seconds = 5 * round(seconds / 5)
    if standing.running:
        return f"The network is working on {what} now, about {seconds} s."
    if standing.ahead == 0:
        return f"{what[0].upper()}{what[1:]} is next in line, about {seconds} s."
    photos = "photo" if standing.ahead == 1 else "photos"
    return (f"{standing.ahead} {photos} ahead of yours in the shared queue, about {seconds} s. "
            "Visitors take turns; your place updates while you wait.")
