"""The Streamlit side of Mask R-CNN Studio: what ``app.py`` and ``pages/`` share.

- :mod:`studio.services`: one model or service client, one fair queue and one
  results store per process (:func:`studio.services.ready_services`);
  :mod:`studio.queue_ui`: a run through the queue while the page shows the
  visitor's place in line.
- :mod:`studio.settings`: the model's config, the service and the limits, from the
  environment or secrets; :mod:`studio.sessions`: the visitor's id, live sessions;
  :mod:`studio.session_keys`: every ``st.session_state`` key, one constant each;
  :mod:`studio.sizing`: what stored results and queued jobs cost in memory.
- :mod:`studio.jobs`: the network jobs, one factory per kind and one table from
  kind to runner (no Streamlit).
- :mod:`studio.public`: the public-host switch (``MRCNN_PUBLIC``), the operator's
  unlock, and error ids; :mod:`studio.weights_ui`: the weights panel.
- :mod:`studio.fair_queue`, :mod:`studio.run_store`: the queue and the store
  themselves, plain Python (no Streamlit), tested on their own.
- :mod:`studio.sample_sets`: which sample pictures go with which model (generated shapes
  for a shapes model, else the bundled photos).
- :mod:`studio.inputs_ui`, :mod:`studio.results_ui`, :mod:`studio.inspector_ui`,
  :mod:`studio.exports_ui`, :mod:`studio.run_all_ui`: the main page's parts;
  :mod:`studio.lesson_network_ui`, :mod:`studio.lesson_heads_ui`,
  :mod:`studio.lesson_follow_ui`, :mod:`studio.lesson_what_if_ui`: the "How it works"
  page's sections.
- :mod:`studio.video_ui`: the Video page's parts; :mod:`studio.video_run`: one visitor's
  clip, frame by frame through the fair queue (no Streamlit).
- :mod:`studio.alt_text`: every picture's alt text, from the data it shows (no
  Streamlit); :mod:`studio.accessibility_ui`: what every page adds for screen readers
  and keyboards (focus outline, text only screen readers read).
- :mod:`studio.training_run`: the Train page's run in a low-priority child process;
  :mod:`studio.keras_cleanup`: keeps Streamlit's clean-up off TensorFlow's state.

Streamlit stays here and in the pages; nothing under ``mrcnn/`` imports it.
"""
