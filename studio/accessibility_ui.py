"""What every page adds for screen readers and keyboards, where Streamlit's own elements
fall short (the theme itself is in ``.streamlit/config.toml``).

- A slider's value is drawn in the primary colour; in the dark theme no orange is both
  light enough as text on the dark sidebar and dark enough under a primary button's
  white text, so the value takes the text colour.
- Whatever has the keyboard's focus gets a 3 px outline in a colour that stands out at
  3:1 or more on every background of both themes (WCAG 2.4.7 and 1.4.11).
- :func:`screen_reader_text` says in words what a picture without an ``alt`` attribute
  shows (the annotated photo is a Plotly figure); its element takes no room in the
  layout, so the pictures beside it stay aligned.
"""
from __future__ import annotations

import html

import streamlit as st

__all__ = ["ACCESSIBLE_STYLE", "accessible_page", "screen_reader_text"]

#: Contrast of the outline: 4.9:1 on white, 4.5:1 on the light sidebar, 3.8:1 on the
#: dark background and 3.4:1 on the dark sidebar.
FOCUS_OUTLINE = "#C8440F"
ACCESSIBLE_STYLE = f"""<style>
.mrcnn-sr-only {{position: absolute !important; width: 1px; height: 1px; padding: 0;
  margin: -1px; overflow: hidden; clip: rect(0, 0, 0, 0); white-space: nowrap; border: 0;}}
.stElementContainer:has(.mrcnn-sr-only) {{position: absolute !important;}}
[data-testid='stSliderThumbValue'], [data-testid='stSliderThumbValue'] p {{
  color: inherit !important;}}
*:focus-visible {{outline: 3px solid {FOCUS_OUTLINE} !important; outline-offset: 2px;}}
</style>"""


def accessible_page() -> None:
    """Add :data:`ACCESSIBLE_STYLE` to the page (call once per page run, at its top)."""
    st.html(ACCESSIBLE_STYLE)


def screen_reader_text(text: str) -> None:
    """``text`` in the page for screen readers only: hidden from the eye, not from them."""
    st.html(f"<p class='mrcnn-sr-only'>{html.escape(text)}</p>")
