"""The Streamlit side of Mask R-CNN Studio: what ``app.py`` and ``pages/`` share.

- :mod:`studio.shared`: the glue: one model or service client, one fair queue and
  one results store per process; settings from the environment or secrets; the
  session keys; the weights panel; waiting in line.
- :mod:`studio.fair_queue`, :mod:`studio.run_store`: the queue and the store
  themselves, plain Python (no Streamlit), tested on their own.
- :mod:`studio.inputs_ui`, :mod:`studio.results_ui`, :mod:`studio.run_all_ui`:
  the main page's parts; :mod:`studio.lesson_network_ui`,
  :mod:`studio.lesson_heads_ui`: the "How it works" page's sections.

Streamlit stays here and in the pages; nothing under ``mrcnn/`` imports it.
"""
